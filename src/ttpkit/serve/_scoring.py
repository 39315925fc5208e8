"""Cross-request scoring: the personalize requests of one decode batch share one reward-model pass.

The :class:`~ttpkit.serve.Batcher` hands every personalize request of a
decode batch the same :class:`ScoreGroup`. Each request's thread then calls
:meth:`ScoreGroup.score` with its own pool rows. The first to arrive leads: it
waits until all its batch-mates have arrived (or ``wait_s`` has passed, so a
member that never comes cannot stall the rest), joins their rows into one pool
DataFrame, and scores it in one pass per (reward model, encoder); each request
gets back its own rows' scores. Query ids are made unique per member before
joining (two requests may share an id: one user and one input), so each row is
scored against its own request's query and profile.

The pass is one :meth:`RewardModel.features` call over the joined pool (the
encoder's one batch: the cost of scoring), then :meth:`RewardModel.score_features`
on each request's rows. A row's features depend only on the row and its query,
and the small network then sees exactly the rows of a solo call, so each
request's scores equal its solo scores bit for bit. (One network call over the
joined rows would not: the CPU matmul's last bits depend on the row count;
``tests/test_service_load.py`` checks the equality over HTTP.) A model whose
``needs.row_features`` is false (no :class:`RewardModel`) is scored in one ``score`` call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections.abc import Mapping
from typing import Any, Callable, Optional

import numpy as np
import pandas as pd

from ttpkit.data import Query
from ttpkit.pool import QUERY_ID
from ttpkit.reward.models import Scores

__all__ = ["ScoreGroup"]


@dataclasses.dataclass
class _Member:
    """One request's rows, waiting for their scores."""

    model: Any
    pool: pd.DataFrame
    by_id: Mapping[str, Query]
    encoder: Any
    lock: Optional[threading.Lock]
    scores: Optional[Scores] = None
    error: Optional[BaseException] = None
    done: bool = False


class ScoreGroup:
    """The personalize requests of one decode batch, scored together.

    Args:
        expected: How many requests of the batch will call :meth:`score`.
        wait_s: Longest a leader waits for missing batch-mates before scoring
            those that came (a request that failed between decoding and
            scoring never arrives).
        on_score: Called after each RM pass with (requests, rows, seconds).
    """

    def __init__(self, expected: int, wait_s: float = 2.0,
                 on_score: Optional[Callable[[int, int, float], None]] = None) -> None:
        if expected < 1:
            raise ValueError(f"ScoreGroup: expected must be >= 1, got {expected}")
        self.expected, self.wait_s, self.on_score = expected, wait_s, on_score
        self._cond = threading.Condition()
        self._arrived: list[_Member] = []
        self._leading = False

    def score(self, model: Any, pool: pd.DataFrame, by_id: Mapping[str, Query], encoder: Any = None,
              lock: Optional[threading.Lock] = None) -> Scores:
        """This request's scores (as ``model.score(pool, by_id, encoder=encoder)``), from the group's shared call.

        Args:
            model: The reward model (``score(pool, by_id, encoder=...)``).
            pool: This request's rows (``query_id``, ``text``, ...).
            by_id: This request's queries by id.
            encoder: Sentence encoder.
            lock: Held around each RM pass (the model's encoder cache is shared).
        """
        me = _Member(model, pool, by_id, encoder, lock)
        with self._cond:
            self._arrived.append(me)
            self._cond.notify_all()
            if self._leading:  # the leader scores us
                while not me.done:
                    self._cond.wait()
                return self._result(me)
            self._leading = True
            deadline = time.monotonic() + self.wait_s
            while len(self._arrived) < self.expected and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
            batch, self._arrived = self._arrived, []
            self.expected -= len(batch)  # a late member leads a group of its own
            self._leading = False
        try:
            self._score_all(batch)
        finally:
            with self._cond:
                for m in batch:
                    m.done = True
                self._cond.notify_all()
        return self._result(me)

    @staticmethod
    def _result(me: _Member) -> Scores:
        if me.error is not None:
            raise me.error
        assert me.scores is not None
        return me.scores

    def _score_all(self, batch: list[_Member]) -> None:
        """One RM pass per (model, encoder) among ``batch``; each member gets its rows' scores or the error."""
        groups: dict[tuple[int, int], list[_Member]] = {}
        for m in batch:
            groups.setdefault((id(m.model), id(m.encoder)), []).append(m)
        for members in groups.values():
            try:
                self._score_one_call(members)
            except Exception as e:  # noqa: BLE001 - every member of the call gets the error
                for m in members:
                    m.error = e

    def _score_one_call(self, members: list[_Member]) -> None:
        frames, by_id = [], {}
        for i, m in enumerate(members):
            rename = {qid: f"{i}/{qid}" for qid in m.pool[QUERY_ID].unique()}  # unique across members
            frames.append(m.pool.assign(**{QUERY_ID: m.pool[QUERY_ID].map(rename)}))
            by_id.update({new: dataclasses.replace(m.by_id[old], id=new) for old, new in rename.items()})
        pool = pd.concat(frames, ignore_index=True)
        model, t0 = members[0].model, time.perf_counter()
        with members[0].lock or contextlib.nullcontext():
            bounds = np.cumsum([0] + [len(m.pool) for m in members])  # member i's rows: bounds[i]:bounds[i + 1]
            if model.needs.row_features:
                x = model.features(pool, by_id, encoder=members[0].encoder)  # (R, F), one encoder pass
                for i, m in enumerate(members):
                    m.scores = model.score_features(x[bounds[i] : bounds[i + 1]])
            else:
                s = model.score(pool, by_id, encoder=members[0].encoder)
                for i, m in enumerate(members):
                    rows = slice(bounds[i], bounds[i + 1])
                    m.scores = Scores(mean=np.asarray(s.mean)[rows], std=np.asarray(s.std)[rows],
                                      members=None if s.members is None else np.asarray(s.members)[:, rows])
        if self.on_score is not None:
            self.on_score(len(members), len(pool), time.perf_counter() - t0)
