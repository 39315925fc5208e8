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

Two scorers that :func:`ttpkit.stages.score_pool` takes like a trained RM
(``ttpkit score --rm mbr`` / ``--rm reg:<base>:<beta>``): :class:`MBRScorer`
(column ``mbr``) and :class:`RegScorer` (column ``reg``), MBR-regularized
best-of-N, ``z(score_<base>) + β z(mbr)`` with both standardized over the pool.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ttpkit.data import Query
from ttpkit.errors import ConfigError, DataError
from ttpkit.pool import IDX, QUERY_ID, TEXT, score_col
from ttpkit.reward.base import NOTHING, Needs
from ttpkit.reward.models import Scores
from ttpkit.utility import lcs_f1, rouge_tokens

__all__ = ["MBRScorer", "RegScorer", "mbr_matrix", "mbr_scores", "standardize", "within_draw_mbr_curve"]


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


def standardize(x: np.ndarray) -> np.ndarray:
    """``(x - mean) / std`` over all of ``x`` (population std); all zeros where the std is 0."""
    sd = float(np.std(x))
    return (x - np.mean(x)) / sd if sd > 0 else np.zeros_like(x)


class MBRScorer:
    """Pool-consensus MBR as a scorer: :func:`mbr_scores` of the pool, no training, no profile, no encoder."""

    probabilistic = False
    needs: Needs = NOTHING

    @property
    def name(self) -> str:
        """Default column suffix: ``mbr``."""
        return "mbr"

    def score(self, pool: pd.DataFrame, by_id: Mapping[str, Query] | None = None, encoder: Any = None) -> Scores:
        """``mean``: :func:`mbr_scores` (R,); ``std``: zeros. ``by_id`` and ``encoder`` are not read."""
        mean = mbr_scores(pool)
        return Scores(mean=mean, std=np.zeros_like(mean))


class RegScorer:
    """MBR-regularized best-of-N (Jinnai et al. 2024): ``z(score_<base>) + beta * z(mbr)``.

    ``z`` standardizes over the whole pool (:func:`standardize`). The base RM's
    scores are read from the pool's ``score_<base>`` column, so score the pool
    with the base RM first; MBR's from ``score_mbr`` when the pool has it
    (computed otherwise).

    Args:
        base: Name of the base scorer (its column is ``score_<base>``).
        beta: Weight of the MBR term (a finite number).
    """

    probabilistic = False

    def __init__(self, base: str, beta: float) -> None:
        if not isinstance(base, str) or not base:
            raise ConfigError(f"reg: the base must be a scorer name, got {base!r}")
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta):
            raise ConfigError(f"reg: beta must be a finite number, got {beta!r}")
        self.base = base
        self.beta = float(beta)

    @property
    def name(self) -> str:
        """Default column suffix: ``reg``."""
        return "reg"

    @property
    def needs(self) -> Needs:
        """The base scorer's column (``score_mbr`` is read when there, computed otherwise)."""
        return Needs(columns=(score_col(self.base),))

    def score(self, pool: pd.DataFrame, by_id: Mapping[str, Query] | None = None, encoder: Any = None) -> Scores:
        """``mean``: ``z(score_<base>) + beta * z(mbr)`` (R,); ``std``: zeros.

        Raises:
            DataError: If the pool has no ``score_<base>`` column.
        """
        col = score_col(self.base)
        if col not in pool.columns:
            raise DataError(f"pool has no column {col!r}: score it with the base RM {self.base!r} first "
                            f"(ttpkit score --rm ... --name {self.base})")
        mbr = pool[score_col("mbr")].to_numpy() if score_col("mbr") in pool.columns else mbr_scores(pool)  # the pool's own if scored
        mean = standardize(pool[col].to_numpy()) + self.beta * standardize(mbr)
        return Scores(mean=mean, std=np.zeros_like(mean))
