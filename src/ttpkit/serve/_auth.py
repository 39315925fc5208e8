"""API keys: nobody reads another user's history.

``TTPKIT_API_KEY`` (or ``admin_key``) is the admin key. When it is set, every
route except ``GET /health`` needs ``Authorization: Bearer <key>``: the admin
key, or a per-user key that the admin issued (``POST /v1/users/{id}/keys``;
the store keeps only its sha256). A user key may read, write, personalize and
delete only its own ``user_id``: any other is a 403; a missing, unknown or
revoked key is a 401. Keys are compared in constant time, and a revoked key
fails on the next request (the store is read on every request, nothing is cached).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request
from sqlalchemy import func, select

from ttpkit.errors import ConfigError
from ttpkit.serve._store import ProfileStore, api_keys
from ttpkit.text import check_text

__all__ = ["ADMIN_ENV", "Caller", "caller", "check_open", "key_check", "live_keys", "read_admin_key"]

ADMIN_ENV = "TTPKIT_API_KEY"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True)
class Caller:
    """Who sent a request: the admin (also every caller of a server without an admin key) or one user."""

    admin: bool
    user_id: str | None = None

    def may_act_for(self, user_id: str) -> None:
        """Raise a 403 unless this caller may act for ``user_id``."""
        if not self.admin and user_id != self.user_id:
            raise HTTPException(403, detail=f"this key belongs to user {self.user_id!r}; it may not act for {user_id!r}")

    def must_be_admin(self, what: str) -> None:
        """Raise a 403 unless this caller holds the admin key."""
        if not self.admin:
            raise HTTPException(403, detail=f"{what} needs the admin key ({ADMIN_ENV})")


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization")
    if not header:
        raise HTTPException(401, detail="missing API key: send 'Authorization: Bearer <key>'", headers=_CHALLENGE)
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise HTTPException(401, detail="malformed Authorization header: expected 'Bearer <key>'", headers=_CHALLENGE)
    return key.strip()


def read_admin_key(admin_key: str | None = None) -> str | None:
    """``admin_key``, or :data:`ADMIN_ENV` when it is None.

    Raises:
        ConfigError: For a key that is not valid UTF-8 (it would be a 500 on every request).
    """
    admin = os.environ.get(ADMIN_ENV) if admin_key is None else admin_key
    return check_text(admin, f"the admin key ({ADMIN_ENV})", ConfigError) if admin else admin


def live_keys(store: ProfileStore) -> int:
    """How many issued, unrevoked per-user keys the store holds."""
    with store.engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(api_keys).where(api_keys.c.revoked.is_(None))).scalar_one())


def check_open(store: ProfileStore, admin_key: str | None, allow_open: bool = False) -> str | None:
    """With no admin key: the warning to log once (every route is open), or a :class:`ConfigError` when the store holds keys.

    Returns:
        The warning's text, or None with an admin key.

    Raises:
        ConfigError: Over a store with live per-user keys, unless ``allow_open``.
    """
    if read_admin_key(admin_key):
        return None
    held = live_keys(store)
    if held and not allow_open:
        raise ConfigError(f"{ADMIN_ENV} is not set, but the store {store.shown_url} holds issued API keys ({held}): served "
                          f"open, every route would answer anyone and those keys would be ignored. Set {ADMIN_ENV}, "
                          "or pass --open (allow_open=True) to serve it open anyway")
    ignored = f"; the store's issued keys ({held}) are ignored (--open)" if held else ""
    return f"{ADMIN_ENV} is not set: every route of this server is open to anyone who can connect{ignored}"


def key_check(store: ProfileStore, admin_key: str | None = None) -> Callable[[Request], None]:
    """The dependency that sets ``request.state.caller`` (``admin_key`` None: read :data:`ADMIN_ENV`; empty: no keys)."""
    admin = read_admin_key(admin_key)

    def check(request: Request) -> None:
        if not admin:
            request.state.caller = Caller(admin=True)
            return
        key = _bearer(request)
        if hmac.compare_digest(key.encode(), admin.encode()):
            request.state.caller = Caller(admin=True)
            return
        user_id = store.key_user(key)
        if user_id is None:
            raise HTTPException(401, detail="unknown or revoked API key", headers=_CHALLENGE)
        request.state.caller = Caller(admin=False, user_id=user_id)

    return check


def caller(request: Request) -> Caller:
    """The request's caller, as :func:`key_check` found it (a route's ``Depends``; fails closed without the check)."""
    found = getattr(request.state, "caller", None)
    if found is None:
        raise HTTPException(401, detail="no key check ran for this route", headers=_CHALLENGE)
    return found
