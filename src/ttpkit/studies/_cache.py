"""The study cache: every artefact under ``<out>/cache``, named by a hash of what made it, made once.

Both study kinds key their pools, reward models and scored pools with
:func:`cache_key`, and train reward models through :func:`cached_rm`, so an
interrupted or extended study redoes only what is missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ttpkit.errors import TtpkitError
from ttpkit.reward import load_rm

__all__ = ["cache_key", "cached_rm"]

log = logging.getLogger(__name__)


def _plain(o: Any) -> Any:
    return dataclasses.asdict(o) if dataclasses.is_dataclass(o) else str(o)


def cache_key(*parts: Any) -> str:
    """12 hex digits of the SHA-256 of ``parts`` as sorted JSON (dataclasses as their fields, anything else as ``str``).

    A caller that passes ``repr(spec)`` instead of ``spec`` keys by the
    dataclass's text: the failure study does, so caches made before the two
    study runners shared this function stay valid.
    """
    blob = json.dumps(parts, sort_keys=True, default=_plain)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cached_rm(path: Path, train: Callable[[], Any]) -> Any:
    """The reward model saved at ``path``, or ``train()`` (which saves it there) when there is none.

    A damaged save (an interrupted run) is trained again, with a warning.
    """
    if path.is_dir() and any(path.iterdir()):
        try:
            return load_rm(path)
        except TtpkitError as e:
            log.warning("%s: cached reward model unusable (%s); training it again", path, e)
    return train()
