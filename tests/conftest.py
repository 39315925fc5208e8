from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from ttpkit.data import bundled_sample_dir, load_split
from ttpkit.policy.base import Candidate


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
