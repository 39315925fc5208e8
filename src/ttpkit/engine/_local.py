"""The local engine: this process, one batch after another (the behaviour from before engines existed)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from ttpkit.engine._base import Engine, batches
from ttpkit.policy.base import Candidate, Policy

if TYPE_CHECKING:
    from ttpkit.data import Query

__all__ = ["sample"]


def sample(
    engine: Engine, queries: Sequence[Query], m: int, policy: Policy | Callable[[], Policy], note: Callable[[str], None] | None,
) -> Iterator[list[Candidate]]:
    """Build the policy (on the first ``next``), then sample batches of ``policy.batch_queries`` in order."""
    if not isinstance(policy, Policy):
        policy = policy()
    for batch in batches(queries, policy.batch_queries):
        yield from policy.sample(batch, m)
