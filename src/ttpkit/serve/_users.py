"""Profile routes: append items, read a profile page, forget a user, issue and revoke a user's keys.

| route                                        | who                 | does                                    |
|----------------------------------------------|---------------------|-----------------------------------------|
| ``POST /v1/users/{user_id}/items``           | admin, the user     | append items, checked against the task  |
| ``GET /v1/users/{user_id}?offset=&limit=``   | admin, the user     | one page of the profile                 |
| ``DELETE /v1/users/{user_id}``               | admin, the user     | forget everything of the user           |
| ``POST /v1/users/{user_id}/keys``            | admin               | a new key, shown once                   |
| ``GET /v1/users/{user_id}/keys``             | admin, the user     | the keys' ids and dates, no secrets     |
| ``DELETE /v1/users/{user_id}/keys/{key_id}`` | admin, the user     | revoke one key at once                  |

:class:`Profiles` reads profiles from the store for ``/v1/personalize`` and
keeps each user's items (and so their BM25 index) while they are the stored
version: every use checks the version in the store, so writes and DELETEs made
through any process on the store are seen by the next request.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import Field

from ttpkit import retrieval
from ttpkit.data import ProfileItem, TaskSpec, get_task, make_profile
from ttpkit.errors import DataError
from ttpkit.serve._auth import Caller, caller
from ttpkit.serve._store import ProfileFull, ProfileStore, Stamp
from ttpkit.serve._text import MAX_INT, TextRequest

__all__ = ["Limits", "Profiles", "ItemsRequest", "Snapshot", "users_router"]

USER_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}$"
KEY_ID = r"^[A-Za-z0-9_-]{1,32}$"  # the store's key ids (16 hex digits today) fit its 32-character column


@dataclass(frozen=True)
class Limits:
    """What one request may ask of the service (beyond them: a 413 or a 422 with the reason).

    Attributes:
        max_profile_items: Items one user's profile may hold (413 past it).
        max_items_per_write: Items one ``POST .../items`` may append.
        max_item_chars: Characters of one field of an item, or of an input.
        max_n: Candidates one personalize request may draw.
        max_page: Items one ``GET /v1/users/{id}`` page may return.
    """

    max_profile_items: int = 10_000
    max_items_per_write: int = 1_000
    max_item_chars: int = 20_000
    max_n: int = 64
    max_page: int = 1_000


class ItemsRequest(TextRequest):
    """Items to append: dicts with the task's source and target fields (and optionally ``id``)."""

    task: str = Field("git-commits", description="The task whose fields the items carry (git-commits: text, title).")
    items: list[dict[str, Any]] = Field(..., min_length=1, description="The items, appended in order.")


def check_items(raw: list[dict[str, Any]], spec: TaskSpec, limits: Limits, where: str) -> tuple[ProfileItem, ...]:
    """The items as :class:`ProfileItem`, or a 422 naming the item and the field."""
    try:
        parsed = make_profile(raw, spec, where)  # "<where>: profile item #j has no field 'title'"
    except DataError as e:
        raise HTTPException(422, detail=str(e)) from None
    for j, p in enumerate(parsed):
        longest = max(len(p.source), len(p.target))
        if longest > limits.max_item_chars:
            raise HTTPException(422, detail=f"{where}: profile item #{j} has a field of {longest} characters; "
                                            f"the limit is {limits.max_item_chars}")
    return parsed


def task_spec(name: str) -> TaskSpec:
    """The task called ``name``, or a 422 listing the known tasks."""
    try:
        return get_task(name)
    except DataError as e:
        raise HTTPException(422, detail=str(e)) from None


@dataclass(frozen=True)
class Snapshot:
    """One version of a user's stored profile, as a personalize request reads it.

    Attributes:
        stamp: The version (epoch, version, size) the items are.
        items: The profile's items for one task.
    """

    stamp: Stamp
    items: tuple[ProfileItem, ...]


