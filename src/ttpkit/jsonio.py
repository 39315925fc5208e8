"""JSON that every parser accepts: NaN and ±inf are written as ``null``, never as bare ``NaN``.

Python's :mod:`json` writes ``NaN`` and ``Infinity`` by default, which jq,
JavaScript's ``JSON.parse`` and Go's ``encoding/json`` reject. Every JSON file
and response ttpkit writes goes through :func:`dumps` (or :func:`write_json`),
which replaces a non-finite float by ``null`` (a value that is not defined, such
as the R² of a flat curve) and then dumps with ``allow_nan=False``.
"""

from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import Any

from ttpkit.paths import write_atomic, writing

__all__ = ["dumps", "finite", "write_json"]


def finite(obj: Any) -> Any:
    """``obj`` with every non-finite real number (in dicts, their keys included, lists and tuples, at any depth) replaced by ``None``.

    Real non-integral numbers (Python and numpy floats) become Python floats; everything else is left as it is.
    """
    if isinstance(obj, dict):  # a key too: json writes a float key as its repr, and refuses a NaN one
        return {finite(k) if isinstance(k, float) else k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    if isinstance(obj, numbers.Real) and not isinstance(obj, numbers.Integral):
        x = float(obj)
        return x if math.isfinite(x) else None
    return obj


def dumps(obj: Any, **kwargs: Any) -> str:
    """:func:`json.dumps` of :func:`finite` ``(obj)`` with ``allow_nan=False``; ``kwargs`` go to :func:`json.dumps`."""
    return json.dumps(finite(obj), allow_nan=False, **kwargs)


def write_json(obj: Any, path: str | Path, **kwargs: Any) -> Path:
    """Write :func:`dumps` ``(obj, indent=2)`` and a trailing newline to ``path`` (creating its folder), atomically.

    Raises:
        StorageError: If it cannot be written (a full disk): the previous file is intact, no temporary is left.
    """
    path = Path(path)
    text = dumps(obj, **{"indent": 2, **kwargs}) + "\n"
    with writing(path.parent, "folder"):
        path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), "JSON file")
