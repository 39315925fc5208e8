"""One personalize request's policy and reward model over the app's batcher: :class:`BatchedPolicy`, :class:`BatchedRM`.

:func:`ttpkit.online.answer` runs a request with these two in place of a
library policy and RM, so its answer for a seed is the library's for the same
arguments. :class:`BatchedPolicy` builds the prompts and seeds exactly as
:meth:`ttpkit.policy.local.LocalPolicy.sample` does and hands them to the app's
batcher, so concurrent requests share one decode batch; :class:`BatchedRM`
scores each round's rows in that batch's :class:`~ttpkit.serve._scoring.ScoreGroup`,
so the requests of one decode batch share one RM pass.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Mapping
from typing import Any

import anyio.from_thread
import pandas as pd

from ttpkit.data import Query, TaskSpec
from ttpkit.policy.base import SHIPPED, Candidate, Completion, sample_queries
from ttpkit.policy.prompt import PromptBuilder
from ttpkit.reward.models import Scores
from ttpkit.serve._scoring import ScoreGroup

__all__ = ["BatchedPolicy", "BatchedRM"]


class BatchedPolicy:
    """A :class:`~ttpkit.policy.Policy` for one request over the app's batcher (call :meth:`sample` from a worker thread).

    Prompts and seeds are :meth:`LocalPolicy.sample`'s: ``PromptBuilder(task,
    k)`` and ``query_seed(seed, query.id)``; the decoding settings are the
    served policy's with this request's seed (and the task's token limit).
    After each :meth:`sample`, :attr:`group` is the decode batch's
    :class:`ScoreGroup`, which the request's next scoring call joins.
    """

    batch_queries = 1

    def __init__(self, state: Any, task: TaskSpec, seed: int, timings: dict[str, float]) -> None:
        base = state.policy.config
        self.batcher, self.metrics, self.timings = state.batcher, getattr(state, "metrics", None), timings
        greedy = SHIPPED.greedy and hasattr(state.policy, "complete_scored")  # the greedy answer is one of the N
        self.config = dataclasses.replace(base, seed=seed, max_new_tokens=task.max_new_tokens or base.max_new_tokens,
                                          greedy=greedy)
        self._prompt = PromptBuilder(task, k=self.config.k)
        self.name = str(getattr(state.policy, "name", "served"))
        self.group: ScoreGroup | None = None

    def prompt(self, query: Query) -> str:
        """The query's prompt (BM25 over the user's items), timed as retrieval."""
        t0 = time.perf_counter()
        try:
            return self._prompt(query)
        finally:
            self.timings["retrieval"] += time.perf_counter() - t0

    def complete_scored(self, prompts: list[str], n: int, seeds: list[int], greedy: bool = False) -> list[list[Completion]]:
        """The completions of the batcher's next batch (with the request's seed and settings); its score group is kept."""
        t0 = time.perf_counter()
        cfg = dataclasses.replace(self.config, greedy=greedy)
        done, self.group = anyio.from_thread.run(self.batcher.complete_grouped, prompts, n, seeds, cfg)
        self.timings["sampling"] += time.perf_counter() - t0
        if self.metrics is not None:
            self.metrics.samples.inc(sum(len(cs) for cs in done))
        return done

    def sample(self, queries: list[Query], m: int) -> list[list[Candidate]]:
        """``m`` candidates per query (and the greedy one), decoded in the batcher's next batch (:func:`sample_queries`)."""
        return sample_queries(self, queries, m)


class BatchedRM:
    """The reward model for one request: each round's rows join their decode batch's shared RM pass, timed.

    One RM pass runs at a time (``lock``: the encoder's cache is shared).
    """

    def __init__(self, model: Any, lock: threading.Lock, timings: dict[str, float], policy: BatchedPolicy) -> None:
        self.model, self.lock, self.timings, self.policy = model, lock, timings, policy
        self.probabilistic = model.probabilistic

    def score(self, pool: pd.DataFrame, by_id: Mapping[str, Query], encoder: Any = None) -> Scores:
        """``model.score(pool, by_id, encoder=encoder)``, in the group of the policy's last decode batch."""
        t0 = time.perf_counter()
        group, self.policy.group = self.policy.group, None
        if group is not None:
            out = group.score(self.model, pool, by_id, encoder, self.lock)
        else:
            with self.lock:
                out = self.model.score(pool, by_id, encoder=encoder)
        self.timings["scoring"] += time.perf_counter() - t0
        return out