class Profiles:
    """Users' profiles from the store, each cached as :class:`ProfileItem` and used while it is the stored version.

    Every use reads the user's :class:`~ttpkit.serve._store.Stamp` from the
    store (one primary-key lookup), so a write or DELETE made by any process on
    the store is seen by the next request; a newer version of a cached profile
    reads only the items appended since.

    Args:
        store: The profile store.
        encoders: The service's sentence encoders (a list the RMs add to as they
            load); forgetting a user drops, by :meth:`~ttpkit.reward.Encoder.forget`,
            the embeddings of their texts that no other user's profile holds.
        cached: Profiles kept in memory (least recently used first out).
    """

    def __init__(self, store: ProfileStore, encoders: list | None = None, cached: int = 256) -> None:
        self.store = store
        self.encoders = encoders if encoders is not None else []
        self.cached = cached
        self._cache: OrderedDict[tuple[str, str], Snapshot] = OrderedDict()
        self._lock = threading.Lock()

    def snapshot(self, user_id: str, spec: TaskSpec) -> Snapshot:
        """The user's stored profile for ``spec`` as of now: a 404 for an unknown user, a 422 for items without the task's fields."""
        key = (user_id, spec.name)
        with self._lock:
            hit = self._cache.get(key)
        read = self.store.read_profile(user_id, hit.stamp if hit is not None else None)
        if read is None:
            raise HTTPException(404, detail=f"no user {user_id!r} in the store; POST /v1/users/{user_id}/items first")
        stamp, start, raw = read
        if hit is not None and hit.stamp == stamp:
            return hit
        raw = [r if "id" in r else {"id": start + j, **r} for j, r in enumerate(raw)]  # an item's default id: its position
        try:
            new = make_profile(raw, spec, f"user {user_id}")
        except DataError as e:
            raise HTTPException(422, detail=f"{e} (the stored items do not carry task {spec.name}'s fields)") from None
        found = Snapshot(stamp, (hit.items[:start] if hit is not None else ()) + new)
        with self._lock:
            held = self._cache.get(key)
            if held is None or held.stamp.epoch != stamp.epoch or held.stamp.version < stamp.version:
                self._cache[key] = found  # never replaces a newer version another request cached meanwhile
            self._cache.move_to_end(key)
            while len(self._cache) > self.cached:
                self._cache.popitem(last=False)
        return found

    def items(self, user_id: str, spec: TaskSpec) -> tuple[ProfileItem, ...]:
        """The items of :meth:`snapshot`."""
        return self.snapshot(user_id, spec).items

    def append(self, user_id: str, new: tuple[ProfileItem, ...], spec: TaskSpec, limit: int) -> int:
        """Append items (a 413 past ``limit``, checked in the write's transaction); returns the new size."""
        rows = [{"id": p.id, spec.source_field: p.source, spec.target_field: p.target} for p in new]
        try:
            total = self.store.add_items(user_id, rows, limit)
        except ProfileFull as e:
            raise HTTPException(413, detail=str(e)) from None
        self.invalidate(user_id)
        return total

    def invalidate(self, user_id: str) -> None:
        """Drop the user's cached profiles (every task)."""
        with self._lock:
            for key in [k for k in self._cache if k[0] == user_id]:
                del self._cache[key]

    def forget(self, user_id: str) -> dict[str, int]:
        """Delete the user's rows, cached profiles, retrieval indexes and the embeddings only they use."""
        theirs = self.store.user_texts(user_id)
        deleted = self.store.forget(user_id)
        self.invalidate(user_id)
        retrieval.drop_indexes()
        self._drop_embeddings(theirs)
        return deleted

    def _drop_embeddings(self, texts: set[str]) -> None:
        if not self.encoders or not texts:
            return
        others = {str(v) for uid in self.store.user_ids() for item in self.store.profile(uid) for v in item.values()}
        for enc in self.encoders:
            enc.forget(texts - others)


def users_router(profiles: Profiles, limits: Limits) -> APIRouter:
    """The profile and key routes over ``profiles``."""
    router = APIRouter(prefix="/v1/users", tags=["users"])
    uid = Path(..., pattern=USER_ID, description="The user's id (letters, digits, . _ : @ -; at most 200).")
    store = profiles.store

    @router.post("/{user_id}/items")
    def add_items(body: ItemsRequest, user_id: str = uid, who: Caller = Depends(caller)) -> dict[str, Any]:
        who.may_act_for(user_id)
        if len(body.items) > limits.max_items_per_write:
            raise HTTPException(413, detail=f"{len(body.items)} items in one write; the limit is {limits.max_items_per_write}")
        spec = task_spec(body.task)
        new = check_items(body.items, spec, limits, "request body")
        return {"user_id": user_id, "added": len(new), "size": profiles.append(user_id, new, spec, limits.max_profile_items)}

    @router.get("/{user_id}")
    def read_profile(user_id: str = uid, offset: int = Query(0, ge=0, le=MAX_INT), limit: int = Query(100, ge=1, le=MAX_INT),
                     who: Caller = Depends(caller)) -> dict[str, Any]:
        who.may_act_for(user_id)
        if limit > limits.max_page:
            raise HTTPException(422, detail=f"limit {limit} is over the page limit {limits.max_page}")
        size = store.size(user_id)
        if size is None:
            raise HTTPException(404, detail=f"no user {user_id!r} in the store")
        return {"user_id": user_id, "size": size, "offset": offset, "limit": limit,
                "items": store.profile(user_id, offset, limit)}

    @router.delete("/{user_id}")
    def forget(user_id: str = uid, who: Caller = Depends(caller)) -> dict[str, Any]:
        who.may_act_for(user_id)
        if not any(store.rows_of(user_id).values()):
            raise HTTPException(404, detail=f"nothing of user {user_id!r} is in the store")
        return {"user_id": user_id, "deleted": profiles.forget(user_id)}

    _key_routes(router, store, uid)
    return router


def _key_routes(router: APIRouter, store: Any, uid: Any) -> None:
    """Add the key routes (issue: admin only; list and revoke: the user or the admin) to ``router``."""

    @router.post("/{user_id}/keys", status_code=201)
    def issue_key(user_id: str = uid, who: Caller = Depends(caller)) -> dict[str, str]:
        who.must_be_admin("issuing a key")
        key_id, key = store.issue_key(user_id)
        return {"user_id": user_id, "key_id": key_id, "key": key}

    @router.get("/{user_id}/keys")
    def list_keys(user_id: str = uid, who: Caller = Depends(caller)) -> dict[str, Any]:
        who.may_act_for(user_id)
        return {"user_id": user_id, "keys": store.keys(user_id)}

    @router.delete("/{user_id}/keys/{key_id}")
    def revoke_key(key_id: str = Path(..., pattern=KEY_ID), user_id: str = uid, who: Caller = Depends(caller)) -> dict[str, Any]:
        who.may_act_for(user_id)
        if not store.revoke_key(user_id, key_id):
            raise HTTPException(404, detail=f"user {user_id!r} has no live key {key_id!r}")
        return {"user_id": user_id, "key_id": key_id, "revoked": True}
