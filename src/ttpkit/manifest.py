"""Run manifests: what made a pool, a reward model or a study directory.

Every artifact ttpkit writes records its manifest: the settings that made it
(for a pool: task, split, M, seed, decoding settings, the policy's name and a
SHA-256 of its model file), the ttpkit version, and a format number. A pool
keeps it in its Parquet metadata, a reward model in ``config.json``, a study in
``manifest.json``.

Two rules follow from it:

* **Resume only what matches.** Continuing a pool with other settings would mix
  candidates of two runs inside one query; :func:`check_resume` refuses and
  names the first key that differs (``ttpkit sample --force-new`` starts over).
  A policy name from before a rename (``embedded``, now ``gemma3-270m``) still
  matches its new name.
* **What a run learns is recorded, not compared.** The ``openai`` backend finds
  out only while sampling whether its server honours ``n``; ``ttpkit sample``
  then stamps :data:`N_PATH` into the manifest (``"n"``, ``"per-seed"``, or
  ``"mixed"`` when a resumption ran the other path). Like the version and the
  time, it may differ between a run and its resumption (:data:`VOLATILE`).
* **Load only what this version understands.** :func:`check_format` refuses an
  artifact whose format is newer than this ttpkit's, naming both versions, and
  calls a format that is no integer malformed (never "newer").
* **Data are identified by content.** A pool records the data directory it was
  sampled from (:data:`DATA_DIR`, informational: the same data moved elsewhere
  still resumes) and :func:`split_digest` of the split's files
  (:data:`DATA_SHA256`, compared on resume). Keys a manifest lacks because an
  older ttpkit did not write them (:data:`ADOPTED`) are not compared; the pool
  adopts them from the run that resumes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ttpkit import __version__, jsonio
from ttpkit.errors import ConfigError, DataError

__all__ = ["ADOPTED", "DATA_DIR", "DATA_SHA256", "FORMATS", "MANIFEST_KEY", "N_PATH", "RENAMED_POLICIES", "check_format", "check_resume",
           "diff", "file_digest", "record_study", "split_digest", "stamp"]

FORMATS = {"pool": 1, "rm": 1, "study": 1}  # bump when a reader of the old layout would misread the new one
MANIFEST_KEY = "ttpkit_manifest"  # where a DataFrame (df.attrs) and a Parquet file keep a pool's manifest
N_PATH = "n_path"  # how an openai-backend pool got its n samples per query: "n", "per-seed" or "mixed"
DATA_DIR = "data_dir"  # the data directory a pool was sampled from, as given (informational)
DATA_SHA256 = "data_sha256"  # split_digest of the split a pool was sampled from (compared on resume)
VOLATILE = ("created", "ttpkit", "format", "kind", N_PATH, DATA_DIR)  # keys that may differ between a run and its resumption
ADOPTED = (DATA_SHA256,)  # keys older pools lack: not compared when absent, adopted from the resuming run
# Policy names a pool's manifest may carry from before a rename, keyed by (old name, backend); the new name
# is ttpkit.policy.EMBEDDED_NAME (not imported: ttpkit.policy imports this module).
RENAMED_POLICIES = {("embedded", "embedded"): "gemma3-270m"}
_KIND_NAMES = {"rm": "reward model"}  # how messages name a kind
_digests: dict[tuple[str, int, int], str] = {}


def stamp(kind: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest of ``kind`` (``pool``, ``rm`` or ``study``): the settings plus version, format and time."""
    return {"kind": kind, "format": FORMATS[kind], "ttpkit": __version__,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **settings}


def file_digest(path: str | Path) -> str:
    """SHA-256 of a model file, or of a model directory's files (names and contents, sorted); cached per process."""
    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
    if not files or not all(f.exists() for f in files):
        raise ConfigError(f"model {p}: not found")
    key = (str(p.resolve()), sum(f.stat().st_size for f in files), max(f.stat().st_mtime_ns for f in files))
    if key not in _digests:
        h = hashlib.sha256()
        for f in files:
            if p.is_dir():
                h.update(str(f.relative_to(p)).encode())
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
        _digests[key] = h.hexdigest()
    return _digests[key]


