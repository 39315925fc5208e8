"""BM25 retrieval of a user's own profile items for a query (``bm25s``)."""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np

from ttpkit.data import ProfileItem, Query

__all__ = ["retrieve"]


def _bm25s():
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
    return bm25s


@lru_cache(maxsize=512)
def _index(sources: tuple[str, ...]):  # -> bm25s.BM25
    bm25s = _bm25s()

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(list(sources), stopwords="en", show_progress=False), show_progress=False)
    return retriever


def retrieve(query: Query, k: int = 4) -> list[ProfileItem]:
    """Top-``k`` profile items of the query's user, most relevant first.

    Scores are BM25 over the items' source texts against the query's source.
    Ties keep profile order, so results are deterministic.

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
    tokens = bm25s.tokenize([query.source], stopwords="en", show_progress=False, return_ids=False)
    # get_scores needs the index vocabulary; unknown words simply score nothing.
    vocab = retriever.vocab_dict
    words = [w for w in tokens[0] if w in vocab]
    scores = np.asarray(retriever.get_scores(words), dtype=np.float64) if words else np.zeros(len(items))
    order = np.lexsort((np.arange(len(items)), -scores))  # by score desc, then profile order
    return [items[i] for i in order[:k]]
