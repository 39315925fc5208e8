"""Best-of-N curves from candidate pools, computed exactly (re-exported by :mod:`ttpkit.scaling`).

For a pool of M candidates with scores r and utilities u, best-of-N draws N of
them without replacement and keeps the highest-scored one. Sorting by score
ascending, the i-th candidate (1-based) is the kept one with probability
C(i-1, N-1) / C(M, N). Tied scores are broken uniformly at random, which is the
same as giving each member of a tie group the group's mean utility. The
expected utility is then a weighted sum, so a whole curve is one matrix product
per pool size (see ``docs/theory.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import gammaln

from ttpkit.errors import DataError
from ttpkit.selection import apply_rule

__all__ = [
    "BUILTIN_SCORERS",
    "Curve",
    "best_of_n",
    "bon_weights",
    "bootstrap_ci",
    "curves",
    "per_query_curve",
    "pool_matrix",
    "scorer_values",
]

BUILTIN_SCORERS = ("oracle", "random")


def bon_weights(m: int, ns: Sequence[int]) -> np.ndarray:
    """Selection probabilities of best-of-N from a pool of ``m``.

    Returns:
        (len(ns), m) array; row k gives, for each ascending score rank i, the
        probability C(i-1, N-1) / C(m, N) that rank i is the best of N draws.
    """
    ns_arr = np.asarray(ns, dtype=np.int64)
    if np.any(ns_arr < 1) or np.any(ns_arr > m):
        raise ValueError(f"every N must be in [1, {m}] for pools of {m}; got {list(ns)}")
    i = np.arange(1, m + 1)[None, :]  # (1, m)
    n = ns_arr[:, None]  # (K, 1)
    ok = i >= n
    a, b = np.maximum(i - 1, 0), np.maximum(n - 1, 0)
    log_num = gammaln(a + 1) - gammaln(b + 1) - gammaln(np.maximum(a - b, 0) + 1)
    log_den = gammaln(m + 1) - gammaln(n + 1) - gammaln(m - n + 1)
    return np.where(ok, np.exp(log_num - log_den), 0.0)


def _tie_means(scores: np.ndarray, utils: np.ndarray) -> np.ndarray:
    """Sort rows by score and replace each tie group's utilities by their mean. (Q, M) -> (Q, M)."""
    order = np.argsort(scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)
    u = np.take_along_axis(utils, order, axis=1)
    q, m = s.shape
    new_group = np.ones((q, m), dtype=bool)
    new_group[:, 1:] = s[:, 1:] != s[:, :-1]
    gid = np.cumsum(new_group, axis=1) - 1 + (np.arange(q) * m)[:, None]  # globally unique group ids
    flat = gid.ravel()
    sums = np.bincount(flat, weights=u.ravel(), minlength=q * m)
    counts = np.bincount(flat, minlength=q * m)
    return (sums[flat] / counts[flat]).reshape(q, m)


def best_of_n(scores: np.ndarray, utils: np.ndarray, ns: Sequence[int]) -> np.ndarray:
    """Expected utility of best-of-N for each query, exactly.

    Args:
        scores: (Q, M) selection scores.
        utils: (Q, M) utilities of the same candidates.
        ns: The N values, each in [1, M].

    Returns:
        (Q, len(ns)) expected utility of the top-scored of N candidates drawn
        without replacement.
    """
    scores = np.asarray(scores, dtype=np.float64)
    utils = np.asarray(utils, dtype=np.float64)
    if scores.shape != utils.shape or scores.ndim != 2:
        raise ValueError(f"scores and utils must be equal (Q, M) arrays; got {scores.shape} and {utils.shape}")
    if np.isnan(scores).any() or np.isnan(utils).any():
        raise ValueError("scores and utils must not contain NaN")
    return _tie_means(scores, utils) @ bon_weights(scores.shape[1], ns).T