def split_digest(data_dir: str | Path, split: str) -> str | None:
    """SHA-256 of a split's files (``{split}_questions`` and ``{split}_outputs``, ``.json`` or ``.json.gz``), by content.

    The bytes of each file that exists, in that order, each behind its role;
    ``None`` when the directory holds neither (a split built in memory).
    Cheap: a file's digest is cached per process (:func:`file_digest`).
    """
    d, h, found = Path(data_dir), hashlib.sha256(), False
    for role in ("questions", "outputs"):
        for name in (f"{split}_{role}.json", f"{split}_{role}.json.gz"):
            if (d / name).is_file():
                h.update(f"{role}:{file_digest(d / name)}\n".encode())
                found = True
    return h.hexdigest() if found else None


def _walk(a: Any, b: Any, prefix: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for k in sorted(set(a) | set(b), key=str):
            yield from _walk(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
    elif a != b:
        yield prefix, a, b


def diff(old: Mapping[str, Any], new: Mapping[str, Any], ignore: tuple[str, ...] = VOLATILE) -> list[tuple[str, Any, Any]]:
    """Keys (dotted paths) whose values differ between two manifests, with both values; ``ignore`` is skipped at the top level."""
    keep_old = {k: v for k, v in old.items() if k not in ignore}
    keep_new = {k: v for k, v in new.items() if k not in ignore}
    return list(_walk(keep_old, keep_new, ""))


def check_resume(path: str | Path, old: Mapping[str, Any] | None, new: Mapping[str, Any], start_over: str | None = None) -> None:
    """Refuse to continue ``path`` (made with manifest ``old``) under settings ``new``.

    Args:
        path, old, new: The pool, the manifest it was made with, this run's.
        start_over: How the caller's user starts over (default: ``sample``'s ``--force-new`` or another ``--out``).

    Raises:
        ConfigError: Naming the first differing key and both values; the
            message says how to start over instead.
    """
    if not old:
        return
    changed = [(k, was, now) for k, was, now in diff(_current_names(old), new) if not (k in ADOPTED and k not in old)]
    if changed:
        key, was, now = changed[0]
        more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
        raise ConfigError(f"{path}: was made with {key}={was!r}, this run has {key}={now!r}{more}; "
                          f"resuming would mix two runs ({start_over or 'pass --force-new to start over, or another --out'})")


def _current_names(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    """``manifest`` with a policy name from before a rename (:data:`RENAMED_POLICIES`) replaced by today's."""
    policy = manifest.get("policy")
    if not isinstance(policy, Mapping):
        return manifest
    renamed = RENAMED_POLICIES.get((str(policy.get("name")), str(policy.get("backend"))))
    return {**manifest, "policy": {**policy, "name": renamed}} if renamed else manifest


def check_format(where: str | Path, manifest: Mapping[str, Any] | None, kind: str) -> None:
    """Refuse an artifact whose format this ttpkit cannot read.

    Raises:
        DataError: Naming the artifact's ttpkit version and this one's, or
            saying the format is malformed (not a positive integer: ``"1"``).
    """
    if not manifest:
        return
    fmt = manifest.get("format", 1)
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
        raise DataError(f"{where}: the {_KIND_NAMES.get(kind, kind)} format is malformed ({jsonio.dumps(fmt, default=str)}; "
                        f"it is a positive integer, {FORMATS[kind]} for ttpkit {__version__}); the file was edited or damaged")
    if fmt > FORMATS[kind]:
        raise DataError(f"{where}: written by ttpkit {manifest.get('ttpkit', '?')} in {kind} format {fmt!r}; "
                        f"ttpkit {__version__} reads format {FORMATS[kind]} (upgrade ttpkit)")


def record_study(directory: str | Path, settings: Mapping[str, Any]) -> dict[str, Any]:
    """Write ``<directory>/manifest.json`` for a study run (atomically); a directory a newer ttpkit wrote is refused.

    Raises:
        DataError: If an existing manifest is damaged or of a newer format.
    """
    path = Path(directory) / "manifest.json"
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not the study's manifest file; move it away to rerun the study here")
    if path.exists():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{path}: not valid JSON ({e}); move it away to rerun the study here") from None
        check_format(path, old if isinstance(old, dict) else None, "study")
    manifest = stamp("study", settings)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(jsonio.dumps(manifest, indent=2, default=str) + "\n")
    os.replace(tmp, path)
    return manifest
