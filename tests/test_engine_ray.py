"""The Ray engine on a local cluster (``ray.init(num_cpus=2)``, started once for the module).

Shows that a Ray pool equals the local pool for the same seed, that a worker
killed mid-job costs no row, that a pool directory sampled through the CLI with
``--engine ray`` resumes after a SIGKILL of its driver, and that scoring under
Ray equals local scoring and brings every embedding back to the driver's cache.
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
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ray = pytest.importorskip("ray", reason="the Ray engine tests need Ray (pip install 'ttpkit[ray]', part of the test extra)")

import _fake_policies  # noqa: E402
from _fake_policies import DyingPolicy, GreedySeededPolicy, SeededPolicy  # noqa: E402

from ttpkit import stages  # noqa: E402
from ttpkit.data import bundled_sample_dir, load_split  # noqa: E402
from ttpkit.engine import Engine  # noqa: E402
from ttpkit.policy import PolicySpec, lazy_policy  # noqa: E402
from ttpkit.pool import IDX, QUERY_ID, TEXT, read_pool, score_col  # noqa: E402
from ttpkit.reward import load_rm  # noqa: E402
from ttpkit.reward.bundled import bundled_path  # noqa: E402
from ttpkit.reward.encoder import Encoder  # noqa: E402

pytestmark = pytest.mark.ray
SAMPLE = bundled_sample_dir()
RAY = Engine("ray", num_actors=2)


@pytest.fixture(scope="module", autouse=True)
def cluster():
    """One local Ray for the module (startup costs 6-15 s on a loaded 2-core box)."""
    ray.cloudpickle.register_pickle_by_value(_fake_policies)  # workers get the fakes without importing tests/
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


class Count:
    """A progress that counts what it is told."""

    def __init__(self) -> None:
        self.total, self.done, self.notes = 0, 0, []

    def start(self, label: str, total: int, done: int = 0) -> None:
        self.total, self.done = total, done

    def advance(self, steps: int = 1) -> None:
        self.done += steps

    def note(self, message: str) -> None:
        self.notes.append(message)


def _sorted(path: Path) -> pd.DataFrame:
    return read_pool(path).sort_values([QUERY_ID, IDX]).reset_index(drop=True)


def test_a_ray_pool_equals_the_local_pool_for_the_same_seed(tmp_path, sample):
    stages.sample_pool(sample.queries, tmp_path / "local", 4, SeededPolicy(seed=7))
    progress = Count()
    n = stages.sample_pool(sample.queries, tmp_path / "ray", 4, SeededPolicy(seed=7), progress, engine=RAY)
    assert n == len(sample.queries) == progress.total == progress.done  # progress covers the whole job
    local, remote = _sorted(tmp_path / "local"), _sorted(tmp_path / "ray")
    pd.testing.assert_frame_equal(remote, local)
    assert len(remote) == 4 * len(sample.queries)
    assert list((tmp_path / "ray").glob("part-*.parquet"))  # written by the driver's part writer


def test_the_greedy_row_travels_through_ray_like_any_candidate(tmp_path, sample):
    from ttpkit.pool import GREEDY, greedy_rows

    stages.sample_pool(sample.queries, tmp_path / "local", 3, GreedySeededPolicy(seed=1))
    stages.sample_pool(sample.queries, tmp_path / "ray", 3, GreedySeededPolicy(seed=1), engine=RAY)
    local, remote = _sorted(tmp_path / "local"), _sorted(tmp_path / "ray")
    pd.testing.assert_frame_equal(remote, local)
    assert remote[GREEDY].sum() == len(sample.queries) and (greedy_rows(remote)[IDX] == 3).all()


def test_an_actor_killed_mid_job_loses_and_duplicates_no_row(tmp_path, sample):
    ref = tmp_path / "ref.parquet"
    stages.sample_pool(sample.queries, ref, 4, SeededPolicy(seed=3, batch_queries=2))
    marker = tmp_path / "died"
    out = tmp_path / "ray.parquet"  # the single-file layout, this time
    stages.sample_pool(sample.queries, out, 4, DyingPolicy(marker, seed=3), engine=RAY)
    assert marker.exists()  # a worker did die in its second batch
    got = _sorted(out)
    assert not got.duplicated([QUERY_ID, IDX]).any()
    pd.testing.assert_frame_equal(got, _sorted(ref))


class _SlowCompleter:
    """Completions that depend only on (prompt, seed, i); each request takes 0.25 s, so a kill lands mid-job."""

    from ttpkit.policy.base import SamplingConfig as _Config

    config = _Config()

    def complete(self, prompt: str, n: int, seed: int) -> list[str]:
        time.sleep(0.25)
        h = hashlib.sha256(f"{prompt}|{seed}".encode()).hexdigest()
        return [f"fix {h[i:i + 6]} in module {i}" for i in range(n)]


@pytest.fixture(scope="module")
def server():
    import uvicorn

    from ttpkit.serve import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(_SlowCompleter()), host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.started:
            break
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/v1"
    srv.should_exit = True
    thread.join(timeout=5)


def _sample_cli(server: str, out: Path, *engine: str) -> subprocess.Popen:
    args = ["sample", "--data", str(SAMPLE), "--split", "dev", "--m", "4", "--backend", "openai", "--base-url", server,
            "--no-greedy", "--out", str(out), *engine]
    return subprocess.Popen([sys.executable, "-m", "ttpkit.cli", *args], env={**os.environ, "PYTHONWARNINGS": "ignore"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def test_a_pool_sampled_on_ray_resumes_after_its_driver_is_killed(tmp_path, server, cluster):
    engine = ["--engine", "ray", "--address", cluster, "--actors", "1"]  # this module's cluster (not another on the machine); one worker start per run
    out = tmp_path / "pool"
    proc = _sample_cli(server, out, *engine)
    t0 = time.time()
    while not list(out.glob("part-*.parquet")):
        assert proc.poll() is None, proc.communicate()[1]
        assert time.time() - t0 < 120, "no part was ever written"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = read_pool(out)
    assert 0 < killed[QUERY_ID].nunique() < 16  # killed mid-job, with some queries already in parts

    rerun = _sample_cli(server, out, *engine)
    _, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert "resuming" in err
    ref = tmp_path / "ref.parquet"  # what the CLI's local engine would write, sampled here (no third process start)
    data = load_split(SAMPLE, "dev")
    spec = PolicySpec.from_options("openai", base_url=server, max_new_tokens=data.task.max_new_tokens or 32)
    stages.sample_pool(data.queries, ref, 4, lazy_policy(spec, data.task, 0))
    got = _sorted(out)
    assert not got.duplicated([QUERY_ID, IDX]).any()
    pd.testing.assert_frame_equal(got[[QUERY_ID, IDX, TEXT]], _sorted(ref)[[QUERY_ID, IDX, TEXT]])


@pytest.mark.slow
def test_scoring_on_ray_equals_local_scoring_and_fills_the_drivers_cache(tmp_path, sample):
    pool_path = tmp_path / "pool.parquet"
    stages.sample_pool(sample.queries[:8], pool_path, 4, SeededPolicy(seed=1))  # 8 queries: the encoder loads three times
    pool = read_pool(pool_path)
    rm = load_rm(bundled_path(sample.task.name, "user-prob"))
    cache, layers = tmp_path / "emb.safetensors", rm.config.encoder_layers

    enc = Encoder(cache_file=cache, layers=layers)
    scored = stages.score_pool(pool, rm, sample, name="rm", encoder=enc, engine=RAY)
    assert len(enc.cache) > 0 and cache.exists()  # the actors' embeddings came back and were saved

    again = Encoder(cache_file=cache, layers=layers)  # local scoring from the merged cache needs to encode nothing
    before = len(again.cache)
    local = stages.score_pool(pool, rm, sample, name="rm", encoder=again)
    assert len(again.cache) == before  # every embedding local scoring needed was merged back
    assert scored[score_col("rm")].tolist() == local[score_col("rm")].tolist()

    fresh = stages.score_pool(pool, rm, sample, name="rm", encoder=Encoder(layers=layers))  # computed here from scratch
    np.testing.assert_allclose(scored[score_col("rm")], fresh[score_col("rm")], atol=1e-5)  # batches pad differently
