"""The profile store: users, their profile items, API keys, logged requests and feedback (SQLAlchemy 2).

SQLite is the embedded default (``sqlite:///profiles.db``), with WAL on so that
reads run beside a writer; a PostgreSQL URL (``postgresql://user@host/db``)
works the same way, and several server processes (replicas) may share it. The
tables and the schema's version are in :mod:`ttpkit.serve._schema`: a store
written by a newer ttpkit is refused with both versions named, an older one is
migrated in place when it opens.

Every write runs in one transaction that holds its user's lock: on SQLite the
database's write lock (``BEGIN IMMEDIATE``), on PostgreSQL a transaction-level
advisory lock on the user id. A user's item numbering and profile version live
in the ``users`` row, so processes that share the store never collide, and
a DELETE and a write of one user run one after the other, never interleaved.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import create_engine, delete, event, func, insert, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from ttpkit.errors import TtpkitError
from ttpkit.feedback import LoggedRequest
from ttpkit.serve._claim import claim_file
from ttpkit.serve._logbook import Logbook
from ttpkit.serve._schema import (  # noqa: F401 - the tables, importable here as before
    SCHEMA_VERSION,
    TABLES,
    Stamp,
    StoreError,
    api_keys,
    feedback,
    items,
    meta,
    metadata,
    open_schema,
    profiles,
    read_stamp,
    requests,
    schema_version,
    users,
)

__all__ = ["SCHEMA_VERSION", "TABLES", "LoggedRequest", "ProfileFull", "ProfileStore", "Stamp", "StoreError", "hash_key"]

KEY_PREFIX = "ttpk_"  # per-user keys look like ttpk_<43 url-safe characters>


class ProfileFull(TtpkitError):
    """A write would take a profile past its item limit (nothing of it is kept)."""

    def __init__(self, user_id: str, size: int, limit: int) -> None:
        super().__init__(f"user {user_id!r} would hold {size} profile items; the limit is {limit}")
        self.size, self.limit = size, limit


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


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # the store emits BEGIN itself (the driver would defer it past reads)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")  # readers run beside the one writer
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def _sqlite_begin(conn: Connection) -> None:
    # a write takes the database's write lock at BEGIN, so that what it reads stays true until it commits
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("ttpkit_write") else "BEGIN")


class ProfileStore(Logbook):
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
        self.dialect = parsed.get_backend_name()
        self._file = parsed.database if self.dialect == "sqlite" and parsed.database not in (None, "", ":memory:") else None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
            self._read = self.engine
        else:  # a read of several statements sees one snapshot
            self._read = self.engine.execution_options(isolation_level="REPEATABLE READ")
        self._write = self.engine.execution_options(ttpkit_write=True)
        self._insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        self._claimed: Any = None
        try:
            with self.engine.connect() as c:
                current = schema_version(c) == SCHEMA_VERSION
            if not current:  # create, migrate or refuse: in a write transaction (a current store opens read-only too)
                with self._write.begin() as c:
                    open_schema(c, url)
        except OperationalError as e:
            raise StoreError(f"--db {url!r}: cannot open it ({str(e.orig).strip()})") from None

    @property
    def shown_url(self) -> str:
        """The URL with any password hidden, as manifests record it."""
        return make_url(self.url).render_as_string()

    def claim(self) -> None:
        """Hold a SQLite file for this process until :meth:`close` (``ttpkit serve``); nothing for PostgreSQL.

        Raises:
            StoreError: Naming the file, when another process holds it.
        """
        if self._file is not None and self._claimed is None:
            self._claimed = claim_file(self._file)

    def ping(self) -> None:
        """Ask the database a trivial query (raises what the driver raises when it cannot answer)."""
        with self.engine.connect() as c:
            c.execute(select(1)).scalar_one()

    def close(self) -> None:
        """Release the connection pool (and the file this process claimed)."""
        self.engine.dispose()
        if self._claimed is not None:
            self._claimed.close()
            self._claimed = None

    def _lock(self, c: Connection, user_id: str) -> None:
        """Hold ``user_id``'s lock until ``c``'s transaction ends (SQLite: BEGIN IMMEDIATE holds the whole file)."""
        if self.dialect == "postgresql":
            c.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:u, 0))"), {"u": user_id})

    # -- profiles ---------------------------------------------------------------------
    def add_items(self, user_id: str, new: Sequence[dict], limit: int | None = None) -> int:
        """Append ``new`` items to the user's profile (creating the user); returns the profile's size.

        Raises:
            ProfileFull: When the profile would hold more than ``limit`` items (nothing is appended).
        """
        n = len(new)
        with self._write.begin() as c:
            self._lock(c, user_id)
            row = self._insert(users).values(id=user_id, created=time.time(), epoch=secrets.token_hex(8), version=1, size=n)
            c.execute(row.on_conflict_do_update(index_elements=[users.c.id],
                                                set_={"version": users.c.version + 1, "size": users.c.size + n}))
            size = c.execute(select(users.c.size).where(users.c.id == user_id)).scalar_one()
            if limit is not None and size > limit:
                raise ProfileFull(user_id, size, limit)
            if new:
                c.execute(insert(items), [{"user_id": user_id, "seq": size - n + i, "fields": dict(f)} for i, f in enumerate(new)])
            return size

    def stamp(self, user_id: str) -> Stamp | None:
        """The version of the user's profile (``None`` for an unknown user)."""
        with self.engine.connect() as c:
            return read_stamp(c, user_id)

    def read_profile(self, user_id: str, since: Stamp | None = None) -> tuple[Stamp, int, list[dict]] | None:
        """The user's profile as of now, in one snapshot: ``(stamp, start, items)`` (``None`` for an unknown user).

        ``items`` are the profile's from position ``start``: 0, or ``since.size``
        when ``since`` is an earlier version of the same profile (the caller holds those).
        """
        with self._read.connect() as c:
            now = read_stamp(c, user_id)
            if now is None:
                return None
            start = since.size if since is not None and since.epoch == now.epoch and since.size <= now.size else 0
            q = (select(items.c.fields).where(items.c.user_id == user_id, items.c.seq >= start, items.c.seq < now.size)
                 .order_by(items.c.seq))
            return now, start, [dict(r) for r in c.execute(q).scalars()]

    def size(self, user_id: str) -> int | None:
        """Items in the user's profile (``None`` for an unknown user)."""
        found = self.stamp(user_id)
        return None if found is None else found.size

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
        with self._write.begin() as c:
            self._lock(c, user_id)
            return {t.name: c.execute(delete(t).where(_user_col(t) == user_id)).rowcount for t in reversed(TABLES)}

    def rows_of(self, user_id: str) -> dict[str, int]:
        """Rows that hold the user's data, per table (all zero after :meth:`forget`)."""
        with self._read.connect() as c:
            return {t.name: c.execute(select(func.count()).select_from(t).where(_user_col(t) == user_id)).scalar_one()
                    for t in TABLES}

    # -- keys -------------------------------------------------------------------------
    def issue_key(self, user_id: str) -> tuple[str, str]:
        """A new key for the user: ``(key_id, key)``; only the key's hash is stored."""
        key_id, key = secrets.token_hex(8), KEY_PREFIX + secrets.token_urlsafe(32)
        with self._write.begin() as c:
            self._lock(c, user_id)
            c.execute(insert(api_keys).values(id=key_id, user_id=user_id, hash=hash_key(key), created=time.time()))
        return key_id, key

    def revoke_key(self, user_id: str, key_id: str) -> bool:
        """Revoke one of the user's keys at once; False when the user has no such live key."""
        with self._write.begin() as c:
            done = c.execute(update(api_keys).where(api_keys.c.id == key_id, api_keys.c.user_id == user_id,
                                                    api_keys.c.revoked.is_(None)).values(revoked=time.time()))
            return done.rowcount == 1

    def keys(self, user_id: str) -> list[dict]:
        """The user's keys without their secrets: ``{id, created, revoked}``."""
        q = select(api_keys.c.id, api_keys.c.created, api_keys.c.revoked).where(api_keys.c.user_id == user_id)
        with self.engine.connect() as c:
            return [dict(r._mapping) for r in c.execute(q.order_by(api_keys.c.created))]

    def key_user(self, key: str) -> str | None:
        """The user a live key belongs to (``None`` for an unknown or revoked key); read from the store every time."""
        digest = hash_key(key)
        with self.engine.connect() as c:
            row = c.execute(select(api_keys.c.user_id, api_keys.c.hash)
                            .where(api_keys.c.hash == digest, api_keys.c.revoked.is_(None))).first()
        return row.user_id if row is not None and hmac.compare_digest(row.hash, digest) else None


def _user_col(table: Any) -> Any:
    return table.c.id if table is users else table.c.user_id
