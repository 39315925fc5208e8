"""One atomic save and one checked load for every reward-model kind.

A save writes each file beside its target and renames it over it; the
directory's *record* (``config.json``, or ``ensemble.json`` for an ensemble)
goes last, carries the manifest (:func:`ttpkit.manifest.stamp`) and names the
SHA-256 of the weights. The old record is removed first, so a save killed
half-way leaves weights without a record, or a record naming other weights:
either is refused at load with one line, never read as a model. The kill tests
stop a save at :func:`~ttpkit._faults.fault_point` ``rm-save``, between the
weights and the record.

| kind            | record          | weights                                       |
|-----------------|-----------------|-----------------------------------------------|
| feature RM      | ``config.json`` | ``model.safetensors`` (``weights_sha256``)    |
| cross-encoder   | ``config.json`` | ``model.safetensors`` (``weights_sha256``)    |
| ensemble        | ``ensemble.json``| ``member-<i>/`` (``member_weights_sha256``)  |

Directories written before the record named a hash (the bundled models, older
ensembles and cross-encoders) still load, without the check; a hash that is
there but no SHA-256 (``null``, a number) is malformed, never "interrupted".
A file of the directory that is a directory (``training.json/``) is one line
(:func:`check_is_file`), as are feature statistics that would make every score
equal (:func:`check_feature_stats`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ttpkit import jsonio
from ttpkit._faults import fault_point
from ttpkit.errors import DataError
from ttpkit.manifest import check_format, file_digest
from ttpkit.paths import write_atomic, writing

__all__ = ["CONFIG", "ENSEMBLE", "WEIGHTS", "check_feature_stats", "check_is_file", "check_sha256", "check_weights",
           "load_tensors", "read_history", "read_json", "read_record", "save_atomic", "write_file", "write_record"]

WEIGHTS = "model.safetensors"
CONFIG = "config.json"  # the record of a feature RM and of a cross-encoder
ENSEMBLE = "ensemble.json"  # the record of an ensemble

Writer = Callable[[Path], None]
_SHA256 = re.compile(r"[0-9a-f]{64}")


_KEPT = "the directory holds no complete model (a save removes the old record first); make room and save again"


def write_file(directory: Path, name: str, write: Writer) -> Path:
    """Write ``directory/name`` through ``write`` into a temporary file beside it, then rename it over it.

    Raises:
        StorageError: If it cannot be written (a full disk); no temporary file is left.
    """
    return write_atomic(directory / name, write, "reward model file", _KEPT)


def write_record(directory: Path, record: str, meta: Mapping[str, Any]) -> Path:
    """Write the record (JSON, atomically): the last file of a save, which makes it a model."""
    return write_file(directory, record, lambda p: p.write_text(jsonio.dumps(meta, indent=2) + "\n"))


def save_atomic(directory: Path, files: Sequence[tuple[str, Writer]], meta: dict[str, Any], record: str = CONFIG) -> Path:
    """Write ``files`` in order, then ``record`` (``meta`` plus the ``weights_sha256`` of :data:`WEIGHTS`).

    Args:
        directory: An existing, writable directory.
        files: ``(name, write)`` pairs; ``write(path)`` writes the file's bytes to ``path``.
        meta: The record's content (a manifest); ``weights_sha256`` is added to it.
        record: The record's file name.

    Returns:
        ``directory``.
    """
    (directory / record).unlink(missing_ok=True)  # an old record must never vouch for new weights
    for name, write in files:
        if name != WEIGHTS:
            write_file(directory, name, write)
            continue
        tmp = directory / f".{name}.tmp{os.getpid()}"
        try:
            with writing(directory / name, "reward model weights", _KEPT):
                write(tmp)
                meta["weights_sha256"] = file_digest(tmp)
                os.replace(tmp, directory / name)
        finally:
            tmp.unlink(missing_ok=True)
        fault_point("rm-save")
    write_record(directory, record, meta)
    return directory


def check_is_file(path: Path) -> None:
    """Refuse a path that exists but is not a regular file (a directory named ``config.json``).

    Raises:
        DataError: Naming the path and what it is instead.
    """
    if path.exists() and not path.is_file():
        raise DataError(f"{path}: is {'a directory' if path.is_dir() else 'not a regular file'}, not a file; move it away")


def read_json(path: Path, expect: str) -> dict[str, Any]:
    """A JSON object from ``path``; ``expect`` names what it should hold, for the message.

    Raises:
        DataError: If the path is a directory, or the file is not valid JSON or not an object.
    """
    check_is_file(path)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object with {expect}, got a {type(meta).__name__}")
    return meta


def read_record(directory: Path, record: str, what: str, expect: str) -> dict[str, Any]:
    """The record of a saved ``what`` (say ``cross-encoder``), checked for a format this ttpkit reads.

    Raises:
        DataError: Naming the directory when there is no record (and saying a save
            was interrupted when weights lie there without one), or the file when
            it is malformed or of a newer format.
    """
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"{d}: no such {what} directory")
    path = d / record
    check_is_file(path)
    if not path.is_file():
        torn = any((d / name).exists() for name in (WEIGHTS, "member-0"))
        why = f"; its weights are there without {record}: a save was interrupted, train it again" if torn else ""
        raise DataError(f"{d}: not a ttpkit {what} (needs {record}){why}")
    meta = read_json(path, expect)
    check_format(path, meta, "rm")
    return meta


def check_sha256(where: Path, key: str, value: Any) -> str:
    """``value`` if it is a SHA-256 (64 lowercase hex digits), else one line saying the record is malformed.

    Raises:
        DataError: Naming the record, the key and the value.
    """
    if not isinstance(value, str) or not _SHA256.fullmatch(value):
        raise DataError(f"{where}: {key} is malformed ({jsonio.dumps(value, default=str)[:80]}; a SHA-256 is 64 hex digits); "
                        "the record was edited or damaged, train the model again")
    return value


def check_weights(weights: Path, meta: Mapping[str, Any], record: str = CONFIG) -> None:
    """Refuse weights whose SHA-256 is not the one the record names (records without a hash pass).

    Raises:
        DataError: Naming the weights and saying the save was interrupted or the file
            replaced; or naming the record when its ``weights_sha256`` is no SHA-256.
    """
    if "weights_sha256" not in meta:
        return
    want = check_sha256(weights.parent / record, "weights_sha256", meta["weights_sha256"])
    check_is_file(weights)
    if file_digest(weights) != want:
        raise DataError(f"{weights}: does not match {record}'s weights_sha256 (a save was interrupted, "
                        "or the file was replaced); train the model again")


def check_feature_stats(weights: Path, mean: Any, std: Any, min_std: float) -> None:
    """Refuse feature statistics that cannot standardize: NaN or infinite means, stds that are NaN or <= 0, or all constant.

    A std of ``inf`` (or, in files from before it, at most ``min_std``) marks a
    feature constant in training: it standardizes to 0
    (:func:`ttpkit.reward.models.feature_scaling`). A model whose every feature
    is constant would give every candidate the same score.

    Raises:
        DataError: Naming the weights file and the tensor.
    """
    import numpy as np

    if not np.isfinite(mean).all():
        raise DataError(f"{weights}: feature_mean holds NaN or infinite values")
    if np.isnan(std).any() or (std <= 0).any():
        bad = int((np.isnan(std) | (std <= 0)).sum())
        raise DataError(f"{weights}: feature_std holds {bad} value(s) that are 0, negative or NaN; a std must be > 0 "
                        "(inf marks a constant feature)")
    if len(std) and not (np.isfinite(std) & (std > min_std)).any():
        raise DataError(f"{weights}: feature_std marks every feature constant (all inf); the model would score every "
                        "candidate the same")


def read_history(path: Path) -> list:
    """The training log ``training.json`` (informational: missing or unreadable is ``[]``).

    Raises:
        DataError: If the path is a directory (or another non-file).
    """
    check_is_file(path)
    if not path.exists():
        return []
    try:
        history = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return []
    return history if isinstance(history, list) else []


def load_tensors(weights: Path) -> dict[str, Any]:
    """The tensors of a safetensors file (torch), or one line saying it is not one.

    Raises:
        DataError: For a missing, truncated, random or pickled file.
    """
    from safetensors.torch import load_file

    try:
        return load_file(str(weights))  # safetensors parses a header and raw arrays; it never runs code
    except Exception as e:  # SafetensorError, OSError...: a truncated, random or non-safetensors file
        raise DataError(f"{weights}: not a readable safetensors file ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
