"""The one rule for text that enters ttpkit: it must be valid Unicode, or it is refused with the place named.

Python strings can hold what no UTF-8 file can: lone surrogates, from a JSON or
YAML ``\\ud800`` escape (half of a pair) or from command-line bytes that are not
UTF-8 (argv is decoded with ``surrogateescape``, so byte ``0xff`` becomes
``\\udcff``). Such text crashes the first hash, tokenizer or Parquet write that
encodes it. ttpkit refuses it where it enters (data and task files, profiles,
options, HTTP bodies) rather than replacing it, because a replacement would
silently change the text that ROUGE labels. Every entry point calls
:func:`check_text` (or :func:`find_bad_text` for nested data), so the rule and
the message are the same everywhere.
"""

from __future__ import annotations

from typing import Any

from ttpkit.errors import DataError

__all__ = ["check_text", "find_bad_text", "text_problem"]


def text_problem(text: str) -> str | None:
    """What makes ``text`` invalid Unicode (its first lone surrogate, described), or ``None`` when it is valid."""
    if not isinstance(text, str) or text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        code = ord(text[e.start])
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: a byte of argv or a file name that is not UTF-8
            return f"byte 0x{code - 0xDC00:02x} at character {e.start} is not UTF-8"
        return f"a lone surrogate \\u{code:04x}, half of a UTF-16 pair, at character {e.start}"
    return None


def check_text(value: str, where: str, error: type[Exception] = DataError) -> str:
    """``value`` if it is valid Unicode, else ``error`` naming ``where`` (the file, record and field, or the option).

    Raises:
        DataError: (or ``error``) ``"<where> is not valid UTF-8 text (<what and where>)"``.
    """
    problem = text_problem(value)
    if problem is not None:
        raise error(f"{where} is not valid UTF-8 text ({problem})")
    return value


def find_bad_text(obj: Any, path: str = "") -> tuple[str, str] | None:
    """The first invalid string in nested JSON-like data: ``(path, problem)``, keys included, or ``None``.

    ``path`` spells where it is (``items[2].title``); strings are checked in
    order, mapping keys before their values.
    """
    if isinstance(obj, str):
        problem = text_problem(obj)
        return None if problem is None else (path or "(the value)", problem)
    if isinstance(obj, dict):
        for key, value in obj.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(key, str) and (problem := text_problem(key)) is not None:
                return f"{path or '(the object)'} (a key)", problem
            if (found := find_bad_text(value, where)) is not None:
                return found
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            if (found := find_bad_text(value, f"{path}[{i}]")) is not None:
                return found
    return None
