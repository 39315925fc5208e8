"""Utility of a candidate: ROUGE-1 and ROUGE-L F1 against the reference.

Computed with Google's ``rouge-score`` package with the Porter stemmer on, as
the LaMP benchmark reports ROUGE.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import pandas as pd

from ttpkit.data import Query
from ttpkit.errors import DataError

__all__ = ["UTILITIES", "label_pool", "rouge", "rouge_many"]

UTILITIES = ("rouge1", "rougeL")


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(UTILITIES), use_stemmer=True)


def rouge(candidate: str, reference: str) -> dict[str, float]:
    """ROUGE-1 and ROUGE-L F1 of one candidate against one reference.

    Returns:
        ``{"rouge1": f1, "rougeL": f1}``, each in [0, 1].
    """
    scores = _scorer().score(reference, candidate)
    return {name: float(scores[name].fmeasure) for name in UTILITIES}


def rouge_many(candidates: Sequence[str], references: Sequence[str]) -> pd.DataFrame:
    """ROUGE for aligned lists of candidates and references, as a (len, 2) frame."""
    if len(candidates) != len(references):
        raise ValueError("candidates and references differ in length")
    return pd.DataFrame([rouge(c, r) for c, r in zip(candidates, references)], columns=list(UTILITIES))


def label_pool(pool: pd.DataFrame, queries: dict[str, Query]) -> pd.DataFrame:
    """Return ``pool`` with ``rouge1`` and ``rougeL`` columns added (or replaced).

    Raises:
        DataError: If a pooled query is not in ``queries`` or has no reference.
    """
    refs = []
    for qid in pool["query_id"]:
        q = queries.get(qid)
        if q is None:
            raise DataError(f"pool query {qid!r} is not in the data split")
        if q.reference is None:
            raise DataError(f"query {qid!r} has no reference output; it cannot be labelled")
        refs.append(q.reference)
    labels = rouge_many(pool["text"].fillna("").tolist(), refs)
    out = pool.copy()
    for name in UTILITIES:
        out[name] = labels[name].to_numpy()
    return out