def bootstrap_ci(
    per_query: np.ndarray, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap interval of the mean over queries.

    Args:
        per_query: (Q, K) per-query values.
        n_boot: Bootstrap resamples of the queries.
        alpha: 1 - coverage.
        seed: Seed of the resampling.

    Returns:
        (lo, hi), each of shape (K,).
    """
    q = per_query.shape[0]
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(q, np.full(q, 1.0 / q), size=n_boot)  # (B, Q)
    means = counts @ per_query / q  # (B, K)
    return np.quantile(means, alpha / 2, axis=0), np.quantile(means, 1 - alpha / 2, axis=0)


@dataclass(frozen=True)
class Curve:
    """A best-of-N curve averaged over queries, with a bootstrap interval."""

    scorer: str
    ns: tuple[int, ...]
    mean: tuple[float, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    n_queries: int
    per_query: np.ndarray = field(repr=False, compare=False)

    def as_dict(self) -> dict[str, float]:
        """``{N: value}`` with string keys (the JSON output of ``ttpkit curves``)."""
        return {str(n): float(v) for n, v in zip(self.ns, self.mean)}


def scorer_values(pool: pd.DataFrame, scorer: str, utility: str, seed: int = 0) -> np.ndarray:
    """Scores of each pool row under a scorer name.

    ``oracle`` is the utility itself, ``random`` is seeded uniform noise, and any
    other name reads the ``score_<name>`` column. ``<name>@<rule>`` applies a
    selection rule (``user-prob@lcb:1``) to ``score_<name>`` and ``std_<name>``.

    Raises:
        DataError: If the pool lacks the needed column; the message lists the
            scorers the pool has.
    """
    if scorer == "oracle":
        return pool[utility].to_numpy(dtype=np.float64)
    if scorer == "random":
        return np.random.default_rng(seed).random(len(pool))
    name, _, rule = scorer.partition("@")
    col = f"score_{name}"
    if col not in pool.columns:
        have = list(BUILTIN_SCORERS) + [c[len("score_") :] for c in pool.columns if c.startswith("score_")]
        raise DataError(f"pool has no column {col!r}; scorers available: {', '.join(have)}")
    mean = pool[col].to_numpy(dtype=np.float64)
    if not rule:
        return mean
    std_col = f"std_{name}"
    std = pool[std_col].to_numpy(dtype=np.float64) if std_col in pool.columns else None
    return apply_rule(mean, std, rule, seed)


def pool_matrix(pool: pd.DataFrame, values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Reshape per-row values of a pool with equal-size queries to (Q, M), rows ordered by idx."""
    frame = pd.DataFrame({"query_id": pool["query_id"].to_numpy(), "idx": pool["idx"].to_numpy(), "v": values})
    wide = frame.pivot(index="query_id", columns="idx", values="v")
    if wide.isna().any().any():
        raise DataError("queries in the pool have different numbers of candidates; use --n up to the smallest pool")
    return list(wide.index), wide.to_numpy()


def per_query_curve(
    pool: pd.DataFrame, scorer: str, utility: str, ns: Sequence[int], seed: int = 0, m: int | None = None
) -> tuple[list[str], np.ndarray]:
    """Per-query best-of-N values (Q, len(ns)) for one scorer.

    Args:
        m: Use only the first ``m`` candidates (by idx) of each query; by default all.
    """
    if utility not in pool.columns:
        raise DataError(f"pool has no utility column {utility!r}; run `ttpkit label` first")
    if m is not None:
        pool = pool[pool["idx"] < m]
    sizes = pool.groupby("query_id")["idx"].nunique()
    m_min = int(sizes.min())
    pool = pool[pool["idx"].isin(sorted(pool["idx"].unique())[:m_min])] if sizes.nunique() > 1 else pool
    qids, u = pool_matrix(pool, pool[utility].to_numpy(dtype=np.float64))
    _, r = pool_matrix(pool, scorer_values(pool, scorer, utility, seed))
    if max(ns) > u.shape[1]:
        raise DataError(f"N={max(ns)} is larger than the pools ({u.shape[1]} candidates per query)")
    return qids, best_of_n(r, u, ns)


def curves(
    pool: pd.DataFrame,
    scorers: Sequence[str],
    utility: str = "rougeL",
    ns: Sequence[int] = (1, 2, 4, 8),
    seed: int = 0,
    n_boot: int = 1000,
) -> dict[str, Curve]:
    """Best-of-N curves of several scorers on one labelled pool.

    Returns:
        ``{scorer: Curve}`` in the order given.
    """
    out = {}
    for scorer in scorers:
        _, pq = per_query_curve(pool, scorer, utility, ns, seed)
        lo, hi = bootstrap_ci(pq, n_boot=n_boot, seed=seed)
        out[scorer] = Curve(
            scorer=scorer,
            ns=tuple(int(n) for n in ns),
            mean=tuple(float(v) for v in pq.mean(axis=0)),
            lo=tuple(float(v) for v in lo),
            hi=tuple(float(v) for v in hi),
            n_queries=pq.shape[0],
            per_query=pq,
        )
    return out
