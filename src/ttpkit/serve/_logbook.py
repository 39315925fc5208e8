"""Logged personalize requests and their feedback: :class:`Logbook`, the part of the profile store that keeps them.

With ``--log-requests`` the service keeps each answer with its scored
candidates; ``POST /v1/feedback`` adds the text the user kept, and ``ttpkit
export-pool`` reads them back as :class:`~ttpkit.feedback.LoggedRequest`. A
request answered from the stored profile keeps only the profile's size (its
items are the user's first ones; items are only appended), one answered from a
profile sent inline keeps that profile once in ``profiles``, by digest. A
DELETE of the user wins over a request in flight: the request is not logged
once the user it was answered for is gone.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.engine import Connection, Engine

from ttpkit.feedback import LoggedRequest
from ttpkit.serve._schema import (
    Stamp,
    api_keys,
    digest_of,
    feedback,
    items,
    profiles,
    read_stamp,
    requests,
)

__all__ = ["Logbook"]


class Logbook:
    """Logged requests and feedback over the store's engines (a part of :class:`~ttpkit.serve.ProfileStore`)."""

    engine: Engine
    _read: Engine
    _write: Engine
    _insert: Callable[..., Any]

    def _lock(self, c: Connection, user_id: str) -> None:  # pragma: no cover - the store's own
        raise NotImplementedError

    def profile(self, user_id: str, offset: int = 0, limit: int | None = None) -> list[dict]:  # pragma: no cover
        raise NotImplementedError

    # -- logged requests and feedback -------------------------------------------------
    def log_request(self, r: LoggedRequest, stamp: Stamp | None = None, keyed: bool = False) -> bool:
        """Keep one personalize request with its scored candidates; False when its user was deleted meanwhile.

        Args:
            r: The request.
            stamp: The version of the stored profile it was answered from (``None``: ``r.profile`` was sent
                inline, and is stored once per distinct profile). Not kept when the user's profile has
                been deleted since (a DELETE wins over a request in flight).
            keyed: Sent with a user's key: not kept when that user no longer has a live key (deleted meanwhile).
        """
        with self._write.begin() as c:
            self._lock(c, r.user_id)
            if stamp is not None:
                now = read_stamp(c, r.user_id)
                if now is None or now.epoch != stamp.epoch:
                    return False
            elif keyed and c.execute(select(api_keys.c.id).where(api_keys.c.user_id == r.user_id,
                                                                 api_keys.c.revoked.is_(None)).limit(1)).first() is None:
                return False
            digest = None
            if stamp is None:
                digest = digest_of(list(r.profile))
                c.execute(self._insert(profiles).values(user_id=r.user_id, digest=digest, items=list(r.profile),
                                                        created=time.time()).on_conflict_do_nothing())
            c.execute(insert(requests).values(
                id=r.id, user_id=r.user_id, task=r.task, input=r.input, profile_size=None if stamp is None else stamp.size,
                profile_digest=digest, candidates=list(r.candidates), chosen=r.chosen, seed=r.seed, created=time.time()))
        return True

    def request_user(self, request_id: str) -> str | None:
        """The user of a logged request (``None`` when it was not logged)."""
        with self.engine.connect() as c:
            return c.execute(select(requests.c.user_id).where(requests.c.id == request_id)).scalar()

    def add_feedback(self, request_id: str, text: str) -> bool:
        """Record (or replace) the final text of a logged request; False when the request is not (or no longer) logged."""
        user_id = self.request_user(request_id)
        if user_id is None:
            return False
        with self._write.begin() as c:
            self._lock(c, user_id)  # a DELETE of the user runs wholly before or after
            if c.execute(select(requests.c.id).where(requests.c.id == request_id)).first() is None:
                return False
            row = self._insert(feedback).values(request_id=request_id, user_id=user_id, text=text, created=time.time())
            c.execute(row.on_conflict_do_update(index_elements=[feedback.c.request_id],
                                                set_={"text": row.excluded.text, "created": row.excluded.created}))
        return True

    def logged(self, with_feedback: bool = True, user_id: str | None = None) -> Iterator[LoggedRequest]:
        """Logged requests in order, each with its feedback text (only those that have one, by default).

        Each comes with the profile it was answered with. ``user_id``: that
        user's only. :func:`ttpkit.feedback.export_feedback` turns them into a
        labelled pool (``ttpkit export-pool``).
        """
        q = (select(requests, feedback.c.text.label("feedback"))
             .join(feedback, feedback.c.request_id == requests.c.id, isouter=not with_feedback)
             .order_by(requests.c.created, requests.c.id))
        if user_id is not None:
            q = q.where(requests.c.user_id == user_id)
        stored: dict[str, list[dict]] = {}
        inline: dict[tuple[str, str], list[dict]] = {}
        with self._read.connect() as c:
            for r in c.execute(q).all():
                if r.profile_digest is None:
                    if r.user_id not in stored:
                        stored[r.user_id] = self._items(c, r.user_id)
                    profile = stored[r.user_id][: r.profile_size]
                else:
                    key = (r.user_id, r.profile_digest)
                    if key not in inline:
                        inline[key] = c.execute(select(profiles.c["items"]).where(profiles.c.user_id == r.user_id,
                                                                               profiles.c.digest == r.profile_digest)).scalar_one()
                    profile = inline[key]
                yield LoggedRequest(r.id, r.user_id, r.task, r.input, tuple(_json(profile)), tuple(_json(r.candidates)),
                                    r.chosen, r.seed, r.feedback)

    @staticmethod
    def _items(c: Connection, user_id: str) -> list[dict]:
        return [dict(f) for f in c.execute(select(items.c.fields).where(items.c.user_id == user_id).order_by(items.c.seq)).scalars()]

    def user_texts(self, user_id: str) -> set[str]:
        """Every text of the user's: their items' fields, logged inputs, candidates and feedback."""
        texts: set[str] = set()
        for item in self.profile(user_id):
            texts |= {str(v) for v in item.values()}
        for r in self.logged(with_feedback=False, user_id=user_id):
            texts |= {r.input, *(str(c["text"]) for c in r.candidates), *([r.feedback] if r.feedback else [])}
            texts |= {str(v) for item in r.profile for v in item.values()}
        return texts


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
