"""Measures of the two failure modes that see them, and the back-off fix.

- :func:`within_query_share`: the share of each user's score variance that lies
  *within* queries. A scorer that ranks users (or queries) but not the
  candidates of a query is collapsed for that user whatever its global spread,
  which the spread rule of :func:`ttpkit.scaling.collapsed_users` cannot see.
- :func:`failure_measures`: that share, ``c`` at τ and the hacking rate of one
  scorer, in one record.
- :func:`backoff_scores`: select with a fallback scorer for the users the
  primary looks collapsed for (judged from scores alone, no utility), and
  :func:`capped_curve`: stop spending samples on queries that look hacked
  (:func:`capped_scorer_curve`: the same from a pool and a scorer, as a curve).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ttpkit.errors import ConfigError
from ttpkit.pool import QUERY_ID, USER_ID, ScorerRef, std_col
from ttpkit.scaling._bon import Curve, bootstrap_ci, per_query_curve, scorer_values
from ttpkit.scaling._stats import HACK_THRESHOLD, query_stats, user_spread
from ttpkit.utility import query_corr

__all__ = [
    "COLLAPSED_SHARE",
    "backoff_scores",
    "capped_curve",
    "capped_scorer_curve",
    "failure_measures",
    "hack_suspects",
    "within_query_share",
]

COLLAPSED_SHARE = 0.1  # a user whose scores vary less than this share within queries is collapsed for them


def within_query_share(users: np.ndarray, queries: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    """Per user: the within-query share of the variance of its scores (0 if its scores are constant: nothing to rank by).

    Args:
        users, queries, scores: (R,) per pool row.

    Returns:
        One row per user: ``user_id``, ``within_share`` in [0, 1] and ``score_std``.
    """
    df = pd.DataFrame({USER_ID: users, QUERY_ID: queries, "s": np.asarray(scores, float)})
    dq = df["s"] - df.groupby(QUERY_ID)["s"].transform("mean")
    du = df["s"] - df.groupby(USER_ID)["s"].transform("mean")
    g = pd.DataFrame({USER_ID: df[USER_ID], "w": dq * dq, "t": du * du}).groupby(USER_ID, sort=False).sum()
    share = np.where(g["t"] > 1e-24, g["w"] / g["t"].where(g["t"] > 1e-24, 1.0), 0.0)
    std = df.groupby(USER_ID, sort=False)["s"].std(ddof=0)
    return pd.DataFrame({USER_ID: g.index, "within_share": share, "score_std": std.reindex(g.index).to_numpy()})


def failure_measures(pool: pd.DataFrame, scorer: str | ScorerRef, utility: str, tau: float = 0.05, seed: int = 0) -> dict:
    """Collapse and hacking of one scorer on a labelled pool.

    Returns:
        ``within_share`` (mean over users), ``collapsed_share`` (fraction of users
        below :data:`COLLAPSED_SHARE`), ``c`` (fraction of queries whose user is
        collapsed by the spread rule at ``tau``) and ``hacked`` (fraction of
        queries with ρ_q below :data:`~ttpkit.scaling.HACK_THRESHOLD`).
    """
    r = scorer_values(pool, scorer, utility, seed)
    share = within_query_share(pool[USER_ID].to_numpy(), pool[QUERY_ID].to_numpy(), r)
    qs = query_stats(pool, scorer, utility, tau, seed)
    raw = query_stats(pool, scorer, utility, 0.0, seed)  # rho without zeroing collapsed users
    return {
        "within_share": float(share["within_share"].mean()),
        "collapsed_share": float((share["within_share"] < COLLAPSED_SHARE).mean()),
        "c": float(qs.collapsed.mean()),
        "hacked": float((raw.rho < HACK_THRESHOLD).mean()),
    }


def backoff_scores(
    pool: pd.DataFrame, primary: str, fallback: np.ndarray, tau: float = 0.05, share: float = COLLAPSED_SHARE,
    max_std: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The primary scorer's scores, with ``fallback`` in place of them for users it looks collapsed for.

    A user is backed off when the primary's scores for them spread less than
    ``tau`` times the global spread, when less than ``share`` of their variance
    lies within queries, or (for a probabilistic primary, if ``max_std`` is
    given) when its mean predicted std for them exceeds ``max_std``. None of
    these looks at the utility. Selection compares candidates of one query
    only, so the two scorers need no common scale.

    Returns:
        ``(scores, backed_off)``: (R,) scores and (R,) whether the row's user was backed off.
    """
    sc = ScorerRef.parse(primary)
    if sc.builtin:
        raise ConfigError(f"back-off needs a reward model's scores as the primary, not {primary!r}")
    r = scorer_values(pool, sc, "", 0)
    users, queries = pool[USER_ID].to_numpy(), pool[QUERY_ID].to_numpy()
    flagged = set(user_spread(users, r, queries, tau).query("collapsed")[USER_ID])
    ws = within_query_share(users, queries, r)
    flagged |= set(ws.loc[ws["within_share"] < share, USER_ID])
    col = std_col(sc.name)
    if max_std is not None and col in pool.columns:
        mean_std = pool.groupby(USER_ID)[col].mean()
        flagged |= set(mean_std[mean_std > max_std].index)
    backed = np.isin(users, list(flagged))
    return np.where(backed, np.asarray(fallback, float), r), backed


