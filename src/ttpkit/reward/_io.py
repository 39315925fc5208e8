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
ensembles and cross-encoders) still load, without the check.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ttpkit import jsonio
from ttpkit._faults import fault_point
from ttpkit.errors import DataError
from ttpkit.manifest import check_format, file_digest
from ttpkit.paths import write_atomic, writing

__all__ = ["CONFIG", "ENSEMBLE", "WEIGHTS", "check_weights", "load_tensors", "read_json", "read_record", "save_atomic",
           "write_file", "write_record"]

WEIGHTS = "model.safetensors"
CONFIG = "config.json"  # the record of a feature RM and of a cross-encoder
ENSEMBLE = "ensemble.json"  # the record of an ensemble

Writer = Callable[[Path], None]


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


def read_json(path: Path, expect: str) -> dict[str, Any]:
    """A JSON object from ``path``; ``expect`` names what it should hold, for the message.

    Raises:
        DataError: If the file is not valid JSON or not an object.
    """
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
    if not path.is_file():
        torn = any((d / name).exists() for name in (WEIGHTS, "member-0"))
        why = f"; its weights are there without {record}: a save was interrupted, train it again" if torn else ""
        raise DataError(f"{d}: not a ttpkit {what} (needs {record}){why}")
    meta = read_json(path, expect)
    check_format(path, meta, "rm")
    return meta


def check_weights(weights: Path, meta: Mapping[str, Any], record: str = CONFIG) -> None:
    """Refuse weights whose SHA-256 is not the one the record names (records without a hash pass).

    Raises:
        DataError: Naming the weights and saying the save was interrupted or the file replaced.
    """
    if "weights_sha256" in meta and file_digest(weights) != meta["weights_sha256"]:
        raise DataError(f"{weights}: does not match {record}'s weights_sha256 (a save was interrupted, "
                        "or the file was replaced); train the model again")


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
