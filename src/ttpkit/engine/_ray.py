"""The Ray engine: a pool of actors, each loading its model once and serving many batches.

Sampling: the queries left are cut into batches of the policy's
``batch_queries`` (:func:`ttpkit.engine.batches`), and each actor builds the
policy from the picklable policy or factory it was given. Scoring: the pool is
cut into batches of whole queries (the features of a row depend only on its own
query), and each actor holds the reward model (one copy in the object store,
passed by reference) and a copy of the driver's encoder with every embedding
the driver has (its model loads in the actor). Each batch's result returns the embeddings the actor
computed for it; the driver adds them to its encoder's cache, and the stage
saves the cache.

**The driver writes.** Actors only compute; every candidate reaches the pool
through the stage's one writer in the driver (part files for a pool directory,
the journal for a file). One writer means no two processes append the same
query, and a task that Ray runs again (after its actor died) still has one
result: the driver receives one value per batch, so a retry cannot duplicate a
row. What the driver has written survives a killed driver, and the stage's
resume skips it.

**Faults.** Ray's defaults are at most once (``max_restarts=0``,
``max_task_retries=0``): a dead actor's batches would be lost. Here an actor
is restarted up to :data:`MAX_RESTARTS` times and a batch is retried up to
:data:`MAX_TASK_RETRIES` times, so a killed actor's batches are redone on its
restarted self. Past those limits the job fails with a :class:`TtpkitError`;
what was written stays written.
"""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ttpkit.engine._base import RAY_HINT, Engine
from ttpkit.engine._local import batches
from ttpkit.errors import ConfigError, TtpkitError
from ttpkit.policy.base import Candidate, Policy
from ttpkit.pool import QUERY_ID
from ttpkit.reward.models import Scores

try:
    import ray
except ImportError:  # pragma: no cover - checked by Engine.check before any work
    raise ConfigError(f"--engine ray needs Ray, which is not installed here: {RAY_HINT}") from None

if TYPE_CHECKING:
    import pandas as pd

    from ttpkit.data import Query

__all__ = ["MAX_RESTARTS", "MAX_TASK_RETRIES", "connect", "sample", "score"]


MAX_RESTARTS = 3  # per actor: a model that cannot load fails after 4 tries, not forever
MAX_TASK_RETRIES = 3  # per batch, across the restarts of its actor
IN_FLIGHT = 2  # batches queued per actor: the next is ready while the driver writes the last
SCORE_ROWS = 4096  # rows per scoring batch at most (whole queries; a few seconds of encoding on one core)


def connect(address: str) -> Any:
    """The ``ray`` module, initialized: the running session if there is one, else ``address`` (``auto``: see :class:`Engine`)."""
    if not ray.is_initialized():
        # address=None is Ray's own search: RAY_ADDRESS, then a cluster started here by `ray start`, else a new local one
        ray.init(address=None if address == "auto" else address, log_to_driver=False, logging_level=logging.WARNING)
    return ray


def _threads(num_cpus: float) -> None:
    """Give torch (if the model loaded it) one intra-op thread per reserved CPU, so actors do not oversubscribe cores."""
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(max(1, int(num_cpus)))


class PolicyActor:
    """Builds a policy once, then samples the batches it is sent."""

    def __init__(self, policy: Policy | Callable[[], Policy], num_cpus: float) -> None:
        self.policy = policy if isinstance(policy, Policy) else policy()
        _threads(num_cpus)

    def batch_queries(self) -> int:
        """Queries the policy decodes in one batch."""
        return max(1, int(self.policy.batch_queries))

    def sample(self, queries: list[Query], m: int) -> list[list[Candidate]]:
        """``m`` candidates per query of one batch."""
        return self.policy.sample(queries, m)


class ScoreActor:
    """Scores the batches it is sent with a reward model and an encoder, fetched from the object store on first use.

    They come with every batch as object references (inside a list, so Ray
    does not fetch them before the call) rather than to the constructor: a
    restarted actor fetches them again from its retried batch, and nothing
    the driver may release is needed to restart it.
    """

    def __init__(self, num_cpus: float) -> None:
        self.num_cpus = num_cpus
        self.rm: Any = None
        self.encoder: Any = None
        self.sent: set[str] = set()

    def score(self, rows: pd.DataFrame, by_id: Mapping[str, Query], refs: list) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, dict]:
        """Scores of one batch (mean, std, members), and the cache entries computed since the last batch."""
        if self.rm is None:
            self.rm, self.encoder = ray.get(refs)
            self.sent = set(getattr(self.encoder, "cache", {}))  # entries the driver already has
            _threads(self.num_cpus)
        s = self.rm.score(rows, by_id, encoder=self.encoder)
        cache = getattr(self.encoder, "cache", {})
        new = {k: v for k, v in cache.items() if k not in self.sent}
        self.sent.update(new)
        return s.mean, s.std, s.members, new


def _start(engine: Engine, cls: type, args: tuple, count: int, device: str) -> list[Any]:
    remote = ray.remote(cls).options(num_cpus=engine.num_cpus, num_gpus=engine.gpus(device), max_restarts=MAX_RESTARTS,
                                     max_task_retries=MAX_TASK_RETRIES)
    return [remote.remote(*args) for _ in range(count)]


def _stop(actors: Iterable[Any]) -> None:
    for a in actors:
        ray.kill(a, no_restart=True)


