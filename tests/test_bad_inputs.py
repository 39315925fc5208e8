"""The bad-input corpus (tests/bad_inputs/cases.yaml) through the real CLI: exit 2, one line, no traceback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from ttpkit.data import bundled_sample_dir

HERE = Path(__file__).parent / "bad_inputs"
FILES = HERE / "files"
CASES = yaml.safe_load((HERE / "cases.yaml").read_text())


def _prepare(case: dict, tmp: Path) -> dict:
    """The case's working directory with its files copied in, and its argv."""
    tmp.mkdir(parents=True)
    for name in case.get("copy", []):
        src = FILES / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp / name)
    fill = {"files": FILES, "tmp": tmp, "sample": bundled_sample_dir()}
    args = [a.format(**fill) for a in case["args"]]
    env = {k: str(v).format(**fill) for k, v in case.get("env", {}).items()}  # for this case's run only
    return {"id": case["id"], "argv": args, "cwd": str(tmp), "env": env}


def _run_batch(batch: list[dict]) -> dict[str, SimpleNamespace]:
    """One process runs a batch of cases through ``ttpkit.cli.main`` (``tests/bad_inputs/_driver.py``)."""
    env = {**os.environ, "COLUMNS": "40", "PYTHONWARNINGS": "ignore"}  # narrow: a one-line error must not wrap
    r = subprocess.run([sys.executable, str(HERE / "_driver.py")], input=json.dumps(batch), capture_output=True,
                       text=True, timeout=900, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    return {k: SimpleNamespace(**v) for k, v in json.loads(r.stdout).items()}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, SimpleNamespace]:
    """Every case run once, in two processes (the suite runs on 2 cores), each paying the imports once."""
    root = tmp_path_factory.mktemp("bad")
    prepared = [_prepare(c, root / c["id"]) for c in CASES]
    with ThreadPoolExecutor(max_workers=2) as pool:
        done: dict[str, SimpleNamespace] = {}
        for part in pool.map(_run_batch, [prepared[0::2], prepared[1::2]]):
            done.update(part)
    return done


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


def test_the_in_process_driver_answers_as_a_separate_process_does(results: dict, tmp_path: Path) -> None:
    """One case of each of four families through ``python -m ttpkit.cli``: same exit code and error line."""
    picked = {}
    for c in CASES:
        picked.setdefault(c["family"], c)
    env = {**os.environ, "COLUMNS": "40", "PYTHONWARNINGS": "ignore"}
    for case in list(picked.values())[:4]:
        p = _prepare(case, tmp_path / case["id"])
        r = subprocess.run([sys.executable, "-m", "ttpkit.cli", *p["argv"]], capture_output=True, text=True, timeout=300,
                           env={**env, **p["env"]}, cwd=p["cwd"], stdin=subprocess.DEVNULL)
        mine = results[case["id"]]
        theirs = " ".join(r.stderr.replace(p["cwd"], "<tmp>").split())
        ours = " ".join(mine.stderr.replace(mine.cwd, "<tmp>").split())
        assert (r.returncode, theirs) == (mine.returncode, ours), case["id"]


def test_serve_on_a_busy_port_fails_at_once_in_one_line():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "ttpkit.cli", "serve", "--port", str(port)], capture_output=True,
                           text=True, timeout=120, env={**os.environ, "COLUMNS": "40"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and f"127.0.0.1:{port}" in r.stderr
