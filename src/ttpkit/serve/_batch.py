"""Cross-request batching: concurrent requests share one ``complete_many`` decode batch.

Requests arriving within ``window_ms`` of each other (a burst keeps the batch
open, up to ``join_ms`` after its first request), with the same ``n`` and
decoding settings, are decoded together (at most ``max_batch`` prompts, a lone
larger request goes alone). The model runs in one worker
thread, so the event loop keeps accepting requests while a batch decodes, and
the next batch forms from whatever arrived meanwhile. Each prompt keeps its
own seed's generator (``complete_many``'s guarantee), so its samples do not
depend on its batch-mates. A request whose caller went away (its future
cancelled) is dropped before decoding and never blocks the others.

A request that does work of its own before it asks (a personalize request
reads the profile and retrieves first) is announced with :meth:`Batcher.expect`
when it arrives: a forming batch then waits for the announced requests, up to
``join_ms``, so that requests which arrive together decode together (without it,
8 concurrent personalize requests split into batches of about 4: their
retrievals end more than one window apart).

A personalize request asks through :meth:`Batcher.complete_grouped` and gets,
with its texts, its batch's :class:`~ttpkit.serve._scoring.ScoreGroup`: the
personalize requests of one decode batch are then scored in one RM pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ttpkit.errors import ConfigError
from ttpkit.policy.base import Completer, Completion
from ttpkit.serve._gone import unless_gone
from ttpkit.serve._scoring import ScoreGroup

__all__ = ["Batcher", "decode"]

_EXPECTED: contextvars.ContextVar[_Expected | None] = contextvars.ContextVar("ttpkit_expected", default=None)


class _Expected:
    """An announced request (:meth:`Batcher.expect`), until its first job is queued or it ends."""

    def __init__(self, batcher: Batcher) -> None:
        self.batcher, self.waiting = batcher, True
        batcher._coming += 1

    def arrived(self) -> None:
        if self.waiting:
            self.waiting = False
            self.batcher._coming -= 1
            if self.batcher._wake is not None:
                self.batcher._wake.set()


def _key(n: int, cfg: Any) -> tuple:
    """Requests batch together only under the same n and decoding settings (the greedy row included)."""
    return (n, cfg.temperature, cfg.top_p, cfg.max_new_tokens, bool(getattr(cfg, "greedy", False)))


def decode(policy: Completer, cfg: Any, prompts: list[str], n: int, seeds: list[int]) -> list[list[Completion]]:
    """``n`` completions of each prompt under ``cfg`` (then its greedy decode if ``cfg.greedy``), one list per prompt.

    The caller serializes calls. A completer without ``complete_scored`` gives texts only, and no greedy row.
    """
    greedy = bool(getattr(cfg, "greedy", False))
    saved, policy.config = policy.config, cfg
    try:
        if hasattr(policy, "complete_scored"):  # one decode batch, log-probabilities and the greedy row included
            return [list(cs) for cs in policy.complete_scored(prompts, n, seeds, greedy)]
        if greedy:
            raise ConfigError("the served policy cannot decode the greedy row (it has no complete_scored)")
        if hasattr(policy, "complete_many"):  # one decode batch for all prompts
            return [[Completion(t) for t in ts] for ts in policy.complete_many(prompts, n, seeds)]
        return [[Completion(t) for t in policy.complete(p, n, s)] for p, s in zip(prompts, seeds)]
    finally:
        policy.config = saved


@dataclass
class _Job:
    prompts: list[str]
    n: int
    seeds: list[int]
    cfg: Any
    future: asyncio.Future
    grouped: bool = False  # a personalize request: it scores with its batch-mates
    key: tuple = field(init=False)
    since: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.key = _key(self.n, self.cfg)


class Batcher:
    """Gathers concurrent completion requests into shared decode batches.

    Args:
        policy: The completer; its ``complete_many`` (or ``complete``, one
            prompt at a time) runs in a single worker thread.
        window_ms: How long a forming batch waits for the next request after the latest.
        max_batch: Most prompts per decode batch.
        join_ms: How long, at most, a forming batch stays open after its first
            request: for a burst of arrivals, or for announced requests
            (:meth:`expect`) still on their way.
        on_batch: Called after each decode with (requests, prompts, seconds).
        on_score: Called after each shared RM pass with (requests, rows, seconds).
    """

    def __init__(self, policy: Completer, window_ms: float = 5.0, max_batch: int = 16, join_ms: float = 250.0,
                 on_batch: Callable[[int, int, float], None] | None = None,
                 on_score: Callable[[int, int, float], None] | None = None) -> None:
        if window_ms < 0:
            raise ConfigError(f"batch_window_ms must be >= 0, got {window_ms}")
        if max_batch < 1:
            raise ConfigError(f"max_batch must be >= 1, got {max_batch}")
        if join_ms < 0:
            raise ConfigError(f"join_ms must be >= 0, got {join_ms}")
        self.policy = policy
        self.window = window_ms / 1000
        self.max_batch = max_batch
        self.join = join_ms / 1000
        self.on_batch = on_batch
        self.on_score = on_score
        self.lock = threading.Lock()  # held while the model decodes (for callers outside the batcher)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="ttpkit-model")
        self._pending: list[_Job] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._coming = 0  # announced requests whose first job is not queued yet (touched on the event loop only)

    @contextlib.contextmanager
    def expect(self) -> Iterator[None]:
        """Announce the request served in this block (on the event loop): its first job is on its way.

        Until that job is queued (from this context: ``run_in_threadpool`` and
        ``anyio.from_thread.run`` carry it) or the block ends, a forming batch
        with room left waits for it, up to ``join_ms`` after its first job.
        """
        expected = _Expected(self)
        token = _EXPECTED.set(expected)
        try:
            yield
        finally:
            _EXPECTED.reset(token)
            expected.arrived()

    async def complete(self, prompts: list[str], n: int, seeds: list[int], cfg: Any) -> list[list[str]]:
        """``n`` completions of each prompt (one list per prompt), decoded with concurrent requests.

        Args:
            prompts: Full prompt texts.
            n: Completions per prompt.
            seeds: One generator seed per prompt.
            cfg: Decoding settings (a :class:`~ttpkit.policy.SamplingConfig`).
        """
        if not prompts and not seeds:
            return []
        return await self._submit(prompts, n, seeds, cfg, grouped=False)

    async def complete_grouped(self, prompts: list[str], n: int, seeds: list[int], cfg: Any,
                               ) -> tuple[list[list[str]], ScoreGroup]:
        """As :meth:`complete`, and the :class:`ScoreGroup` this request's batch-mates score in.

        Every caller of this method must then call the group's ``score`` once
        (or its batch-mates wait up to the group's ``wait_s`` for it).
        """
        if not prompts:
            raise ValueError("Batcher.complete_grouped: no prompts")
        return await self._submit(prompts, n, seeds, cfg, grouped=True)

    async def _submit(self, prompts: list[str], n: int, seeds: list[int], cfg: Any, grouped: bool) -> Any:
        if len(seeds) != len(prompts):
            raise ValueError(f"Batcher: one seed per prompt, got {len(seeds)} seeds for {len(prompts)} prompts")
        self._ensure_worker()
        job = _Job(list(prompts), n, list(seeds), cfg, self._loop.create_future(), grouped)
        self._pending.append(job)
        self._wake.set()
        expected = _EXPECTED.get()
        if expected is not None and expected.batcher is self:
            expected.arrived()
        return await unless_gone(job.future)  # a request whose client went away is cancelled, never decoded

    def _ensure_worker(self) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self._loop or self._worker is None or self._worker.done():
            self._loop, self._wake, self._pending = loop, asyncio.Event(), []
            self._worker = loop.create_task(self._run())

    def _queued(self, key: tuple) -> int:
        return sum(len(j.prompts) for j in self._pending if j.key == key and not j.future.done())

    async def _run(self) -> None:
        while True:
            while not self._pending:
                self._wake.clear()
                await self._wake.wait()
            first = self._pending[0]
            while self._queued(first.key) < self.max_batch:
                left = self._until(first) - time.monotonic()
                if left <= 0:
                    break
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), left)
                except asyncio.TimeoutError:
                    break
            batch = self._take(first.key)
            if batch:
                await self._decode(batch)

    def _until(self, first: _Job) -> float:
        """When the batch that ``first`` opened starts, if it does not fill first.

        One window after the latest arrival (a burst of arrivals, which the
        event loop reads one by one, keeps it open), or up to ``join_ms`` after
        ``first`` while announced requests are on their way; never later than
        ``first`` plus the larger of the two.
        """
        cap = first.since + max(self.window, self.join)
        if self._coming > 0:
            return cap
        return min(max(first.since, self._pending[-1].since) + self.window, cap)

    def _take(self, key: tuple) -> list[_Job]:
        """Remove and return the live jobs of ``key`` in arrival order, up to the cap (at least one)."""
        batch, rest, size = [], [], 0
        for job in self._pending:
            if job.future.done():  # its caller went away
                continue
            if job.key == key and (not batch or size + len(job.prompts) <= self.max_batch):
                batch.append(job)
                size += len(job.prompts)
            else:
                rest.append(job)
        self._pending = rest
        return batch

    async def _decode(self, batch: list[_Job]) -> None:
        prompts = [p for j in batch for p in j.prompts]
        seeds = [s for j in batch for s in j.seeds]
        start = time.perf_counter()
        try:
            texts = await self._loop.run_in_executor(self._executor, self._locked, batch[0].cfg, prompts,
                                                     batch[0].n, seeds)
        except Exception as e:  # noqa: BLE001 - every request of the batch gets the error
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(e)
            return
        if self.on_batch is not None:
            self.on_batch(len(batch), len(prompts), time.perf_counter() - start)
        scorers = sum(1 for j in batch if j.grouped and not j.future.done())
        group = ScoreGroup(scorers, on_score=self.on_score) if scorers else None
        at = 0
        for job in batch:
            if not job.future.done():
                mine = texts[at : at + len(job.prompts)]
                job.future.set_result((mine, group) if job.grouped else [[c.text for c in cs] for cs in mine])
            at += len(job.prompts)

    def _locked(self, cfg: Any, prompts: list[str], n: int, seeds: list[int]) -> list[list[Completion]]:
        with self.lock:
            return decode(self.policy, cfg, prompts, n, seeds)
