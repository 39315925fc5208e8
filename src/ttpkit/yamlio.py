"""YAML as ttpkit reads it (task files, study files): safe, and a key given twice in one mapping is an error.

PyYAML keeps the last of two equal keys without a word, so a study that sets
``ns`` twice would run with the second silently. :func:`load` refuses it with
:class:`DuplicateKeyError` (a :class:`yaml.YAMLError`, whose first line names the
key and both lines). Merge keys (``<<``) may still be overridden, as YAML allows.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor

__all__ = ["DuplicateKeyError", "load"]

_MERGE = "tag:yaml.org,2002:merge"


class DuplicateKeyError(ConstructorError):
    """A mapping gives one key twice."""


class _Loader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys."""


def _mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == _MERGE:
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            if key in seen:
                raise DuplicateKeyError(None, None, f"duplicate key {key!r} (lines {seen[key] + 1} and "
                                        f"{key_node.start_mark.line + 1})", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        except TypeError:  # an unhashable key: SafeConstructor reports it below
            continue
    return SafeConstructor.construct_mapping(loader, node, deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def load(text: str) -> Any:
    """Parse YAML (or JSON) text like ``yaml.safe_load``, refusing a mapping that repeats a key.

    Raises:
        yaml.YAMLError: For text that is not YAML, and :class:`DuplicateKeyError` for a repeated key.
    """
    loader = _Loader(text)  # a SafeLoader: plain data only, no Python objects
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()
