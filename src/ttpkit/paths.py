"""Where ttpkit keeps what it caches (converted models, the embedding cache), where it may write, and how it writes.

Everything cached lives under one root, ``$TTPKIT_CACHE_DIR`` or the platform's
user cache directory, so a user can see, move or delete it in one place;
:func:`check_cache_dir` refuses a root that cannot be a directory before any
model loads. :func:`check_writable` checks an output location before long work
starts. A write can still fail later (the disk fills up, the place turns out
read-only): :func:`writing` turns that ``OSError`` into one
:class:`~ttpkit.errors.StorageError` naming the path and what happened, and
:func:`write_atomic` writes a temporary file beside the target and renames it,
so the previous file stays intact and no temporary is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from ttpkit._faults import fault_point
from ttpkit.errors import ConfigError, StorageError

__all__ = ["cache_dir", "check_cache_dir", "check_writable", "describe_os_error", "embeddings_cache_file", "is_disk_error",
           "write_atomic", "writing"]

# errors of the place written to, not of ttpkit: reported in one line naming the path
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG, errno.ENOTDIR,
                         errno.EISDIR, errno.EEXIST})


def cache_dir() -> Path:
    """ttpkit's cache root: ``$TTPKIT_CACHE_DIR`` or the platform's user cache dir."""
    env = os.environ.get("TTPKIT_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("ttpkit"))


def check_cache_dir() -> Path:
    """The cache root, created if absent, before any model loads; a root that cannot be a directory is refused.

    A root that exists but is read-only is accepted (a shared, pre-filled cache
    is read, not written); a write into it then fails in one line naming the file
    (:func:`writing`).

    Raises:
        ConfigError: If the root, or a parent of it, is a file, or it cannot be created.
    """
    root = cache_dir()
    name = f"TTPKIT_CACHE_DIR {root}" if os.environ.get("TTPKIT_CACHE_DIR") else f"ttpkit's cache {root}"
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{name}: is a file, not a directory (ttpkit keeps converted models there); "
                          "point TTPKIT_CACHE_DIR at a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{name}: a parent of it is a file, not a directory; point TTPKIT_CACHE_DIR at a directory") from None
    except OSError as e:
        raise ConfigError(f"{name}: cannot create it ({describe_os_error(e)}); point TTPKIT_CACHE_DIR at a writable "
                          "directory") from None
    return root


def embeddings_cache_file() -> Path:
    """The persistent all-MiniLM-L6-v2 embedding cache (one file; keys carry the dtype and depth)."""
    return cache_dir() / "embeddings" / "all-MiniLM-L6-v2.safetensors"


def check_writable(path: str | Path, what: str = "output", directory: bool = False) -> Path:
    """Make sure ``path`` can be written (creating its parent folders), before any long work starts.

    Args:
        path: A file to write, or with ``directory`` a folder to write into.
        what: What the path is for, for the message (``"pool"``, ``"--plot"``).
        directory: ``path`` is a folder (it may exist); else a file (it must not be a folder).

    Raises:
        ConfigError: If a parent is a file, the place is not writable, or the kind is wrong.
    """
    p = Path(path)
    if directory and p.exists() and not p.is_dir():
        raise ConfigError(f"{what} {p}: exists and is not a directory")
    if not directory and p.is_dir():
        raise ConfigError(f"{what} {p}: is a directory; give a file name")
    folder = p if directory else p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{what} {p}: a parent of it is a file, not a directory") from None
    except OSError as e:
        raise ConfigError(f"{what} {p}: cannot create {folder} ({e.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK) or (p.exists() and not directory and not os.access(p, os.W_OK)):
        raise ConfigError(f"{what} {p}: not writable")
    return p


def describe_os_error(e: OSError) -> str:
    """What went wrong, in lower case (``no space left on device``), from ``strerror`` or the errno in the message."""
    code = e.errno
    if code is None and (found := re.search(r"\[errno (\d+)\]", str(e), re.IGNORECASE)):  # pyarrow's wording
        code = int(found.group(1))
    text = os.strerror(code) if code else (e.strerror or (str(e).strip().splitlines() or [type(e).__name__])[0])
    return text[:1].lower() + text[1:]


def is_disk_error(e: BaseException) -> bool:
    """Whether ``e`` is an ``OSError`` of the place written to (full, read-only, no permission, in the way)."""
    if not isinstance(e, OSError):
        return False
    if e.errno in DISK_ERRNOS:
        return True
    found = re.search(r"\[errno (\d+)\]", str(e), re.IGNORECASE)
    return bool(found) and int(found.group(1)) in DISK_ERRNOS


@contextlib.contextmanager
def writing(path: str | Path, what: str, kept: str = "") -> Iterator[None]:
    """Inside the block, an ``OSError`` becomes a :class:`StorageError`: ``"<what> <path>: cannot write it (<why>); <kept>"``.

    Args:
        path: The file or folder being written, for the message.
        what: What it is (``"pool"``, ``"pool journal"``, ``"report"``).
        kept: What survives, for the message (``"the pool on disk is unchanged"``).
    """
    try:
        yield
    except StorageError:
        raise
    except OSError as e:
        raise StorageError(f"{what} {path}: cannot write it ({describe_os_error(e)})" + (f"; {kept}" if kept else "")) from None


def write_atomic(path: str | Path, write: Callable[[Path], Any], what: str, kept: str = "the file on disk is unchanged",
                 fsync: bool = False, fault: str | None = None, tmp: Path | None = None) -> Path:
    """Write ``path`` through ``write(tmp)`` into a hidden temporary file beside it, then rename it over ``path``.

    Args:
        path: The file to write.
        write: Writes the whole file to the path it is given.
        what: What the file is, for the message of a failed write.
        kept: What survives a failed write, for its message.
        fsync: Make the temporary file durable before the rename.
        fault: A :func:`~ttpkit._faults.fault_point` to pass between writing and renaming (the kill tests).
        tmp: The temporary file (default: ``.<name>.tmp<pid>`` beside ``path``).

    Raises:
        StorageError: If the write fails; ``path`` is then as it was, and the temporary file is gone.
    """
    path = Path(path)
    tmp = tmp or path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with writing(path, what, kept):
            write(tmp)
            if fsync:
                with tmp.open("rb") as f:
                    os.fsync(f.fileno())
            if fault:
                fault_point(fault)
            os.replace(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return path
