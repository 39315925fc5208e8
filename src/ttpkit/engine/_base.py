"""Where a stage's work runs: :class:`Engine` (``local`` or ``ray``, with the Ray address and actor resources).

An engine only maps work to workers and hands the results back; the stage that
called it writes them (:func:`ttpkit.stages.sample_pool`, :func:`ttpkit.stages.score_pool`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ttpkit.data import Query
from ttpkit.engine import _local
from ttpkit.errors import ConfigError
from ttpkit.policy.base import Candidate, Policy

if TYPE_CHECKING:  # annotations only
    import pandas as pd

    from ttpkit.reward.models import Scores

__all__ = ["ENGINES", "LOCAL", "Engine"]

ENGINES = ("local", "ray")
RAY_HINT = "pip install 'ttpkit[ray]'"


@dataclass(frozen=True)
class Engine:
    """Where sampling and scoring run, and with what resources.

    Attributes:
        kind: One of :data:`ENGINES`. ``local`` (default) runs in this process,
            exactly as before engines existed; ``ray`` runs on Ray actors, each
            loading the model once and serving many batches.
        address: Ray only. ``auto`` connects to the cluster in ``RAY_ADDRESS`` or
            one started on this machine by ``ray start``, else starts a local
            one; ``host:port`` or ``ray://host:port`` names a cluster.
        num_actors: Ray only: actors started for a job (never more than it has batches).
        num_cpus: Ray only: CPUs each actor reserves; also its torch thread count.
        num_gpus: Ray only: GPUs each actor reserves; ``None`` is 1 when the model
            runs on CUDA, else 0 (see :meth:`gpus`).
    """

    kind: str = "local"
    address: str = "auto"
    num_actors: int = 2
    num_cpus: float = 1.0
    num_gpus: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ENGINES:
            raise ConfigError(f"unknown engine {self.kind!r}; known engines: {', '.join(ENGINES)}")
        if not isinstance(self.address, str) or not (self.address == "auto" or ":" in self.address):
            raise ConfigError(f"Ray address must be auto, host:port or ray://host:port, got {self.address!r}")
        if isinstance(self.num_actors, bool) or not isinstance(self.num_actors, int) or self.num_actors < 1:
            raise ConfigError(f"actors must be a whole number >= 1, got {self.num_actors!r}")
        if not self.num_cpus > 0:
            raise ConfigError(f"CPUs per actor must be > 0, got {self.num_cpus!r}")
        if self.num_gpus is not None and not self.num_gpus >= 0:
            raise ConfigError(f"GPUs per actor must be >= 0, got {self.num_gpus!r}")

    def check(self) -> Engine:
        """Check that the engine can run here, without starting it (Ray installed); returns ``self``.

        Raises:
            ConfigError: For ``ray`` when Ray is not installed (naming the extra to install).
        """
        if self.kind == "ray":
            from importlib.util import find_spec

            if find_spec("ray") is None:
                raise ConfigError(f"--engine ray needs Ray, which is not installed here: {RAY_HINT}")
        return self

    def gpus(self, device: str) -> float:
        """GPUs per actor for a model on ``device`` (``cpu`` or ``cuda``): :attr:`num_gpus`, or 1 on CUDA and 0 elsewhere."""
        if self.num_gpus is not None:
            return float(self.num_gpus)
        return 1.0 if device == "cuda" else 0.0

    def sample(
        self, queries: Sequence[Query], m: int, policy: Policy | Callable[[], Policy], note: Callable[[str], None] | None = None,
    ) -> Iterator[list[Candidate]]:
        """``m`` candidates for each query, one list per query as its batch returns (Ray: in completion order).

        Args:
            queries: The queries still to sample.
            m: Candidates per query.
            policy: A policy, or a function that builds one. Under Ray it is
                pickled to every actor, which builds it once
                (:class:`ttpkit.policy.LazyPolicy` drops its load hook and any
                loaded model when pickled).
            note: Called with one-line status messages (actors starting).
        """
        if self.kind == "local":
            return _local.sample(queries, m, policy)
        from ttpkit.engine._ray import sample  # imports ray: only when a Ray engine runs

        return sample(self, queries, m, policy, note)

    def score(self, pool: pd.DataFrame, rm: Any, by_id: Mapping[str, Query], encoder: Any,
              note: Callable[[str], None] | None = None) -> Scores:
        """``rm``'s scores of every row of ``pool``, in row order; the encoder's cache gains every new embedding.

        Args:
            pool: The rows to score.
            rm: A fitted scorer (``score(pool, by_id, encoder=...)``).
            by_id: The queries of the pool's split, by id.
            encoder: The sentence encoder, or ``None`` for a scorer that needs none
                (such a scorer, cheap or with its own encoder, always scores here).
            note: Called with one-line status messages.
        """
        if self.kind == "local" or encoder is None:
            return rm.score(pool, by_id, encoder=encoder)
        from ttpkit.engine._ray import score  # imports ray: only when a Ray engine runs

        return score(self, pool, rm, by_id, encoder, note)


LOCAL = Engine()
