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

from ttpkit.errors import ConfigError, DataError
from ttpkit.pool import (
    BUILTIN_SCORERS,
    IDX,
    QUERY_ID,
    Rule,
    Scorer,
    candidates_per_query,
    check_utility,
    sampled,
    score_col,
    scorer_names,
    std_col,
)
from ttpkit.scaling._bootstrap import bootstrap_means
from ttpkit.scaling._soft import soft_best_of_n
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


def bon_weights(m: int, ns: Sequence[int]) -> np.ndarray:
    """Selection probabilities of best-of-N from a pool of ``m``.

    Returns:
        (len(ns), m) array; row k gives, for each ascending score rank i, the
        probability C(i-1, N-1) / C(m, N) that rank i is the best of N draws.
    """
    from scipy.special import gammaln

    ns_arr = np.asarray(ns, dtype=np.int64)
    if np.any(ns_arr < 1) or np.any(ns_arr > m):
        raise ConfigError(f"every N must be in [1, {m}] for pools of {m}; got {list(ns)}")
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
    means = bootstrap_means(per_query, n_boot, seed, scheme="counts")  # (B, K)
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
    query_ids: tuple[str, ...] = field(default=(), repr=False, compare=False)  # the rows of per_query

    def as_dict(self) -> dict[str, float]:
        """``{N: value}`` with string keys (the JSON output of ``ttpkit curves``)."""
        return {str(n): float(v) for n, v in zip(self.ns, self.mean)}


def scorer_values(pool: pd.DataFrame, scorer: str | Scorer, utility: str, seed: int = 0) -> np.ndarray:
    """Scores of each pool row under a scorer (see :class:`ttpkit.pool.Scorer`).

    ``oracle`` is the utility itself. ``random`` is a constant: the tie-aware
    estimator then gives every candidate the same chance, so its curve is the
    exact expectation of uniformly random selection (flat at the pool mean),
    not one noisy draw. Any other name reads ``score_<name>``, and
    ``<name>@<rule>`` applies a selection rule (``user-prob@lcb:1``) to
    ``score_<name>`` and ``std_<name>``.

    Args:
        pool: Labelled pool.
        scorer: Scorer name or parsed scorer.
        utility: Utility column (for ``oracle``).
        seed: Seed of the ``thompson`` rule's draw.

    Raises:
        DataError: If the pool lacks the needed column; the message lists the
            scorers the pool has.
    """
    sc = Scorer.parse(scorer) if isinstance(scorer, str) else scorer
    if sc.name == "oracle":
        return pool[utility].to_numpy(dtype=np.float64)
    if sc.name == "random":
        return np.zeros(len(pool))
    col = score_col(sc.name)
    if col not in pool.columns:
        raise DataError(f"pool has no column {col!r}; scorers available: {', '.join(scorer_names(pool))}")
    mean = _numeric(pool, col)
    if sc.rule is None:
        return mean
    if std_col(sc.name) not in pool.columns:
        if Rule.parse(sc.rule).name in ("mean", "soft"):
            return apply_rule(mean, None, sc.rule, seed)
        raise DataError(f"scorer {str(sc)!r}: the rule needs predicted stds, and the pool has no column "
                        f"{std_col(sc.name)!r} (only probabilistic RMs such as user-prob write one)")
    std = _numeric(pool, std_col(sc.name))
    if not (std >= 0).all():
        raise DataError(f"pool column {std_col(sc.name)!r} holds negative or missing standard deviations")
    return apply_rule(mean, std, sc.rule, seed)


def _numeric(pool: pd.DataFrame, column: str) -> np.ndarray:
    """A pool column as float64, or a DataError naming it (missing values become NaN, checked by the caller)."""
    try:
        return pool[column].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"pool column {column!r} is not numeric") from None


