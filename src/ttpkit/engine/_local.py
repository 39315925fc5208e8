"""The local engine: this process, one batch after another (the behaviour from before engines existed).

:func:`batches` is the one place a run's queries are cut, for either engine.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ttpkit.policy.base import Candidate, Policy

if TYPE_CHECKING:
    from ttpkit.data import Query

__all__ = ["batches", "sample"]


def batches(items: Sequence[Any], size: int) -> list[list[Any]]:
    """``items`` cut into consecutive lists of ``size`` (the last may be shorter); ``size`` below 1 counts as 1."""
    step = max(1, int(size))
    return [list(items[i : i + step]) for i in range(0, len(items), step)]


def sample(queries: Sequence[Query], m: int, policy: Policy | Callable[[], Policy]) -> Iterator[list[Candidate]]:
    """Build the policy (on the first ``next``), then sample batches of ``policy.batch_queries`` in order."""
    if not isinstance(policy, Policy):
        policy = policy()
    for batch in batches(queries, policy.batch_queries):
        yield from policy.sample(batch, m)
