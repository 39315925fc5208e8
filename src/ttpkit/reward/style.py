"""``style``: the naive personalized scorer (no training).

A candidate's score is its mean ROUGE-L F1 against the user's past targets, so
it favours candidates that look like what the user wrote before, whatever the
query asks. It is the baseline the learned reward models must beat.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ttpkit.data import Query
from ttpkit.errors import DataError
from ttpkit.pool import QUERY_ID, TEXT
from ttpkit.utility import lcs_f1, rouge_tokens

__all__ = ["style_scores"]


def style_scores(pool: pd.DataFrame, by_id: Mapping[str, Query], max_targets: int = 60) -> np.ndarray:
    """Score every pool row by mean ROUGE-L against its user's past targets.

    Args:
        pool: Candidate pool (``query_id``, ``text`` columns).
        by_id: Query id to query (for the user's profile). References are not read.
        max_targets: Use the user's newest ``max_targets`` profile targets.

    Returns:
        (len(pool),) scores in [0, 1].
    """
    out = np.zeros(len(pool))
    cache: dict[str, list] = {}
    for i, (qid, text) in enumerate(zip(pool[QUERY_ID], pool[TEXT].fillna(""))):
        q = by_id.get(qid)
        if q is None:
            raise DataError(f"pool query {qid!r} is not in the data split")
        if qid not in cache:
            cache[qid] = [rouge_tokens(p.target) for p in q.profile[-max_targets:]]
        targets = cache[qid]
        if not targets:
            continue
        toks = rouge_tokens(text)
        out[i] = float(np.mean([lcs_f1(t, toks) for t in targets]))
    return out
