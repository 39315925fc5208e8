"""``POST /v1/personalize`` and ``POST /v1/feedback``, and :func:`create_service`, the whole service's app.

A personalize request runs :func:`ttpkit.online.personalize`'s own steps
(``_rule``, ``_query``, ``_draw``, ``_scored``, ``_expectation``) over the
server's loaded policy and reward model, so its answer for a seed is the
library's for the same arguments. The one difference is where the samples come
from: :class:`BatchedPolicy` builds the prompts and seeds exactly as
:meth:`ttpkit.policy.local.LocalPolicy.sample` does and hands them to the app's
batcher, so concurrent requests share one decode batch, and :class:`_TimedRM`
scores each round's rows in that batch's :class:`~ttpkit.serve._scoring.ScoreGroup`,
so the requests of one decode batch share one RM pass. With ``log_requests``
each answer and its scored candidates are kept in the store, and
``POST /v1/feedback`` records the text the user finally kept.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio.from_thread
import numpy as np
import pandas as pd
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import ConfigDict, Field, model_validator
from sqlalchemy.exc import OperationalError

from ttpkit import stages
from ttpkit.data import ProfileItem, Query, TaskSpec
from ttpkit.errors import TtpkitError
from ttpkit.online import MAX_N, Schedule, _draw, _expectation, _load_rm, _query, _rule, _scored, _warnings
from ttpkit.policy.base import MAX_SEED, Candidate, Completer, query_seed
from ttpkit.policy.prompt import PromptBuilder
from ttpkit.pool import TEXT
from ttpkit.reward.bundled import ModelCard, load_card
from ttpkit.reward.models import RewardModel, Scores
from ttpkit.serve._auth import Caller, caller, key_check
from ttpkit.serve._scoring import ScoreGroup
from ttpkit.serve._store import LoggedRequest, ProfileStore
from ttpkit.serve._text import TextRequest
from ttpkit.serve._users import USER_ID, Limits, Profiles, check_items, task_spec, users_router
from ttpkit.serve.app import create_app, on_storage_error

__all__ = ["BatchedPolicy", "FeedbackRequest", "PersonalizeRequest", "Personalizer", "create_service"]


class PersonalizeRequest(TextRequest):
    """One personalize request: a stored user (``user_id``) or an inline ``profile``, and a new input."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(None, pattern=USER_ID, description="A user in the store.")
    profile: list[dict[str, Any]] | None = Field(None, description="Inline profile items instead of a stored user.")
    input: str = Field(..., min_length=1, description="The new input (a commit message, a package description...).")
    task: str = Field("git-commits", description="Task name (its fields and prompt labels).")
    n: int = Field(8, ge=1, le=MAX_N, description=f"Candidates to draw (N of best-of-N), at most {MAX_N}.")
    adaptive: bool = Field(False, description="Sample in rounds and stop when the next round's expected gain is small.")
    max_n: int = Field(32, ge=1, le=MAX_N, description=f"Most candidates adaptive sampling draws, at most {MAX_N}.")
    round_size: int = Field(4, ge=1, description="Candidates per adaptive round.")
    min_round_gain: float = Field(0.05, ge=0, description="Adaptive threshold, in RM score stds.")
    rule: str = Field("mean", description="mean | lcb:κ | ucb:κ | thompson (all but mean need a probabilistic RM).")
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Sampling seed (0 to 2**63-1).")

    @model_validator(mode="after")
    def _one_source(self) -> PersonalizeRequest:
        if (self.user_id is None) == (self.profile is None):
            raise ValueError("give exactly one of user_id (a stored user) and profile (inline items)")
        return self


class FeedbackRequest(TextRequest):
    """What the user finally wrote or accepted for a logged request."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(..., min_length=1, max_length=64)
    text: str = Field(..., min_length=1)


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
        self.config = dataclasses.replace(base, seed=seed, max_new_tokens=task.max_new_tokens or base.max_new_tokens)
        self.prompt = PromptBuilder(task, k=self.config.k)
        self.name = str(getattr(state.policy, "name", "served"))
        self.group: ScoreGroup | None = None

    def sample(self, queries: list[Query], m: int) -> list[list[Candidate]]:
        """``m`` candidates per query, decoded in the batcher's next batch."""
        t0 = time.perf_counter()
        prompts = [self.prompt(q) for q in queries]  # BM25 over the user's items
        t1 = time.perf_counter()
        seeds = [query_seed(self.config.seed, q.id) for q in queries]
        texts, self.group = anyio.from_thread.run(self.batcher.complete_grouped, prompts, m, seeds, self.config)
        self.timings["retrieval"] += t1 - t0
        self.timings["sampling"] += time.perf_counter() - t1
        if self.metrics is not None:
            self.metrics.samples.inc(m * len(queries))
        return [[Candidate(q.id, q.user_id, j, t, self.name, self.config.seed) for j, t in enumerate(ts)]
                for q, ts in zip(queries, texts)]


