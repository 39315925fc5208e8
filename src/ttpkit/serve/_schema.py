"""The profile store's tables, its schema version, and the in-place migration of an older store.

| table           | one row per                                        | keyed by                 |
|-----------------|----------------------------------------------------|--------------------------|
| ``meta``        | setting (``schema_version``, ``written_by``)       | ``key``                  |
| ``users``       | user, with the version of their profile            | ``id``                   |
| ``items``       | profile item (JSON of the task's fields)           | ``user_id``, ``seq``     |
| ``api_keys``    | per-user key: its sha256 only                      | ``id`` (the key id)      |
| ``requests``    | logged ``/v1/personalize`` request                 | ``id`` (the request id)  |
| ``profiles``    | profile sent inline with logged requests, once     | ``user_id``, ``digest``  |
| ``feedback``    | final text for a logged request                    | ``request_id``           |

A user's row carries the profile's version: ``epoch`` (drawn when the row is
created, so a user deleted and written again is a new profile) and
``version`` (bumped by every write), and ``size``, the items held, which
numbers the next item. Items are only ever appended (a DELETE removes them
all), so a logged request answered from the stored profile keeps only
``profile_size``: its profile is the user's first ``profile_size`` items. A
request answered from a profile sent inline references that profile in
``profiles`` by its sha256, stored once however many requests send it.

Schema 1 (ttpkit before the second round of service fixes) kept a copy of the
profile in every logged request, a 32-bit seed, and no version in ``users``;
:func:`open_schema` migrates it in place, in one transaction.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection

from ttpkit import __version__
from ttpkit.errors import TtpkitError

__all__ = ["SCHEMA_VERSION", "TABLES", "Stamp", "StoreError", "digest_of", "open_schema", "read_stamp", "schema_version"]

SCHEMA_VERSION = 2
_PG_SCHEMA_LOCK = 0x7770_6B69  # pg_advisory_xact_lock id: replicas that open one database create or migrate it in turn

metadata = MetaData()
meta = Table("meta", metadata, Column("key", String(64), primary_key=True), Column("value", Text, nullable=False))
users = Table(
    "users", metadata,
    Column("id", String(200), primary_key=True),
    Column("created", Float, nullable=False),
    Column("epoch", String(32), nullable=False),  # drawn at creation: a user deleted and written again is a new profile
    Column("version", BigInteger, nullable=False),  # bumped by every write, in the write's transaction
    Column("size", Integer, nullable=False),  # items held; the next item's seq
)
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
    Column("profile_size", Integer),  # answered from the stored profile: its first profile_size items
    Column("profile_digest", String(64)),  # answered from a profile sent inline: profiles.digest
    Column("candidates", JSON, nullable=False),  # [{idx, text, score, std}]
    Column("chosen", Integer, nullable=False),
    Column("seed", BigInteger, nullable=False),  # the API takes seeds up to 2**63 - 1
    Column("created", Float, nullable=False),
)
profiles = Table(
    "profiles", metadata,
    Column("user_id", String(200), primary_key=True),
    Column("digest", String(64), primary_key=True),  # sha256 of the items' canonical JSON
    Column("items", JSON, nullable=False),
    Column("created", Float, nullable=False),
)
feedback = Table(
    "feedback", metadata,
    Column("request_id", String(64), ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", String(200), nullable=False, index=True),
    Column("text", Text, nullable=False),
    Column("created", Float, nullable=False),
)
TABLES = (users, items, api_keys, requests, profiles, feedback)  # the tables that hold a user's data


class StoreError(TtpkitError):
    """The store cannot be opened (bad URL, unreachable server, schema from another ttpkit, held by another server)."""


@dataclass(frozen=True)
class Stamp:
    """The version of one user's stored profile, as its ``users`` row holds it.

    Attributes:
        epoch: Drawn when the user's row is created: a user deleted and written again has a new one.
        version: Bumped by every write of the user, in the write's transaction.
        size: Items in the profile (items are only appended, so the first ``size`` are this version's).
    """

    epoch: str
    version: int
    size: int


def read_stamp(c: Connection, user_id: str) -> Stamp | None:
    """The user's :class:`Stamp` as ``c`` sees it (``None`` for an unknown user)."""
    row = c.execute(select(users.c.epoch, users.c.version, users.c.size).where(users.c.id == user_id)).first()
    return None if row is None else Stamp(row.epoch, row.version, row.size)


def digest_of(profile: Any) -> str:
    """The sha256 of a profile's canonical JSON: the key of its one stored copy."""
    return hashlib.sha256(json.dumps(profile, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def schema_version(c: Connection) -> int | None:
    """The store's schema version (``None`` for an empty database)."""
    if not inspect(c).has_table("meta"):
        return None
    found = c.execute(select(meta.c.value).where(meta.c.key == "schema_version")).scalar()
    return None if found is None else int(found)


def open_schema(c: Connection, url: str) -> None:
    """Create the tables of an empty store, migrate an older one in place, refuse one from a newer ttpkit.

    Runs in ``c``'s transaction; on PostgreSQL under an advisory lock, so that
    replicas starting together create or migrate the database once.
    """
    if c.dialect.name == "postgresql":
        c.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SCHEMA_LOCK})
    found = schema_version(c)
    version = SCHEMA_VERSION if found is None else found
    if version > SCHEMA_VERSION:
        raise StoreError(f"{url}: the store has schema version {version}, written by a newer ttpkit; "
                         f"this ttpkit ({__version__}) reads schema version {SCHEMA_VERSION}: upgrade ttpkit")
    if version == 1:
        _migrate_1_to_2(c, url)
    metadata.create_all(c)  # creates only what is missing
    if found is None:
        c.execute(meta.insert(), [{"key": "schema_version", "value": str(SCHEMA_VERSION)},
                                  {"key": "written_by", "value": __version__}])
    elif version < SCHEMA_VERSION:
        c.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
        c.execute(meta.update().where(meta.c.key == "written_by").values(value=__version__))


def _migrate_1_to_2(c: Connection, url: str) -> None:
    """Schema 1 -> 2: users get their profile's version; each logged profile is stored once; 64-bit seeds."""
    if c.dialect.name == "sqlite" and sqlite3.sqlite_version_info < (3, 35):
        raise StoreError(f"{url}: migrating this schema-1 store needs SQLite 3.35 or newer; "
                         f"this Python has SQLite {sqlite3.sqlite_version}")
    for column in ("epoch VARCHAR(32) NOT NULL DEFAULT 'schema-1'", "version BIGINT NOT NULL DEFAULT 1",
                   "size INTEGER NOT NULL DEFAULT 0"):
        c.execute(text(f"ALTER TABLE users ADD COLUMN {column}"))
    c.execute(text("UPDATE users SET size = (SELECT count(*) FROM items WHERE items.user_id = users.id)"))
    c.execute(text("ALTER TABLE requests ADD COLUMN profile_size INTEGER"))
    c.execute(text("ALTER TABLE requests ADD COLUMN profile_digest VARCHAR(64)"))
    profiles.create(c)
    old = c.execute(text("SELECT id, user_id, profile FROM requests")).all()
    stored: set[tuple[str, str]] = set()
    for rid, user_id, raw in old:  # each distinct logged profile once, in profiles
        value = json.loads(raw) if isinstance(raw, str) else raw
        digest = digest_of(value)
        if (user_id, digest) not in stored:
            c.execute(profiles.insert().values(user_id=user_id, digest=digest, items=value, created=time.time()))
            stored.add((user_id, digest))
        c.execute(requests.update().where(requests.c.id == rid).values(profile_digest=digest))
    c.execute(text("ALTER TABLE requests DROP COLUMN profile"))
    if c.dialect.name == "postgresql":  # SQLite's INTEGER already holds 64 bits
        c.execute(text("ALTER TABLE requests ALTER COLUMN seed TYPE BIGINT"))
