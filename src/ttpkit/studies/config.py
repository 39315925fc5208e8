"""One typed loader for every study kind: YAML in, frozen dataclasses out, every error naming its key path.

A study file is a YAML mapping. :func:`read_yaml` parses it (:func:`ttpkit.yamlio.load`,
``yaml.safe_load`` refusing a repeated key) and :func:`build` turns a mapping into a dataclass after checking its keys
against the dataclass's fields and each value against the field's annotation,
so an unknown key, a wrong type or an out-of-range value fails when the file
loads, with the key path (``study datasets[0].test.m``), not an hour into the
run. Both study kinds (:mod:`ttpkit.studies.paper`, :mod:`ttpkit.studies.failures`)
build their configs with it.
"""

from __future__ import annotations

import logging
import re
import types
import typing
from pathlib import Path
from typing import Any

from ttpkit import yamlio
from ttpkit.errors import ConfigError
from ttpkit.text import find_bad_text

__all__ = ["as_list", "build", "check_names", "load_yaml", "mapping", "rename_deprecated", "read_yaml", "type_ok"]

log = logging.getLogger(__name__)


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")  # a study's names become folder and plot names under runs/


def check_names(names: Any, where: str) -> None:
    """Names that can be told apart and stay inside the study's folder, else a :class:`ConfigError` naming the key.

    Each must be a plain file name (letters, digits, ``.``, ``_``, ``+``, ``-``; no ``/`` and no ``..``), and no
    two may be equal: their rows could not be told apart and their plots would overwrite each other.
    """
    seen: set[str] = set()
    for name in names:
        if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
            raise ConfigError(f"{where}: {name!r} names files under the study's folder; use letters, digits, "
                              "'.', '_', '+' and '-' (no '/', no '..')")
        if name in seen:
            raise ConfigError(f"{where}: the name {name!r} is given twice; their rows and plots would be mixed")
        seen.add(name)


def read_yaml(path: str | Path) -> Any:
    """Parse a study file; a missing file, bad YAML or text that is not valid UTF-8 is a :class:`ConfigError` naming the file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: study file not found")
    try:
        raw = yamlio.load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not valid UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    except RecursionError:
        raise ConfigError(f"{p}: nested too deeply to read") from None
    if (bad := find_bad_text(raw)) is not None:  # a "\ud800" escape: refused, as in every other input
        raise ConfigError(f"{p}: {bad[0]} is not valid UTF-8 text ({bad[1]})")
    return raw


def load_yaml(kind: Any, path: str | Path) -> Any:
    """``kind.from_dict`` of a study file, relative paths resolved against its folder; errors start with the file."""
    p = Path(path)
    raw = read_yaml(p)
    try:
        return kind.from_dict(raw, base=p.parent)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None


def mapping(obj: Any, where: str) -> dict:
    """``obj`` if it is a mapping, else an error naming ``where``."""
    if not isinstance(obj, dict):
        raise ConfigError(f"study {where}: expected a mapping, got {type(obj).__name__}")
    return obj


def as_list(obj: Any, where: str) -> list:
    """``obj`` if it is a list, else an error naming ``where``."""
    if not isinstance(obj, list):
        raise ConfigError(f"study {where}: expected a list, got {type(obj).__name__}")
    return obj


def rename_deprecated(obj: dict, old: str, new: str, where: str) -> dict:
    """A copy of ``obj`` with the deprecated key ``old`` read as ``new`` (with a warning; ``new`` wins if both are set)."""
    if old not in obj:
        return obj
    obj = dict(obj)
    value = obj.pop(old)
    if new not in obj:
        log.warning("study %s: the key %r is deprecated and will be removed; use %r", where, old, new)
        obj[new] = value
    return obj


def type_ok(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a field's annotation (scalars, optionals, tuples; nested dataclasses are built already)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(type_ok(value, a) for a in args)
    if origin is tuple:
        return isinstance(value, tuple) and all(type_ok(v, args[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is bool:
        return isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    return isinstance(value, hint) if isinstance(hint, type) else True


def build(kind: type, obj: Any, where: str) -> Any:
    """``kind(**obj)`` after checking keys and types; every error names the key path ``where``."""
    obj = mapping(obj, where)
    hints = typing.get_type_hints(kind)
    extra = set(obj) - set(hints)
    if extra:
        raise ConfigError(f"study {where}: unknown keys {sorted(extra)}; allowed: {sorted(hints)}")
    for key, value in obj.items():
        if not type_ok(value, hints[key]):
            want = getattr(hints[key], "__name__", str(hints[key]))
            raise ConfigError(f"study {where}.{key}: {value!r} is not a valid {want}")
    try:
        return kind(**obj)
    except TypeError as e:
        raise ConfigError(f"study {where}: {e}") from None
    except ConfigError as e:
        raise ConfigError(f"study {where}: {e}") from None