class _TimedRM:
    """The reward model for one request: each round's rows join their decode batch's shared RM pass, timed.

    One RM pass runs at a time (``lock``: the encoder's cache is shared).
    """

    def __init__(self, model: RewardModel, lock: threading.Lock, timings: dict[str, float], policy: BatchedPolicy) -> None:
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


@dataclasses.dataclass(frozen=True)
class _LoadedRM:
    model: RewardModel
    path: str
    card: ModelCard | None
    encoder: Any


class Personalizer:
    """Answers personalize requests with the server's RM, reading profiles through ``profiles``.

    Args:
        profiles: The store's profiles (cached per user until a write).
        rm: ``default`` (the task's bundled model), ``default:user-prob``, a
            model directory, or a :class:`RewardModel`; loaded once per task.
        encoder: Sentence encoder (default: the RM's depth and dtype, with the on-disk cache).
        limits: Request limits.
        log_requests: Keep every answer and its scored candidates in the store.
    """

    def __init__(self, profiles: Profiles, rm: str | Path | RewardModel = "default", encoder: Any = None,
                 limits: Limits = Limits(), log_requests: bool = False) -> None:
        self.profiles, self.store, self.rm, self.encoder = profiles, profiles.store, rm, encoder
        self.limits, self.log_requests = limits, log_requests
        self._loaded: dict[str, _LoadedRM] = {}
        self._load_lock, self._score_lock = threading.Lock(), threading.Lock()

    def rm_for(self, spec: TaskSpec) -> _LoadedRM:
        """The reward model for ``spec``'s task, loaded on first use (a 422 if it cannot serve the task)."""
        with self._load_lock:
            if spec.name not in self._loaded:
                try:
                    model, path = _load_rm(self.rm, spec)
                    card = load_card(path) if path != "(in memory)" else None
                except TtpkitError as e:  # a damaged model or card for this task: the request names it, never a 500
                    raise HTTPException(422, detail=str(e)) from None
                enc = self.encoder or stages.default_encoder(model.config.encoder_dtype, model.config.encoder_layers)
                if enc not in self.profiles.encoders:
                    self.profiles.encoders.append(enc)
                self._loaded[spec.name] = _LoadedRM(model, path, card, enc)
            return self._loaded[spec.name]

    def _items(self, body: PersonalizeRequest, spec: TaskSpec, user_id: str | None) -> tuple[ProfileItem, ...]:
        if body.profile is None:
            assert user_id is not None
            return self.profiles.items(user_id, spec)
        if len(body.profile) > self.limits.max_profile_items:
            raise HTTPException(413, detail=f"the profile has {len(body.profile)} items; the limit is {self.limits.max_profile_items}")
        return check_items(body.profile, spec, self.limits, "profile")

    def _check(self, body: PersonalizeRequest, who: Caller) -> tuple[TaskSpec, Schedule, Any, str | None]:
        most = self.limits.max_n
        if (body.max_n if body.adaptive else body.n) > most:
            raise HTTPException(422, detail=f"{'max_n' if body.adaptive else 'n'}: at most {most} candidates per request")
        if len(body.input) > self.limits.max_item_chars:
            raise HTTPException(422, detail=f"input: {len(body.input)} characters; the limit is {self.limits.max_item_chars}")
        if body.user_id is not None:
            who.may_act_for(body.user_id)
        spec = task_spec(body.task)
        schedule = Schedule(body.n, body.adaptive, body.max_n, body.round_size, body.min_round_gain)
        try:
            parsed = _rule(body.rule, schedule, body.input)
        except TtpkitError as e:
            raise HTTPException(422, detail=str(e)) from None
        return spec, schedule, parsed, body.user_id or (None if who.admin else who.user_id)

    def answer(self, body: PersonalizeRequest, who: Caller, state: Any) -> dict[str, Any]:
        """The answer record of one request (run in a worker thread: sampling waits on the event loop's batcher)."""
        t0 = time.perf_counter()
        spec, schedule, parsed, user_id = self._check(body, who)
        timings = {"retrieval": 0.0, "sampling": 0.0, "scoring": 0.0}
        items = self._items(body, spec, user_id)
        timings["retrieval"] += time.perf_counter() - t0
        rm = self.rm_for(spec)
        if parsed.name != "mean" and not rm.model.probabilistic:
            raise HTTPException(422, detail=f"rule {body.rule!r} needs a probabilistic RM (user-prob); {rm.path} is "
                                            f"{rm.model.config.variant}")
        query = _query(items, body.input, spec, user_id)
        policy = BatchedPolicy(state, spec, body.seed, timings)
        scorer = _TimedRM(rm.model, self._score_lock, timings, policy)
        rows, s, values, rounds = _draw(policy, scorer, rm.encoder, query, parsed, body.seed, schedule,
                                        rm.card.score_std if rm.card else None)
        best, request_id = int(np.argmax(values)), "pers-" + uuid.uuid4().hex[:24]
        candidates = [dataclasses.asdict(c) for c in _scored(rows, s, values, rm.model.probabilistic)]
        expected = _expectation(rm.card, np.asarray(s.mean), len(rows))
        if self.log_requests:
            profile = tuple({"id": p.id, spec.source_field: p.source, spec.target_field: p.target} for p in items)
            self.store.log_request(LoggedRequest(request_id, query.user_id, spec.name, body.input, profile,
                                                 tuple(candidates), best, body.seed))
        timings["total"] = time.perf_counter() - t0
        return {"request_id": request_id, "user_id": query.user_id, "task": spec.name, "text": rows[best][TEXT],
                "chosen": best, "n": len(rows), "rounds": rounds, "rule": body.rule, "rm": rm.path, "candidates": candidates,
                "expected": dataclasses.asdict(expected) if expected else None, "warnings": list(_warnings(items, body.input)),
                "logged": self.log_requests, "timings": {k: round(v, 6) for k, v in timings.items()}}