def _get(ref: Any, what: str) -> Any:
    """``ray.get(ref)``; a ttpkit error raised in an actor is raised as itself, any other failure as a :class:`TtpkitError`."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        if isinstance(e.cause, TtpkitError):
            raise e.cause from None
        raise TtpkitError(f"Ray {what} failed: {type(e.cause).__name__}: {e.cause}") from e
    except ray.exceptions.RayError as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise TtpkitError(f"Ray {what} failed (an actor died {MAX_RESTARTS + 1} times, or a batch "
                          f"{MAX_TASK_RETRIES + 1} times): {first}") from e


def _results(actors: Sequence[Any], method: str, jobs: Sequence[tuple]) -> Iterator[tuple[int, Any]]:
    """(job index, result) of every job, in completion order; each actor keeps :data:`IN_FLIGHT` jobs queued.

    Raises:
        TtpkitError: If a job failed for good (its actor died past the restart
            and retry limits, or the model raised).
    """
    todo = iter(enumerate(jobs))
    pending: dict[Any, tuple[int, Any]] = {}

    def submit(actor: Any) -> None:
        job = next(todo, None)
        if job is not None:
            pending[getattr(actor, method).remote(*job[1])] = (job[0], actor)

    for actor in actors:
        for _ in range(IN_FLIGHT):
            submit(actor)
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        index, actor = pending.pop(ref)
        result = _get(ref, f"batch {index}")
        submit(actor)
        yield index, result


def sample(
    engine: Engine, queries: Sequence[Query], m: int, policy: Policy | Callable[[], Policy], note: Callable[[str], None] | None,
) -> Iterator[list[Candidate]]:
    """Sample ``queries`` on up to ``engine.num_actors`` actors; one candidate list per query, in completion order."""
    if not queries:
        return
    connect(engine.address)
    device = getattr(getattr(policy, "spec", None), "device", "cpu")
    count = min(engine.num_actors, len(queries))
    if note is not None:
        note(f"starting {count} Ray actor(s) ({engine.num_cpus:g} CPU, {engine.gpus(device):g} GPU each); each loads the policy once")
    actors = _start(engine, PolicyActor, (policy, engine.num_cpus), count, device)
    try:
        step = _get(actors[0].batch_queries.remote(), "actor start (building the policy)")
        jobs = [(batch, m) for batch in batches(queries, step)]
        for _, cands in _results(actors[: len(jobs)], "sample", jobs):
            yield from cands
    finally:
        _stop(actors)


def _query_batches(pool: pd.DataFrame, rows: int) -> list[tuple[int, int]]:
    """Row ranges of at most ``rows`` rows (more only for one query larger than that) that never split a query."""
    ids = pool[QUERY_ID].to_numpy()
    starts = [0, *(np.flatnonzero(ids[1:] != ids[:-1]) + 1).tolist()]
    bounds, lo = [], 0
    for start in [*starts[1:], len(pool)]:
        if start - lo >= rows or start == len(pool):
            bounds.append((lo, start))
            lo = start
    return bounds


def score(engine: Engine, pool: pd.DataFrame, rm: Any, by_id: Mapping[str, Query], encoder: Any,
          note: Callable[[str], None] | None) -> Scores:
    """Score ``pool`` in batches of whole queries on Ray actors; ``encoder``'s cache gains every embedding they computed."""
    if len(pool) == 0:
        return rm.score(pool, by_id, encoder=encoder)
    connect(engine.address)
    order = np.argsort(pool[QUERY_ID].map({q: i for i, q in enumerate(dict.fromkeys(pool[QUERY_ID]))}).to_numpy(), kind="stable")
    grouped = pool.iloc[order]  # each query's rows contiguous, so a batch holds whole queries
    per_actor = -(-len(pool) // engine.num_actors)
    bounds = _query_batches(grouped, max(1, min(SCORE_ROWS, per_actor)))
    refs = [ray.put(rm), ray.put(_worker_encoder(encoder))]  # one copy of each in the object store, however many actors
    jobs = []
    for lo, hi in bounds:
        rows = grouped.iloc[lo:hi]
        jobs.append((rows, {q: by_id[q] for q in dict.fromkeys(rows[QUERY_ID])}, refs))
    device = getattr(encoder, "device", "cpu")
    count = min(engine.num_actors, len(jobs))
    if note is not None:
        note(f"scoring {len(pool)} rows on {count} Ray actor(s) in {len(jobs)} batches")
    actors = _start(engine, ScoreActor, (engine.num_cpus,), count, device)
    parts: dict[int, tuple] = {}
    try:
        for index, (mean, std, members, new) in _results(actors, "score", jobs):
            parts[index] = (mean, std, members)
            if hasattr(encoder, "cache"):
                encoder.cache.update(new)  # keys are content hashes: a key computed twice has one value
    finally:
        _stop(actors)
    mean = np.empty(len(pool))
    std = np.empty(len(pool))
    mean[order] = np.concatenate([parts[i][0] for i in range(len(jobs))])
    std[order] = np.concatenate([parts[i][1] for i in range(len(jobs))])
    members = None
    if all(parts[i][2] is not None for i in range(len(jobs))):
        stacked = np.concatenate([parts[i][2] for i in range(len(jobs))], axis=1)
        members = np.empty_like(stacked)
        members[:, order] = stacked
    return Scores(mean=mean, std=std, members=members)


def _worker_encoder(encoder: Any) -> Any:
    """What an actor encodes with: the driver's :class:`~ttpkit.reward.encoder.Encoder` without its loaded model
    (it loads in the actor) and without its cache file (only the driver saves), with every embedding the driver
    has; any other encoder object is sent as it is."""
    from ttpkit.reward.encoder import Encoder

    if not isinstance(encoder, Encoder):
        return encoder
    worker = copy.copy(encoder)
    worker._model, worker.cache_file, worker.cache = None, None, dict(encoder.cache)
    return worker
