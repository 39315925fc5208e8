"""The profile store: users, their profile items, API keys, logged requests and feedback (SQLAlchemy 2).

SQLite is the embedded default (``sqlite:///profiles.db``), with WAL on so that
reads run beside a writer; a PostgreSQL URL (``postgresql://user@host/db``)
works the same way. The schema is versioned: a ``meta`` table holds
``schema_version``, checked when the store opens, and a store written by a
newer ttpkit is refused with both versions named.

| table           | one row per                                   | keyed by                |
|-----------------|-----------------------------------------------|-------------------------|
| ``meta``        | setting (``schema_version``, ``written_by``)  | ``key``                 |
| ``users``       | user                                          | ``id``                  |
| ``items``       | profile item (JSON of the task's fields)      | ``user_id``, ``seq``    |
| ``api_keys``    | per-user key: its sha256 only                 | ``id`` (the key id)     |
| ``requests``    | logged ``/v1/personalize`` request            | ``id`` (the request id) |
| ``feedback``    | final text for a logged request               | ``request_id``          |
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from sqlalchemy import (
    JSON, Column, Float, ForeignKey, Integer, MetaData, String, Table, Text, create_engine, delete, event, func,
    insert, select, update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from ttpkit import __version__
from ttpkit.errors import TtpkitError
from ttpkit.feedback import LoggedRequest

__all__ = ["SCHEMA_VERSION", "TABLES", "LoggedRequest", "ProfileStore", "StoreError", "hash_key"]

SCHEMA_VERSION = 1
KEY_PREFIX = "ttpk_"  # per-user keys look like ttpk_<43 url-safe characters>

metadata = MetaData()
meta = Table("meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text, nullable=False))
users = Table("users", metadata, Column("id", String(200), primary_key=True), Column("created", Float, nullable=False))
items = Table(
    "items", metadata,
    Column("user_id", String(200), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),  # order of the profile, 0-based
    Column("fields", JSON, nullable=False),
)
api_keys = Table(
    "api_keys", metadata,
    Column("id", String(32), primary_key=True),
    Column("user_id", String(200), nullable=False, index=True),
    Column("hash", String(64), nullable=False, unique=True),  # sha256 hex of the key; the key itself is never stored
    Column("created", Float, nullable=False),
    Column("revoked", Float),
)
requests = Table(
    "requests", metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(200), nullable=False, index=True),
    Column("task", String(100), nullable=False),
    Column("input", Text, nullable=False),
    Column("profile", JSON, nullable=False),  # the items the request was personalized with
    Column("candidates", JSON, nullable=False),  # [{idx, text, score, std}]
    Column("chosen", Integer, nullable=False),
    Column("seed", Integer, nullable=False),
    Column("created", Float, nullable=False),
)
feedback = Table(
    "feedback", metadata,
    Column("request_id", String(64), ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(200), nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("created", Float, nullable=False),
)
TABLES = (users, items, api_keys, requests, feedback)  # the tables that hold a user's data


class StoreError(TtpkitError):
    """The store cannot be opened (bad URL, unreachable server, schema from another ttpkit)."""


def hash_key(key: str) -> str:
    """The stored form of an API key: its sha256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def _engine_url(url: str) -> Any:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreError(f"--db {url!r}: not a database URL (sqlite:///profiles.db or postgresql://user@host/db)") from None
    if parsed.drivername == "postgresql":  # pick the installed driver: psycopg 3, else SQLAlchemy's default psycopg2
        try:
            import psycopg  # noqa: F401

            parsed = parsed.set(drivername="postgresql+psycopg")
        except ImportError:
            pass
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise StoreError(f"--db {url!r}: the store runs on sqlite or postgresql, not {parsed.get_backend_name()}")
    return parsed


