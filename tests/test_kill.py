"""SIGKILL during `ttpkit sample`, `score` and `train-rm`, then rerun: the result equals an uninterrupted run.

`sample` talks to a deterministic fake completions server (ttpkit's own app in a
thread), so every run of the same seed writes the same candidates. Kills land at
fault points (``TTPKIT_FAULT``, see :func:`ttpkit._faults.fault_point`) and at
moments in the middle of the work.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from ttpkit.data import bundled_sample_dir
from ttpkit.pool import IDX, QUERY_ID, TEXT, read_pool

SAMPLE = bundled_sample_dir()


@dataclass
class _FakeConfig:
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 32
    seed: int = 0
    k: int = 4


class _FakeCompleter:
    """Completions that depend only on (prompt, seed, i); each request takes 50 ms."""

    config = _FakeConfig()

    def complete(self, prompt: str, n: int, seed: int) -> list[str]:
        time.sleep(0.05)
        h = hashlib.sha256(f"{prompt}|{seed}".encode()).hexdigest()
        return [f"fix {h[i:i + 6]} in module {i}" for i in range(n)]


@pytest.fixture(scope="module")
def server() -> str:
    import uvicorn

    from ttpkit.serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(_FakeCompleter()), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(100):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    srv.should_exit = True
    thread.join(timeout=5)


def _cli(*args: str, fault: str | None = None, mark: Path | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("TTPKIT_FAULT", None)
    if fault:
        env.update(TTPKIT_FAULT=fault, TTPKIT_FAULT_MARK=str(mark))
    return subprocess.Popen([sys.executable, "-m", "ttpkit.cli", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err


def _kill_when(proc: subprocess.Popen, ready, timeout: float = 300) -> None:
    t0 = time.time()
    while not ready():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() - t0 < timeout, "the kill point was never reached"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _rows(path: Path) -> pd.DataFrame:
    df = read_pool(path)
    return df.sort_values([QUERY_ID, IDX]).reset_index(drop=True)[[QUERY_ID, IDX, TEXT]]


def _sample_args(server: str, out: Path) -> list[str]:
    return ["sample", "--data", str(SAMPLE), "--split", "dev", "--m", "4", "--backend", "openai",
            "--base-url", server, "--no-greedy", "--out", str(out)]  # the kill points, not the greedy row


def test_sample_killed_anywhere_resumes_without_lost_or_duplicate_rows(server: str, tmp_path: Path) -> None:
    ref = tmp_path / "ref.parquet"
    _finish(_cli(*_sample_args(server, ref)))
    expected = _rows(ref)
    assert len(expected) == 16 * 4

    out, mark = tmp_path / "killed.parquet", tmp_path / "mark"
    journal = out.with_name(out.name + ".journal.jsonl")
    kills = [
        ("after the first query", None, lambda: journal.exists() and journal.stat().st_size > 0),
        ("during a fold, journal not yet removed", "fold", mark.exists),
        ("while a pool file is written, not yet renamed", "write", mark.exists),
        ("in the middle of a query", None, lambda: journal.exists() and len(journal.read_text().splitlines()) >= 10),
    ]
    for what, fault, ready in kills:
        mark.unlink(missing_ok=True)
        _kill_when(_cli(*_sample_args(server, out), fault=fault, mark=mark), ready)
    _finish(_cli(*_sample_args(server, out)))
    got = _rows(out)
    pd.testing.assert_frame_equal(got, expected)
    assert not journal.exists()
    assert not got.duplicated([QUERY_ID, IDX]).any()


@pytest.mark.slow
def test_score_and_train_rm_killed_then_rerun_equal_an_uninterrupted_run(server: str, tmp_path: Path) -> None:
    pool = tmp_path / "pool.parquet"
    _finish(_cli(*_sample_args(server, pool)))
    _finish(_cli("label", "--pool", str(pool), "--data", str(SAMPLE), "--split", "dev"))
    before = pd.read_parquet(pool)

    # score: killed while writing the scored pool -> the file is still the unscored pool; the rerun scores it
    score = ["score", "--rm", "default", "--pool", str(pool), "--data", str(SAMPLE), "--split", "dev", "--name", "rm"]
    mark = tmp_path / "mark"
    _kill_when(_cli(*score, fault="write", mark=mark), mark.exists)
    pd.testing.assert_frame_equal(pd.read_parquet(pool), before)
    _finish(_cli(*score))
    ref = tmp_path / "ref.parquet"
    ref.write_bytes(before.to_parquet())
    _finish(_cli(*score[:3], "--pool", str(ref), *score[5:]))
    assert pd.read_parquet(pool)["score_rm"].tolist() == pd.read_parquet(ref)["score_rm"].tolist()

    # train-rm: killed between the weights and the config -> loading refuses the torn model; the rerun equals a clean run
    train = ["train-rm", "--pool", str(pool), "--data", str(SAMPLE), "--split", "dev", "--variant", "user-mse",
             "--hidden", "8", "--seed", "3"]
    mark.unlink()
    _finish(_cli(*train, "--out", str(tmp_path / "rm")))  # an older model is there when the kill comes
    _kill_when(_cli(*train, "--seed", "4", "--out", str(tmp_path / "rm"), fault="rm-save", mark=mark), mark.exists)
    from ttpkit.errors import DataError
    from ttpkit.reward.models import RewardModel

    with pytest.raises(DataError, match="interrupted"):
        RewardModel.load(tmp_path / "rm")
    _finish(_cli(*train, "--seed", "4", "--out", str(tmp_path / "rm")))
    _finish(_cli(*train, "--seed", "4", "--out", str(tmp_path / "clean")))
    a, b = (RewardModel.load(tmp_path / d) for d in ("rm", "clean"))
    for (k, v), (k2, v2) in zip(a.net_.state_dict().items(), b.net_.state_dict().items()):
        assert k == k2 and bool((v == v2).all())
