"""The bad-input corpus (tests/bad_inputs/cases.yaml) through the real CLI: exit 2, one line, no traceback."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from ttpkit.data import bundled_sample_dir

HERE = Path(__file__).parent / "bad_inputs"
FILES = HERE / "files"
CASES = yaml.safe_load((HERE / "cases.yaml").read_text())


def _run(case: dict, tmp: Path) -> subprocess.CompletedProcess:
    tmp.mkdir(parents=True)
    for name in case.get("copy", []):
        src = FILES / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp / name)
    args = [a.format(files=FILES, tmp=tmp, sample=bundled_sample_dir()) for a in case["args"]]
    env = {**os.environ, "COLUMNS": "40", "PYTHONWARNINGS": "ignore"}  # narrow: a one-line error must not wrap
    return subprocess.run([sys.executable, "-m", "ttpkit.cli", *args], capture_output=True, text=True, timeout=300,
                          env=env, cwd=tmp, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess]:
    """Every case run once, two at a time (the suite runs on 2 cores)."""
    root = tmp_path_factory.mktemp("bad")
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = pool.map(lambda c: (c["id"], _run(c, root / c["id"])), CASES)
        return dict(done)


def test_the_corpus_covers_every_family_with_60_kinds():
    assert len(CASES) >= 60
    assert len({c["id"] for c in CASES}) == len(CASES)
    families = {c["family"] for c in CASES}
    assert {"data", "task", "pool", "option", "personalize", "output", "rm", "study", "resume"} <= families
    used = {a.split("{files}/")[1].split("/")[0] for c in CASES for a in c["args"] if "{files}/" in a}
    used |= {n for c in CASES for n in c.get("copy", [])}
    unused = sorted(p.name for p in FILES.iterdir() if p.name not in used)
    assert not unused, f"corpus files no case uses: {unused}"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_a_bad_input_is_one_clear_line(case: dict, results: dict) -> None:
    r = results[case["id"]]
    lines = r.stderr.rstrip("\n").splitlines()  # no blank lines either (a progress display that started and stopped)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    if "expect" in case:
        assert str(case["expect"]).lower() in lines[0].lower(), lines[0]


def test_serve_on_a_busy_port_fails_at_once_in_one_line():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "ttpkit.cli", "serve", "--port", str(port)], capture_output=True,
                           text=True, timeout=120, env={**os.environ, "COLUMNS": "40"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and f"127.0.0.1:{port}" in r.stderr
