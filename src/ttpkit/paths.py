"""Where ttpkit keeps what it caches (converted models, the embedding cache), and where it may write.

Everything cached lives under one root, ``$TTPKIT_CACHE_DIR`` or the platform's
user cache directory, so a user can see, move or delete it in one place.
:func:`check_writable` checks an output location before long work starts.
"""

from __future__ import annotations

import os
from pathlib import Path

from ttpkit.errors import ConfigError

__all__ = ["cache_dir", "check_writable", "embeddings_cache_file"]


def cache_dir() -> Path:
    """ttpkit's cache root: ``$TTPKIT_CACHE_DIR`` or the platform's user cache dir."""
    env = os.environ.get("TTPKIT_CACHE_DIR")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("ttpkit"))


def embeddings_cache_file() -> Path:
    """The persistent all-MiniLM-L6-v2 embedding cache (one file; keys carry the dtype and depth)."""
    return cache_dir() / "embeddings" / "all-MiniLM-L6-v2.safetensors"


def check_writable(path: str | Path, what: str = "output", directory: bool = False) -> Path:
    """Make sure ``path`` can be written (creating its parent folders), before any long work starts.

    Args:
        path: A file to write, or with ``directory`` a folder to write into.
        what: What the path is for, for the message (``"pool"``, ``"--plot"``).
        directory: ``path`` is a folder (it may exist); else a file (it must not be a folder).

    Raises:
        ConfigError: If a parent is a file, the place is not writable, or the kind is wrong.
    """
    p = Path(path)
    if directory and p.exists() and not p.is_dir():
        raise ConfigError(f"{what} {p}: exists and is not a directory")
    if not directory and p.is_dir():
        raise ConfigError(f"{what} {p}: is a directory; give a file name")
    folder = p if directory else p.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{what} {p}: a parent of it is a file, not a directory") from None
    except OSError as e:
        raise ConfigError(f"{what} {p}: cannot create {folder} ({e.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK) or (p.exists() and not directory and not os.access(p, os.W_OK)):
        raise ConfigError(f"{what} {p}: not writable")
    return p