def pool_matrix(pool: pd.DataFrame, values: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Reshape per-row values of a pool with equal-size queries to (Q, M), rows ordered by idx."""
    frame = pd.DataFrame({QUERY_ID: pool[QUERY_ID].to_numpy(), IDX: pool[IDX].to_numpy(), "v": values})
    dup = frame.duplicated([QUERY_ID, IDX])
    if dup.any():
        first = frame[dup].iloc[0]
        raise DataError(f"the pool has {int(dup.sum())} duplicate rows (query_id, idx), the first for query "
                        f"{first[QUERY_ID]!r} candidate {first[IDX]!r}; a resumed pool must not repeat candidates")
    wide = frame.pivot(index=QUERY_ID, columns=IDX, values="v")
    if wide.isna().any().any():
        raise DataError("queries in the pool have different numbers of candidates; use --n up to the smallest pool")
    return list(wide.index), wide.to_numpy()


def _check_finite(pool: pd.DataFrame, column: str) -> None:
    """A numeric column without NaN or infinity, else a DataError naming it."""
    values = _numeric(pool, column)
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise DataError(f"pool column {column!r} has {bad} missing or infinite values")


def per_query_curve(
    pool: pd.DataFrame, scorer: str | Scorer, utility: str, ns: Sequence[int], seed: int = 0, m: int | None = None
) -> tuple[list[str], np.ndarray]:
    """Per-query best-of-N values (Q, len(ns)) for one scorer.

    Args:
        m: Use only the first ``m`` candidates (by idx) of each query; by default all.
    """
    pool = sampled(pool)  # the greedy rows are the baseline, not samples best-of-N draws from
    check_utility(pool, utility)
    _check_finite(pool, utility)
    if m is not None:
        pool = pool[pool[IDX] < m]
    if len(pool) == 0:
        raise DataError("the pool has no candidates")
    sizes = pool.groupby(QUERY_ID)[IDX].nunique()
    m_min = int(sizes.min())
    pool = pool[pool[IDX].isin(sorted(pool[IDX].unique())[:m_min])] if sizes.nunique() > 1 else pool
    qids, u = pool_matrix(pool, pool[utility].to_numpy(dtype=np.float64))
    values = scorer_values(pool, scorer, utility, seed)
    if not np.isfinite(values).all():
        raise DataError(f"scorer {str(scorer)!r} has {int((~np.isfinite(values)).sum())} missing or infinite scores")
    _, r = pool_matrix(pool, values)
    if max(ns) > u.shape[1]:
        raise DataError(f"N={max(ns)} is larger than the pools ({u.shape[1]} candidates per query)")
    sc = Scorer.parse(scorer) if isinstance(scorer, str) else scorer
    rule = Rule.parse(sc.rule) if sc.rule else None
    if rule is not None and rule.name == "soft":  # the answer is drawn by softmax among the N: its own exact estimator
        sd = float(np.std(values))
        return qids, soft_best_of_n(r, u, ns, rule.tau * sd) if sd > 0 else best_of_n(r, u, ns)
    return qids, best_of_n(r, u, ns)


def curves(
    pool: pd.DataFrame,
    scorers: Sequence[str | Scorer],
    utility: str = "rougeL",
    ns: Sequence[int] = (1, 2, 4, 8),
    seed: int = 0,
    n_boot: int = 1000,
) -> dict[str, Curve]:
    """Best-of-N curves of several scorers on one labelled pool.

    Returns:
        ``{scorer: Curve}`` in the order given.
    """
    candidates_per_query(pool)  # an empty pool is an error; uneven candidate counts are a warning
    out = {}
    for scorer in scorers:
        qids, pq = per_query_curve(pool, scorer, utility, ns, seed)
        lo, hi = bootstrap_ci(pq, n_boot=n_boot, seed=seed)
        out[str(scorer)] = Curve(
            scorer=str(scorer),
            ns=tuple(int(n) for n in ns),
            mean=tuple(float(v) for v in pq.mean(axis=0)),
            lo=tuple(float(v) for v in lo),
            hi=tuple(float(v) for v in hi),
            n_queries=pq.shape[0],
            per_query=pq,
            query_ids=tuple(qids),
        )
    return out