def personalize_router(service: Personalizer) -> APIRouter:
    """``POST /v1/personalize`` and ``POST /v1/feedback``."""
    router = APIRouter(prefix="/v1", tags=["personalize"])

    @router.post("/personalize")
    async def personalize(body: PersonalizeRequest, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
        return await run_in_threadpool(service.answer, body, who, request.app.state)

    @router.post("/feedback")
    def feedback(body: FeedbackRequest, who: Caller = Depends(caller)) -> dict[str, Any]:
        if len(body.text) > service.limits.max_item_chars:
            raise HTTPException(422, detail=f"text: {len(body.text)} characters; the limit is {service.limits.max_item_chars}")
        owner = service.store.request_user(body.request_id)
        if owner is None:
            raise HTTPException(404, detail=f"no logged request {body.request_id!r} (the server logs requests with --log-requests)")
        who.may_act_for(owner)
        service.store.add_feedback(body.request_id, body.text)
        return {"request_id": body.request_id, "recorded": True}

    return router


def create_service(
    policy: Completer, store: ProfileStore | str = "sqlite:///profiles.db", *, rm: str | Path | RewardModel = "default",
    encoder: Any = None, admin_key: str | None = None, log_requests: bool = False, limits: Limits = Limits(),
    model_name: str = "ttpkit", batch_window_ms: float = 5.0, max_batch: int = 16,
) -> FastAPI:
    """The whole service: the OpenAI routes of :func:`~ttpkit.serve.create_app`, the profile store, keys, personalize.

    Args:
        policy: The served local policy (a :class:`~ttpkit.policy.Completer`).
        store: A :class:`ProfileStore` or its database URL.
        rm: The reward model (see :class:`Personalizer`).
        encoder: Sentence encoder for the RM (default: the RM's own, cached on disk).
        admin_key: The admin key (default: the ``TTPKIT_API_KEY`` environment variable; unset or empty: no keys).
        log_requests: Keep each personalize answer for ``/v1/feedback`` and ``ttpkit export-pool``.
        limits: Request limits.
        model_name, batch_window_ms, max_batch: Passed to :func:`~ttpkit.serve.create_app`.
    """
    store = ProfileStore(store) if isinstance(store, str) else store
    profiles = Profiles(store, [encoder] if encoder is not None else [])
    service = Personalizer(profiles, rm, encoder, limits, log_requests)
    app = create_app(policy, model_name, extra_routers=[users_router(profiles, limits), personalize_router(service)],
                     dependencies=[Depends(key_check(store, admin_key))], batch_window_ms=batch_window_ms, max_batch=max_batch)
    app.state.store, app.state.personalizer = store, service
    app.add_exception_handler(OperationalError, on_storage_error)  # the store's disk is full or read-only: 507
    return app

