"""``mbr``: minimum-Bayes-risk consensus, a scorer that needs no training and no profile.

A candidate's score is its mean ROUGE-L F1 against the other candidates of its
query's pool: the answer the policy's samples agree on scores highest
(Jinnai et al. 2024 regularize best-of-N with it).

**What the curve computes.** Proper MBR inside best-of-N compares a candidate
with the other N-1 *drawn* candidates, so its score depends on the draw. ttpkit
scores against the whole pool of M instead (pool-consensus MBR): the score is
then fixed per candidate, and the exact best-of-N estimator applies. It is an
approximation of within-draw MBR, labelled as such in every report; its gap to
within-draw MBR is measured by :func:`within_draw_mbr_curve` (Monte Carlo over
draws).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ttpkit.pool import IDX, QUERY_ID, TEXT
from ttpkit.utility import lcs_f1, rouge_tokens

__all__ = ["mbr_matrix", "mbr_scores", "within_draw_mbr_curve"]


def mbr_matrix(texts: Sequence[str]) -> np.ndarray:
    """(M, M) ROUGE-L F1 of every pair of candidates (symmetric; the diagonal is 1 for non-empty texts)."""
    toks = [rouge_tokens(t) for t in texts]
    m = len(toks)
    sim = np.zeros((m, m))
    for i in range(m):
        for j in range(i, m):
            sim[i, j] = sim[j, i] = lcs_f1(toks[i], toks[j])
    return sim


def mbr_scores(pool: pd.DataFrame) -> np.ndarray:
    """Each row's mean ROUGE-L F1 against the other candidates of its query: (len(pool),) in [0, 1]."""
    out = np.zeros(len(pool))
    positions = pd.Series(np.arange(len(pool)), index=pool.index)
    for _, rows in pool.groupby(QUERY_ID, sort=False):
        sim = mbr_matrix(rows[TEXT].fillna("").astype(str).tolist())
        m = len(rows)
        out[positions[rows.index].to_numpy()] = (sim.sum(1) - np.diag(sim)) / max(m - 1, 1)
    return out


def within_draw_mbr_curve(
    pool: pd.DataFrame, utility: str, ns: Sequence[int], draws: int = 2000, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Monte-Carlo best-of-N of MBR computed within each draw of N (the exact scorer pool-consensus MBR approximates).

    Returns:
        ``(mean, half_width)`` over queries, each (len(ns),); half_width is 1.96
        Monte-Carlo standard errors.
    """
    rng = np.random.default_rng(seed)
    per_query = []
    for _, rows in pool.sort_values([QUERY_ID, IDX]).groupby(QUERY_ID, sort=False):
        sim = mbr_matrix(rows[TEXT].fillna("").astype(str).tolist())
        u = rows[utility].to_numpy(float)
        m = len(u)
        vals = np.zeros((len(ns), draws))
        for k, n in enumerate(ns):
            for d in range(draws):
                s = rng.choice(m, size=n, replace=False)
                sub = sim[np.ix_(s, s)]
                score = (sub.sum(1) - np.diag(sub)) / max(n - 1, 1)
                top = np.flatnonzero(score == score.max())
                vals[k, d] = u[s[top]].mean()  # ties: the mean of the tied, as the exact estimator does
        per_query.append(vals)
    arr = np.stack(per_query)  # (Q, K, draws)
    mean = arr.mean(axis=(0, 2))
    se = arr.mean(axis=0).std(axis=1, ddof=1) / np.sqrt(draws)
    return mean, 1.96 * se
