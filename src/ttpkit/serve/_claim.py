"""One ``ttpkit serve`` process per SQLite file: an OS lock on ``<file>.lock``, held for the process's lifetime.

SQLite serializes writes, but a server process also numbers and caches in
memory what it reads; two on one file are refused rather than trusted. The
lock is the kernel's (``flock``), so it goes with the process, however the
process ends. PostgreSQL stores need none: replicas share them (see
:mod:`ttpkit.serve._store`).
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from ttpkit.serve._schema import StoreError

__all__ = ["claim_file"]


def claim_file(database: str) -> IO[bytes] | None:
    """Hold ``database``'s lock file; the open file keeps the lock until it is closed (``None`` where the OS has no flock).

    Raises:
        StoreError: One line naming the file, when another process holds it.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no flock; one process per file stays the operator's rule
        return None
    path = Path(database).resolve()
    lock = path.with_name(path.name + ".lock")
    try:
        held = open(lock, "ab")  # noqa: SIM115 - held open for the process's lifetime
    except OSError as e:
        raise StoreError(f"{lock}: cannot create the server's lock file next to the store ({e.strerror})") from None
    try:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        held.close()
        raise StoreError(f"{path}: another ttpkit serve process holds this SQLite store; one server per SQLite file "
                         "(several replicas need PostgreSQL)") from None
    return held