def hack_suspects(pool: pd.DataFrame, primary: np.ndarray, reference: np.ndarray, threshold: float = HACK_THRESHOLD) -> set:
    """Queries where the primary's scores run against a reference scorer (say MBR consensus): ρ below ``threshold``.

    A label-free stand-in for the hacking detector, usable at test time.
    """
    corr, valid = query_corr(primary, reference, pool[QUERY_ID].to_numpy())
    qids = pd.unique(pool[QUERY_ID])
    return {q for q, c, v in zip(qids, corr, valid) if v and c < threshold}


def capped_curve(qids: Sequence[str], per_query: np.ndarray, ns: Sequence[int], caps: dict[str, int]) -> np.ndarray:
    """Per-query best-of-N values with N capped per query: at N above a query's cap, its value at the cap.

    Args:
        qids: (Q,) query ids in the rows' order.
        per_query: (Q, len(ns)) best-of-N values.
        ns: The N values (ascending).
        caps: Query id to the largest N it may use (a value of ``ns``).
    """
    out = per_query.copy()
    for row, q in enumerate(qids):
        if q in caps:
            k = list(ns).index(caps[q])
            out[row, k + 1 :] = out[row, k]
    return out


def capped_scorer_curve(
    pool: pd.DataFrame, scorer: str | ScorerRef, utility: str, ns: Sequence[int], caps: dict[str, int], seed: int = 0
) -> Curve:
    """The best-of-N curve of a scorer with N capped per query (:func:`capped_curve`), named ``<scorer>+cap``.

    Args:
        pool: Labelled, scored pool.
        scorer: Scorer whose curve is capped.
        utility: Utility column.
        ns: The N values of the curve (ascending).
        caps: Query id to the largest N it may use (say ``{q: 4 for q in hack_suspects(...)}``);
            a cap need not be in ``ns``, but must be at most the pool's M.
        seed: Seed of the ``thompson`` rule and of the bootstrap interval.
    """
    grid = sorted(set(ns) | set(caps.values()))
    qids, pq = per_query_curve(pool, scorer, utility, grid, seed)
    pq = capped_curve(qids, pq, grid, caps)[:, [grid.index(n) for n in ns]]
    lo, hi = bootstrap_ci(pq, seed=seed)
    return Curve(f"{scorer}+cap", tuple(ns), tuple(pq.mean(0)), tuple(lo), tuple(hi), pq.shape[0], pq, tuple(qids))
