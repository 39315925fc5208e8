"""Tiny policies for the engine tests: deterministic from each query's seed, so any worker gives the same candidates.

They live in a module of their own so that Ray workers can receive them: the
Ray tests register this module to be pickled by value (the workers need not
import ``tests/``).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from ttpkit.policy.base import Candidate, query_seed

WORDS = ("fix", "add", "remove", "update", "bump", "refactor", "docs", "tests", "parser", "cache", "cli", "pool")


class SeededPolicy:
    """Candidate i of a query: words drawn from a generator seeded with (seed, query id), as every real backend does."""

    name = "seeded"

    def __init__(self, seed: int = 0, batch_queries: int = 3) -> None:
        self.seed, self.batch_queries, self.calls = seed, batch_queries, 0

    def sample(self, queries, m):
        self.calls += 1
        out = []
        for q in queries:
            rng = random.Random(query_seed(self.seed, q.id))
            out.append([Candidate(q.id, q.user_id, i, " ".join(rng.choice(WORDS) for _ in range(4)), self.name, self.seed)
                        for i in range(m)])
        return out


class DyingPolicy(SeededPolicy):
    """A :class:`SeededPolicy` whose worker process exits (``os._exit``) in its second batch, once per ``marker`` file.

    The first worker to reach its second batch creates ``marker`` (atomically) and
    dies mid-batch, as a worker killed by the OOM killer or a lost node would;
    its restarted self, and every other worker, then run normally.
    """

    def __init__(self, marker: str | Path, seed: int = 0, batch_queries: int = 2) -> None:
        super().__init__(seed, batch_queries)
        self.marker = str(marker)

    def sample(self, queries, m):
        if self.calls == 1:
            try:
                os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                pass
            else:
                os._exit(1)
        return super().sample(queries, m)


class GreedySeededPolicy(SeededPolicy):
    """A :class:`SeededPolicy` that also returns each query's greedy row (``idx == m``), the same whatever the seed."""

    name = "seeded-greedy"

    def sample(self, queries, m):
        rows = super().sample(queries, m)
        for q, cands in zip(queries, rows):
            text = " ".join(WORDS[(len(q.id) + i) % len(WORDS)] for i in range(3))
            cands.append(Candidate(q.id, q.user_id, m, text, self.name, self.seed, True, -3.0, 4))
        return rows
