"""Utility of a candidate: ROUGE-1, ROUGE-L and ROUGE-Lsum F1 against the reference, and how well a score tracks it.

Computed with Google's ``rouge-score`` package with the Porter stemmer on, as
the LaMP benchmark reports ROUGE. ``rougeLsum`` is the summary-level ROUGE-L of
``rouge-score``: the union LCS over the sentences of candidate and reference,
split at newlines. For one-line outputs it equals ``rougeL``; for multi-line
ones (a package description) it credits content matched line by line in any
order of lines, where ``rougeL`` needs one common subsequence across lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import pandas as pd

from ttpkit.data import Query
from ttpkit.errors import DataError
from ttpkit.pool import QUERY_ID, ROUGE1, ROUGEL, ROUGELSUM, TEXT

__all__ = ["UTILITIES", "add_labels", "lcs_f1", "query_corr", "rouge", "rouge_many", "rouge_tokens", "within_query_corr"]

UTILITIES = (ROUGE1, ROUGEL, ROUGELSUM)


@lru_cache(maxsize=1)
def _scorer():
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(UTILITIES), use_stemmer=True)


def rouge_tokens(text: str) -> list[str]:
    """The tokens ROUGE-L scores (lower-cased, stemmed), for comparing many texts pairwise without re-tokenizing."""
    return _scorer()._tokenizer.tokenize(text or "")


def lcs_f1(a: list[str], b: list[str]) -> float:
    """ROUGE-L F1 of two token lists from :func:`rouge_tokens` (symmetric)."""
    from rouge_score.rouge_scorer import _score_lcs

    return float(_score_lcs(a, b).fmeasure)


def rouge(candidate: str, reference: str) -> dict[str, float]:
    """ROUGE-1, ROUGE-L and ROUGE-Lsum F1 of one candidate against one reference.

    Returns:
        ``{"rouge1": f1, "rougeL": f1, "rougeLsum": f1}``, each in [0, 1].
    """
    scores = _scorer().score(reference, candidate)
    return {name: float(scores[name].fmeasure) for name in UTILITIES}


def rouge_many(candidates: Sequence[str], references: Sequence[str]) -> pd.DataFrame:
    """ROUGE for aligned lists of candidates and references, one column per utility of :data:`UTILITIES`."""
    if len(candidates) != len(references):
        raise ValueError("candidates and references differ in length")
    return pd.DataFrame([rouge(c, r) for c, r in zip(candidates, references)], columns=list(UTILITIES))


def add_labels(pool: pd.DataFrame, by_id: Mapping[str, Query]) -> pd.DataFrame:
    """Return ``pool`` with the :data:`UTILITIES` columns added (or replaced).

    Args:
        pool: Candidate pool.
        by_id: Query id to query (with its reference).

    Raises:
        DataError: If a pooled query is not in ``by_id`` or has no reference.
    """
    refs = []
    for qid in pool[QUERY_ID]:
        q = by_id.get(qid)
        if q is None:
            raise DataError(f"pool query {qid!r} is not in the data split")
        if q.reference is None:
            raise DataError(f"query {qid!r} has no reference output; it cannot be labelled")
        refs.append(q.reference)
    labels = rouge_many(pool[TEXT].fillna("").tolist(), refs)
    out = pool.copy()
    for name in UTILITIES:
        out[name] = labels[name].to_numpy()
    return out


def query_corr(scores: np.ndarray, utils: np.ndarray, groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pearson correlation of score and utility within each query.

    Args:
        scores, utils: (R,) values of the pool's rows.
        groups: (R,) query of each row (any hashable labels).

    Returns:
        ``(corr, valid)``, each (G,) in order of first appearance: the
        correlation (0 where it is undefined) and whether both the scores and
        the utilities of that query vary.
    """
    codes, _ = pd.factorize(np.asarray(groups))
    s = np.asarray(scores, dtype=np.float64)
    u = np.asarray(utils, dtype=np.float64)
    count = np.bincount(codes)
    ds = s - (np.bincount(codes, s) / count)[codes]
    du = u - (np.bincount(codes, u) / count)[codes]
    ss, uu, su = np.bincount(codes, ds * ds), np.bincount(codes, du * du), np.bincount(codes, ds * du)
    valid = (ss > 1e-24) & (uu > 1e-24)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.where(valid, su / np.sqrt(np.where(valid, ss * uu, 1.0)), 0.0)
    return corr, valid


def within_query_corr(scores: np.ndarray, utils: np.ndarray, groups: np.ndarray) -> float:
    """Mean over queries of the score-utility correlation (queries without spread skipped; 0 if none has it)."""
    corr, valid = query_corr(scores, utils, groups)
    return float(corr[valid].mean()) if valid.any() else 0.0
