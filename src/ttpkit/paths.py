"""Where ttpkit keeps what it caches: converted models, the embedding cache.

Everything lives under one root, ``$TTPKIT_CACHE_DIR`` or the platform's user
cache directory, so a user can see, move or delete it in one place.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir", "embeddings_cache_file"]


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
