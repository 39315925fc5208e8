"""BM25 retrieval of a user's own profile items for a query (``bm25s``).

A profile whose sources hold no indexable word (all empty, or only stopwords
and punctuation: subject-only git commits are common) has no BM25 index; bm25s
would fail on it, so such a user gets their most recent items, newest first,
with a logged warning.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np

from ttpkit.data import ProfileItem, Query

__all__ = ["drop_indexes", "retrieve"]

log = logging.getLogger(__name__)


def _bm25s():
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
    return bm25s


@lru_cache(maxsize=512)
def _index(sources: tuple[str, ...]):  # -> bm25s.BM25 | None
    """The BM25 index of a profile's sources, or ``None`` when they hold no word to index (logged once per profile)."""
    bm25s = _bm25s()

    tokens = bm25s.tokenize(list(sources), stopwords="en", show_progress=False)
    if not tokens.vocab:
        log.warning("a profile of %d items has no indexable words in its sources (empty, stopwords or punctuation); "
                    "its most recent items are used instead of BM25", len(sources))
        return None
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    return retriever


def drop_indexes() -> None:
    """Forget every cached BM25 index (what deleting a user needs).

    Indexes are keyed by a profile's content, not by its user, so all of them go
    rather than any over the deleted user's items staying; they rebuild on use.
    """
    _index.cache_clear()


def retrieve(query: Query, k: int = 4) -> list[ProfileItem]:
    """Top-``k`` profile items of the query's user, most relevant first.

    Scores are BM25 over the items' source texts against the query's source.
    Ties keep profile order, so results are deterministic. A profile with no
    indexable word gives its last ``k`` items (the newest), newest first.

    Args:
        query: The query; its ``profile`` is the candidate set.
        k: Number of items to return (fewer if the profile is shorter).
    """
    bm25s = _bm25s()
    items = query.profile
    if k <= 0 or not items:
        return []
    sources = tuple(it.source for it in items)
    retriever = _index(sources)  # one index per distinct profile, shared by a user's queries
    if retriever is None:
        return list(items[::-1][:k])
    tokens = bm25s.tokenize([query.source], stopwords="en", show_progress=False, return_ids=False)
    # get_scores needs the index vocabulary; unknown words simply score nothing.
    vocab = retriever.vocab_dict
    words = [w for w in tokens[0] if w in vocab]
    scores = np.asarray(retriever.get_scores(words), dtype=np.float64) if words else np.zeros(len(items))
    order = np.lexsort((np.arange(len(items)), -scores))  # by score desc, then profile order
    return [items[i] for i in order[:k]]
