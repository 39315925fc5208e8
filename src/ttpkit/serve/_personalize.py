"""``POST /v1/personalize`` and ``POST /v1/feedback``: :class:`Personalizer` and its router.

A personalize request is :func:`ttpkit.online.answer` over the server's loaded
reward model (:class:`~ttpkit.online.OnlineRM`, once per task) with the
request's :class:`~ttpkit.serve._batched.BatchedPolicy` and
:class:`~ttpkit.serve._batched.BatchedRM`, so its answer for a seed is the
library's for the same arguments. With ``log_requests`` each answer and its
scored candidates are kept in the store, and ``POST /v1/feedback`` records the
text the user finally kept.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool

from ttpkit.data import ProfileItem, TaskSpec
from ttpkit.errors import TtpkitError
from ttpkit.feedback import LoggedRequest
from ttpkit.online import OnlineRM, Personalized, Schedule, answer, check_request, make_query
from ttpkit.reward.models import RewardModel
from ttpkit.serve._auth import Caller, caller
from ttpkit.serve._batched import BatchedPolicy, BatchedRM
from ttpkit.serve._requests import FeedbackRequest, PersonalizeRequest
from ttpkit.serve._store import Stamp
from ttpkit.serve._users import Limits, Profiles, check_items, task_spec

__all__ = ["Personalizer", "personalize_router"]


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
        self._loaded: dict[str, OnlineRM] = {}
        self._load_lock, self._score_lock = threading.Lock(), threading.Lock()

    def rm_for(self, spec: TaskSpec) -> OnlineRM:
        """The reward model for ``spec``'s task, loaded on first use (a 422 if it cannot serve the task)."""
        with self._load_lock:
            if spec.name not in self._loaded:
                try:
                    loaded = dataclasses.replace(OnlineRM.load(self.rm, spec, self.encoder), path=rm_name(self.rm))
                except TtpkitError as e:  # a damaged model or card for this task: the request names it, never a 500
                    raise HTTPException(422, detail=str(e).replace(str(self.rm), rm_name(self.rm))) from None
                if loaded.encoder not in self.profiles.encoders:
                    self.profiles.encoders.append(loaded.encoder)
                self._loaded[spec.name] = loaded
            return self._loaded[spec.name]

    def _items(self, body: PersonalizeRequest, spec: TaskSpec, user_id: str | None) -> tuple[tuple[ProfileItem, ...], Stamp | None]:
        """The request's profile, and the version of the stored one it is (``None``: sent inline)."""
        if body.profile is None:
            assert user_id is not None
            found = self.profiles.snapshot(user_id, spec)
            return found.items, found.stamp
        if len(body.profile) > self.limits.max_profile_items:
            raise HTTPException(413, detail=f"the profile has {len(body.profile)} items; the limit is {self.limits.max_profile_items}")
        return check_items(body.profile, spec, self.limits, "profile"), None

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
            parsed = check_request(body.rule, schedule, body.input)
        except TtpkitError as e:
            raise HTTPException(422, detail=str(e)) from None
        return spec, schedule, parsed, body.user_id or (None if who.admin else who.user_id)

    def answer(self, body: PersonalizeRequest, who: Caller, state: Any) -> dict[str, Any]:
        """The answer record of one request (run in a worker thread: sampling waits on the event loop's batcher)."""
        t0 = time.perf_counter()
        spec, schedule, parsed, user_id = self._check(body, who)
        timings = {"retrieval": 0.0, "sampling": 0.0, "scoring": 0.0}
        items, stamp = self._items(body, spec, user_id)
        timings["retrieval"] += time.perf_counter() - t0
        rm = self.rm_for(spec)
        try:
            rm.check_rule(parsed, body.rule)
        except TtpkitError as e:
            raise HTTPException(422, detail=str(e)) from None
        policy = BatchedPolicy(state, spec, body.seed, timings)
        batched = dataclasses.replace(rm, model=BatchedRM(rm.model, self._score_lock, timings, policy))
        out = answer(make_query(items, body.input, spec, user_id), spec, policy, batched, body.rule, schedule, body.seed)
        request_id = "pers-" + uuid.uuid4().hex[:24]
        candidates = [dataclasses.asdict(c) for c in out.candidates]
        logged = self.log_requests and self._log(request_id, out, body, spec, items, candidates, stamp, keyed=not who.admin)
        timings["total"] = time.perf_counter() - t0
        return {"request_id": request_id, "user_id": out.user_id, "task": spec.name, "text": out.text,
                "chosen": out.chosen, "n": out.n, "rounds": out.rounds, "rule": body.rule, "rm": rm.path, "candidates": candidates,
                "greedy": out.greedy, "greedy_text": out.greedy_text, "chosen_is_greedy": out.chosen_is_greedy,
                "expected": dataclasses.asdict(out.expected) if out.expected else None, "warnings": list(out.warnings),
                "logged": logged, "timings": {k: round(v, 6) for k, v in timings.items()}}

    def _log(self, request_id: str, out: Personalized, body: PersonalizeRequest, spec: TaskSpec,
             items: tuple[ProfileItem, ...], candidates: list[dict[str, Any]], stamp: Stamp | None, keyed: bool) -> bool:
        """Keep the answer; False when its user was deleted while it ran (a DELETE wins: nothing of it is kept)."""
        profile = tuple({"id": p.id, spec.source_field: p.source, spec.target_field: p.target} for p in items)
        return self.store.log_request(LoggedRequest(request_id, out.user_id, spec.name, body.input, profile,
                                                    tuple(candidates), out.chosen, body.seed), stamp, keyed)


def rm_name(rm: str | Path | RewardModel) -> str:
    """What answers and errors call the reward model: ``default...`` or its directory's name, never the server's path."""
    if isinstance(rm, (str, Path)):
        return str(rm) if str(rm).startswith("default") else Path(rm).name
    return "(in memory)"


def personalize_router(service: Personalizer) -> APIRouter:
    """``POST /v1/personalize`` and ``POST /v1/feedback``."""
    router = APIRouter(prefix="/v1", tags=["personalize"])

    @router.post("/personalize")
    async def personalize(body: PersonalizeRequest, request: Request, who: Caller = Depends(caller)) -> dict[str, Any]:
        with request.app.state.batcher.expect():  # its decode job follows the profile read and retrieval: batch-mates wait
            return await run_in_threadpool(service.answer, body, who, request.app.state)

    @router.post("/feedback")
    def feedback(body: FeedbackRequest, who: Caller = Depends(caller)) -> dict[str, Any]:
        if len(body.text) > service.limits.max_item_chars:
            raise HTTPException(422, detail=f"text: {len(body.text)} characters; the limit is {service.limits.max_item_chars}")
        owner = service.store.request_user(body.request_id)
        if owner is None:
            raise HTTPException(404, detail=f"no logged request {body.request_id!r} (the server logs requests with --log-requests)")
        who.may_act_for(owner)
        if not service.store.add_feedback(body.request_id, body.text):  # its user was deleted meanwhile
            raise HTTPException(404, detail=f"no logged request {body.request_id!r} (its user was deleted)")
        return {"request_id": body.request_id, "recorded": True}

    return router
