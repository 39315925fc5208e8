from __future__ import annotations

import os

if os.environ.get("PYTEST_XDIST_WORKER"):  # two workers share 2 cores: one math thread each (CLI subprocesses inherit it)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import contextlib
import gzip
import json
import random
import socket
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, text

from ttpkit.data import bundled_sample_dir, get_task, load_split
from ttpkit.policy import PromptBuilder, SamplingConfig
from ttpkit.policy.base import Candidate
from ttpkit.policy.local import LocalPolicy
from ttpkit.serve._store import _engine_url


@pytest.fixture(scope="session")
def sample():
    """The bundled real sample (16 git-commits dev queries)."""
    return load_split(bundled_sample_dir(), "dev")


def write_split(directory: Path, questions, outputs=None, split: str = "test", gz: bool = False) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".json.gz" if gz else ".json"
    opener = gzip.open if gz else open
    with opener(directory / f"{split}_questions{suffix}", "wt") as f:
        json.dump(questions, f)
    if outputs is not None:
        with opener(directory / f"{split}_outputs{suffix}", "wt") as f:
            json.dump(outputs, f)
    return directory


class EchoPolicy:
    """A fake policy: candidate i of a query is word i of its source (deterministic)."""

    name = "echo"
    batch_queries = 1

    def __init__(self, fail_after: int | None = None) -> None:
        self.calls = 0
        self.fail_after = fail_after

    def sample(self, queries, m):
        out = []
        for q in queries:
            if self.fail_after is not None and self.calls >= self.fail_after:
                raise KeyboardInterrupt  # what Ctrl-C does mid-run
            self.calls += 1
            words = q.source.split() or ["x"]
            out.append([Candidate(q.id, q.user_id, i, " ".join(words[i : i + 4]), self.name, 0) for i in range(m)])
        return out


class FakeEncoder:
    """Deterministic bag-of-words hashing encoder (no model download, same interface)."""

    dim = 384

    def __init__(self, layers=None):
        self.layers = layers

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, hash(w) % self.dim] += 1.0
            n = np.linalg.norm(out[i])
            out[i] /= n or 1.0
        return out

    def save_cache(self):
        """Nothing to persist."""

    def forget(self, texts):
        """Nothing cached."""
        return 0


class FakeLM:
    """A served policy: completions are a function of prompt and seed; ``sample`` is LocalPolicy's own code."""

    name = "fake-lm"
    batch_queries = 4
    sample = LocalPolicy.sample  # the library's path: PromptBuilder prompts, query_seed seeds, complete_many

    def __init__(self, seed: int = 0) -> None:
        self.config = SamplingConfig(seed=seed)
        self.prompt = PromptBuilder(get_task("git-commits"), k=self.config.k)
        self.batches: list[int] = []

    def complete(self, prompt, n, seed):
        return self.complete_many([prompt], n, [seed])[0]

    def complete_many(self, prompts, n, seeds):
        self.batches.append(len(prompts))
        out = []
        for p, s in zip(prompts, seeds):
            rng, words = random.Random(f"{s}:{p}"), p.split()
            out.append([" ".join(rng.choice(words) for _ in range(4)) for _ in range(n)])
        return out


def items_of(query):
    """A query's profile as the service's item bodies (git-commits fields)."""
    return [{"id": p.id, "text": p.source, "title": p.target} for p in query.profile]


@contextlib.contextmanager
def live(app, start_s: float = 20.0):
    """Serve ``app`` under a real uvicorn on a free 127.0.0.1 port for the block; yields its root URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + start_s
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, f"uvicorn did not start within {start_s:.0f} s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory):
    """A PostgreSQL server from the ``pgserver`` package, started for this session (skipped, with why, if it cannot)."""
    try:
        import pgserver
        import psycopg  # noqa: F401  (SQLAlchemy's driver for postgresql:// URLs)
    except ImportError as e:
        pytest.skip(f"PostgreSQL store not tested: {e.name} is not installed (pip install pgserver 'psycopg[binary]')")
    try:
        server = pgserver.get_server(tmp_path_factory.mktemp("pg"), cleanup_mode="stop")
    except Exception as e:  # noqa: BLE001 - any failure to start is a reason to skip, stated
        pytest.skip(f"PostgreSQL store not tested: pgserver could not start a server ({e})")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    """A fresh store URL: SQLite in ``tmp_path``, then a new database on the session's PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'profiles.db'}"
    base = request.getfixturevalue("postgres_url")
    name = "t" + uuid.uuid4().hex[:10]  # a fresh database per test
    engine = create_engine(_engine_url(base), isolation_level="AUTOCOMMIT")
    with engine.connect() as c:
        c.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return base.replace("/postgres?", f"/{name}?")