def _wal(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers run beside the one writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class ProfileStore:
    """Users' profiles, keys, logged requests and feedback in one SQL database.

    Args:
        url: SQLAlchemy URL: ``sqlite:///profiles.db`` (created if missing) or ``postgresql://...``.

    Raises:
        StoreError: If the URL is bad, the database cannot be reached, or its
            schema was written by a newer ttpkit.
    """

    def __init__(self, url: str = "sqlite:///profiles.db") -> None:
        self.url = url
        parsed = _engine_url(url)
        try:
            self.engine: Engine = create_engine(parsed, pool_pre_ping=True)
        except (ArgumentError, ImportError) as e:
            raise StoreError(f"--db {url!r}: cannot open it ({e})") from None
        if parsed.get_backend_name() == "sqlite":
            event.listen(self.engine, "connect", _wal)
        self._append = threading.Lock()  # one appender at a time per process keeps seq dense
        try:
            self._check_schema()
        except OperationalError as e:
            raise StoreError(f"--db {url!r}: cannot open it ({str(e.orig).strip()})") from None

    @property
    def shown_url(self) -> str:
        """The URL with any password hidden, as manifests record it."""
        return make_url(self.url).render_as_string()

    def _check_schema(self) -> None:
        metadata.create_all(self.engine)  # creates only what is missing
        with self.engine.begin() as c:
            found = c.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
            if found is None:
                c.execute(insert(meta), [{"key": "schema_version", "value": str(SCHEMA_VERSION)},
                                         {"key": "written_by", "value": __version__}])
                return
        version = int(found)
        if version > SCHEMA_VERSION:
            raise StoreError(f"{self.url}: the store has schema version {version}, written by a newer ttpkit; "
                             f"this ttpkit ({__version__}) reads schema version {SCHEMA_VERSION}: upgrade ttpkit")
        if version < SCHEMA_VERSION:  # pragma: no cover - no older schema exists yet
            raise StoreError(f"{self.url}: schema version {version} has no migration to {SCHEMA_VERSION}")

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    # -- profiles ---------------------------------------------------------------------
    def add_items(self, user_id: str, new: Sequence[dict]) -> int:
        """Append ``new`` items to the user's profile (creating the user); returns the profile's size."""
        with self._append, self.engine.begin() as c:
            if c.execute(select(users.c.id).where(users.c.id == user_id)).first() is None:
                c.execute(insert(users).values(id=user_id, created=time.time()))
            start = c.execute(select(func.count()).select_from(items).where(items.c.user_id == user_id)).scalar_one()
            if new:
                c.execute(insert(items), [{"user_id": user_id, "seq": start + i, "fields": dict(f)} for i, f in enumerate(new)])
            return start + len(new)

    def size(self, user_id: str) -> int | None:
        """Items in the user's profile (``None`` for an unknown user)."""
        with self.engine.connect() as c:
            if c.execute(select(users.c.id).where(users.c.id == user_id)).first() is None:
                return None
            return c.execute(select(func.count()).select_from(items).where(items.c.user_id == user_id)).scalar_one()

    def user_ids(self) -> list[str]:
        """Every user in the store."""
        with self.engine.connect() as c:
            return list(c.execute(select(users.c.id).order_by(users.c.id)).scalars())

    def profile(self, user_id: str, offset: int = 0, limit: int | None = None) -> list[dict]:
        """The user's items in profile order, ``limit`` of them from ``offset`` (all by default)."""
        q = select(items.c.fields).where(items.c.user_id == user_id).order_by(items.c.seq).offset(offset)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q.limit(limit) if limit is not None else q).scalars()]

    def forget(self, user_id: str) -> dict[str, int]:
        """Delete everything of the user: items, keys, logged requests, feedback; rows deleted per table."""
        with self.engine.begin() as c:
            counts = {t.name: c.execute(delete(t).where(_user_col(t) == user_id)).rowcount for t in reversed(TABLES)}
        return counts

    def rows_of(self, user_id: str) -> dict[str, int]:
        """Rows that hold the user's data, per table (all zero after :meth:`forget`)."""
        with self.engine.connect() as c:
            return {t.name: c.execute(select(func.count()).select_from(t).where(_user_col(t) == user_id)).scalar_one()
                    for t in TABLES}

    # -- keys -------------------------------------------------------------------------
    def issue_key(self, user_id: str) -> tuple[str, str]:
        """A new key for the user: ``(key_id, key)``; only the key's hash is stored."""
        key_id, key = secrets.token_hex(8), KEY_PREFIX + secrets.token_urlsafe(32)
        with self.engine.begin() as c:
            c.execute(insert(api_keys).values(id=key_id, user_id=user_id, hash=hash_key(key), created=time.time()))
        return key_id, key

    def revoke_key(self, user_id: str, key_id: str) -> bool:
        """Revoke one of the user's keys at once; False when the user has no such live key."""
        with self.engine.begin() as c:
            done = c.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.user_id == user_id,
                                                    api_keys.c.revoked.is_(None)).values(revoked=time.time()))
            return done.rowcount == 1

    def keys(self, user_id: str) -> list[dict]:
        """The user's keys without their secrets: ``{id, created, revoked}``."""
        q = select(api_keys.c.id, api_keys.c.created, api_keys.c.revoked).where(api_keys.c.user_id == user_id)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q.order_by(api_keys.c.created))]

    def key_user(self, key: str) -> str | None:
        """The user a live key belongs to (``None`` for an unknown or revoked key)."""
        digest = hash_key(key)
        with self.engine.connect() as c:
            row = c.execute(select(api_keys.c.user_id, api_keys.c.hash)
                            .where(api_keys.c.hash == digest, api_keys.c.revoked.is_(None))).first()
        return row.user_id if row is not None and hmac.compare_digest(row.hash, digest) else None

    # -- logged requests and feedback -------------------------------------------------
    def log_request(self, r: LoggedRequest) -> None:
        """Keep one personalize request with its scored candidates."""
        with self.engine.begin() as c:
            c.execute(insert(requests).values(
                id=r.id, user_id=r.user_id, task=r.task, input=r.input, profile=list(r.profile),
                candidates=list(r.candidates), chosen=r.chosen, seed=r.seed, created=time.time()))

    def request_user(self, request_id: str) -> str | None:
        """The user of a logged request (``None`` when it was not logged)."""
        with self.engine.connect() as c:
            return c.execute(select(requests.c.user_id).where(requests.c.id == request_id)).scalar()

    def add_feedback(self, request_id: str, text: str) -> bool:
        """Record (or replace) the final text of a logged request; False when the request was not logged."""
        user_id = self.request_user(request_id)
        if user_id is None:
            return False
        with self.engine.begin() as c:
            c.execute(delete(feedback).where(feedback.c.request_id == request_id))
            c.execute(insert(feedback).values(request_id=request_id, user_id=user_id, text=text, created=time.time()))
        return True

    def logged(self, with_feedback: bool = True) -> Iterator[LoggedRequest]:
        """Logged requests in order, each with its feedback text (only those that have one, by default).

        :func:`ttpkit.feedback.export_feedback` turns them into a labelled pool (``ttpkit export-pool``).
        """
        q = (select(requests, feedback.c.text.label("feedback"))
             .join(feedback, feedback.c.request_id == requests.c.id, isouter=not with_feedback)
             .order_by(requests.c.created, requests.c.id))
        with self.engine.connect() as c:
            for r in c.execute(q):
                yield LoggedRequest(r.id, r.user_id, r.task, r.input, tuple(_json(r.profile)), tuple(_json(r.candidates)),
                                    r.chosen, r.seed, r.feedback)


def _user_col(table: Table) -> Any:
    return table.c.id if table is users else table.c.user_id


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value
