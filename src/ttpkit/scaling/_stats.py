"""Per-query statistics of a scorer on a pool, and the generic fit measures (re-exported by :mod:`ttpkit.scaling`).

- :func:`query_stats`: mu_q, s_q, rho_q and the collapse flag of every query
  (:class:`QueryStats`), what the law and the detectors are measured from.
- :func:`user_spread`: the collapse rule, per user.
- :func:`r_squared` and :func:`fit_log_curve`: how well a curve fits.

The bootstrap over queries is :mod:`ttpkit.scaling._bootstrap`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ttpkit.pool import IDX, QUERY_ID, USER_ID, ScorerRef
from ttpkit.scaling._bon import pool_matrix, scorer_values
from ttpkit.utility import query_corr

__all__ = ["HACK_THRESHOLD", "QueryStats", "fit_log_curve", "query_stats", "r_squared", "user_spread"]

HACK_THRESHOLD = -0.1  # a query is hacked when its score-utility correlation is below this
FLAT_FRACTION = 0.02  # an observed curve spanning less than this share of the oracle gain: R² only measures noise


@dataclass(frozen=True)
class QueryStats:
    """Per-query quantities of one scorer on a pool (arrays of length Q)."""

    query_id: np.ndarray
    user_id: np.ndarray
    mu: np.ndarray
    s: np.ndarray
    rho: np.ndarray
    collapsed: np.ndarray
    scores: np.ndarray  # (Q, M), for small-N curves
    utils: np.ndarray  # (Q, M)


def _row_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Q,) correlation of each row of two (Q, M) arrays (0 where a row has no spread)."""
    q, m = a.shape
    corr, _ = query_corr(a.ravel(), b.ravel(), np.repeat(np.arange(q), m))
    return corr


def user_spread(users: np.ndarray, scores: np.ndarray, query_ids: np.ndarray, tau: float) -> pd.DataFrame:
    """The collapse rule: a user is collapsed when the std of its scores is at most tau times the global std.

    Args:
        users, scores, query_ids: (R,) per pool row.
        tau: Threshold as a fraction of the global score std.

    Returns:
        One row per user (``user_id``, ``score_std``, ``queries``,
        ``ratio_to_global``, ``collapsed``), in order of first appearance.
    """
    df = pd.DataFrame({USER_ID: users, "score": scores, QUERY_ID: query_ids})
    g = df.groupby(USER_ID, sort=False).agg(score_std=("score", lambda x: float(np.std(x))), queries=(QUERY_ID, "nunique"))
    global_sd = float(np.std(scores))
    g["ratio_to_global"] = g["score_std"] / global_sd if global_sd > 0 else 0.0
    g["collapsed"] = g["ratio_to_global"] <= tau
    return g.reset_index()


def query_stats(
    pool: pd.DataFrame, scorer: str | ScorerRef, utility: str = "rougeL", tau: float = 0.05, seed: int = 0, m: int | None = None
) -> QueryStats:
    """mu_q, s_q, rho_q and the collapse flag of every query.

    Args:
        pool: Labelled (and scored) pool.
        scorer: Scorer name (see :func:`ttpkit.scaling.scorer_values`).
        utility: Utility column.
        tau: A user is collapsed when the std of its scores is at most tau
            times the std of all scores (:func:`user_spread`).
        seed: Seed of the ``thompson`` rule.
        m: Use the first ``m`` candidates (by idx) of each query.
    """
    if m is not None:
        pool = pool[pool[IDX] < m]
    r_all = scorer_values(pool, scorer, utility, seed)
    qids, u = pool_matrix(pool, pool[utility].to_numpy(dtype=np.float64))
    _, r = pool_matrix(pool, r_all)
    users = pool.groupby(QUERY_ID)[USER_ID].first().reindex(qids).to_numpy()
    spread = user_spread(pool[USER_ID].to_numpy(), r_all, pool[QUERY_ID].to_numpy(), tau).set_index(USER_ID)
    collapsed = spread["collapsed"].reindex(users).to_numpy(dtype=bool)
    rho = _row_corr(r, u)
    rho[collapsed] = 0.0
    return QueryStats(np.asarray(qids), users, u.mean(1), u.std(1), rho, collapsed, r, u)


def fit_log_curve(ns: Sequence[int], values: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares a + b ln N; returns (a, b, R²)."""
    x = np.log(np.asarray(ns, dtype=np.float64))
    y = np.asarray(values, dtype=np.float64)
    b, a = np.polyfit(x, y, 1) if len(set(ns)) > 1 else (0.0, float(y.mean()))
    return float(a), float(b), r_squared(y, a + b * x)


def r_squared(observed: Sequence[float], predicted: Sequence[float]) -> float:
    """1 - SS_res / SS_tot (NaN when the observed values are constant)."""
    o, p = np.asarray(observed, float), np.asarray(predicted, float)
    ss_tot = float(((o - o.mean()) ** 2).sum())
    return float("nan") if ss_tot < 1e-15 else 1.0 - float(((o - p) ** 2).sum()) / ss_tot
