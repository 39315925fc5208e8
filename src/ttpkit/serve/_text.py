"""The request bodies' one rule for values: every one must fit the store, or the request is a 422 naming the field.

:class:`TextRequest`, the base of every request model, checks the raw body
before any route runs (so before any sampling or scoring):

- every string (nested ones and keys too) is valid Unicode: JSON allows a
  ``\\ud800`` escape (half of a UTF-16 pair), which Python decodes to a lone
  surrogate that no tokenizer, hash or database can encode; same rule as the
  files and options (:func:`ttpkit.text.find_bad_text`);
- no string holds a NUL character (``\\u0000``): PostgreSQL text cannot store it;
- every number is finite (Python's JSON reads ``NaN``, ``Infinity`` and ``1e999``)
  and every integer fits 64 bits (:data:`MAX_INT`), what the store and numpy hold;
- the body nests at most :data:`MAX_DEPTH` levels (the deepest request needs 3).

The 422 names the field (``profile[0].title``) and what is wrong.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from ttpkit.text import find_bad_text

__all__ = ["MAX_DEPTH", "MAX_INT", "TextRequest", "find_unstorable"]

MAX_DEPTH = 16  # levels of nested objects and arrays in a request body
MAX_INT = 2**63 - 1  # every integer of a body lies in -2**63..MAX_INT (a SQL BIGINT, a numpy int64)
_SHOWN = 40  # characters of a key or number a message quotes


def _short(text: str, most: int = _SHOWN) -> str:
    return text if len(text) <= most else f"{text[:most]}... ({len(text)} characters)"


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, str):
        at = value.find("\x00")
        return None if at < 0 else f"a NUL character (\\u0000) at character {at}; stored text cannot hold it"
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not -MAX_INT - 1 <= value <= MAX_INT:
        digits = len(str(abs(value)))
        return f"an integer of {digits} digits; integers must lie in -2**63..2**63-1"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number"
    return None


def find_unstorable(obj: Any, path: str = "", depth: int = 0) -> tuple[str, str] | None:
    """The first value of parsed JSON no store can hold, as ``(path, problem)``, or ``None``.

    Checks NUL characters (keys too), non-finite numbers, integers past 64 bits
    and nesting deeper than :data:`MAX_DEPTH`, in document order.
    """
    if isinstance(obj, (dict, list, tuple)) and depth >= MAX_DEPTH:
        return path or "(the body)", f"nested more than {MAX_DEPTH} levels deep"
    if isinstance(obj, dict):
        for key, value in obj.items():
            where = f"{path}.{_short(str(key))}" if path else _short(str(key))
            if (problem := _scalar_problem(key)) is not None:
                return f"{path or '(the object)'} (a key)", problem
            if (found := find_unstorable(value, where, depth + 1)) is not None:
                return found
        return None
    if isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            if (found := find_unstorable(value, f"{path}[{i}]", depth + 1)) is not None:
                return found
        return None
    problem = _scalar_problem(obj)
    return None if problem is None else (path or "(the value)", problem)


class TextRequest(BaseModel):
    """A request body whose every value fits the store: valid Unicode without NUL, finite 64-bit numbers, shallow."""

    model_config = ConfigDict(allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        unstorable = find_unstorable(data)  # first: it bounds the depth the next walk recurses to
        if unstorable is not None:
            raise ValueError(f"{unstorable[0]}: {unstorable[1]}")
        bad = find_bad_text(data)
        if bad is not None:
            raise ValueError(f"{_short(bad[0], 200)} is not valid UTF-8 text ({bad[1]})")
        return data
