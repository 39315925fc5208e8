"""The one bootstrap over queries, and the intervals built on it (re-exported by :mod:`ttpkit.scaling`).

Every interval of :mod:`ttpkit.scaling` resamples the Q queries with
replacement. Two draw schemes exist because recorded numbers depend on each
(:data:`SCHEMES`):

- ``counts``: one multinomial draw of (B, Q) counts, so B means are one matrix
  product; the bands of every :class:`~ttpkit.scaling.Curve`
  (:func:`ttpkit.scaling.bootstrap_ci`).
- ``indices``: ``rng.integers(0, Q, Q)`` per resample; everything else
  (:func:`peak_drop_ci`, :func:`curve_moves`, the bend's curvature bound in
  :func:`ttpkit.scaling.fit_law`, :func:`paired_share_diff`).

:func:`bootstrap_means` gives resampled means of per-query rows under either
scheme; :func:`bootstrap_stat` applies any statistic to the ``indices`` draws.
:func:`user_share_boot` resamples users rather than queries (each drawn user
brings all of their queries; ``counts`` draws over the users): the share of the
oracle gain on users a reward model never saw, in the bundled models' cards
(:func:`ttpkit.reward.bundled.measure_card`) and the default RM's cross-validation.
This module is a leaf (numpy only), so the best-of-N estimator can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ttpkit.errors import ConfigError

__all__ = ["SCHEMES", "bootstrap_means", "bootstrap_stat", "curve_moves", "paired_share_diff", "peak_drop_ci",
           "user_share_boot"]

SCHEMES = ("indices", "counts")


def _indices(q: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """``n_boot`` resamples of range(q), each (q,), drawn one call at a time (the draws of the ``indices`` scheme)."""
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        yield rng.integers(0, q, q)


def bootstrap_means(values: np.ndarray, n_boot: int = 1000, seed: int = 0, scheme: str = "indices") -> np.ndarray:
    """Means over resampled queries of per-query values.

    Args:
        values: (Q, ...) one row per query.
        n_boot: Resamples.
        seed: Seed of the draws.
        scheme: A scheme of :data:`SCHEMES`.

    Returns:
        (n_boot, ...) the mean of each resample.

    Raises:
        ConfigError: For an unknown scheme.
    """
    values = np.asarray(values)
    q = len(values)
    if scheme == "counts":
        counts = np.random.default_rng(seed).multinomial(q, np.full(q, 1.0 / q), size=n_boot)  # (B, Q)
        return counts @ values / q  # (B, ...)
    if scheme != "indices":
        raise ConfigError(f"unknown bootstrap scheme {scheme!r}; known schemes: {', '.join(SCHEMES)}")
    return np.array([values[idx].mean(0) for idx in _indices(q, n_boot, seed)])


def bootstrap_stat(stat: Callable[[np.ndarray], float], q: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """(n_boot,) ``stat(idx)`` for each resample ``idx`` (Q indices) of the ``indices`` scheme."""
    return np.array([stat(idx) for idx in _indices(q, n_boot, seed)])


def peak_drop_ci(per_query: np.ndarray, k: int, seed: int = 0, n_boot: int = 1000) -> tuple[float, float]:
    """95% paired bootstrap interval (over queries) of curve[k] - curve[-1] from a (Q, len(ns)) per-query curve."""
    means = bootstrap_means(per_query[:, k] - per_query[:, -1], n_boot, seed)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def curve_moves(per_query: np.ndarray, seed: int = 0, n_boot: int = 1000) -> bool:
    """Whether a curve moves by more than its 95% CI: for some N, the paired bootstrap CI of E_N - E_1 excludes 0."""
    means = bootstrap_means(per_query - per_query[:, :1], n_boot, seed)  # (B, len(ns))
    lo, hi = np.quantile(means, [0.025, 0.975], axis=0)
    return bool(np.any((lo > 1e-12) | (hi < -1e-12)))  # a flat curve's float noise is not a move


def paired_share_diff(
    base: np.ndarray, fix: np.ndarray, oracle: np.ndarray, seed: int, n_boot: int = 2000
) -> tuple[float, float, float]:
    """Share-of-oracle-gain difference (fix - base) at the largest N, with a paired bootstrap 95% CI over queries.

    The share of a curve is (E_N - E_1) / (oracle E_N - oracle E_1) at the
    largest N, NaN where the oracle gains nothing (such resamples are left out
    of the interval).

    Args:
        base, fix, oracle: (Q, len(ns)) per-query curves on the same queries, in the same order.
        seed: Seed of the resampling.
        n_boot: Resamples.

    Returns:
        ``(diff, lo, hi)``: the difference on all queries and its interval.
    """
    q = len(oracle)

    def share(pq: np.ndarray, idx: np.ndarray) -> np.ndarray:  # idx (..., Q): one share per resample
        gain = oracle[idx, -1].mean(-1) - oracle[idx, 0].mean(-1)
        ok = gain > 0
        return np.where(ok, (pq[idx, -1].mean(-1) - pq[idx, 0].mean(-1)) / np.where(ok, gain, 1.0), np.nan)

    full = np.arange(q)
    idx = np.stack(list(_indices(q, n_boot, seed)))  # (B, Q), the same draws as bootstrap_stat's loop
    diffs = share(fix, idx) - share(base, idx)
    lo, hi = np.nanquantile(diffs, [0.025, 0.975])
    return float(share(fix, full) - share(base, full)), float(lo), float(hi)


def user_share_boot(gains: np.ndarray, oracle_gain: np.ndarray, users: np.ndarray, n_boot: int, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Shares of the oracle gain on all queries, and on ``n_boot`` resamples of the users.

    Args:
        gains: (C, Q) E_N - E_1 of C scorers on the same Q queries.
        oracle_gain: (Q,) the oracle's E_N - E_1.
        users: (Q,) each query's user; users are drawn with replacement, each with all of its queries
            (the same draws for every scorer, so differences are paired).
        n_boot: Resamples.
        seed: Seed of the draws.

    Returns:
        ``(share, boot)``: (C,) sum of gains over sum of oracle gains, and (B, C) the same per resample.
    """
    _, codes = np.unique(users, return_inverse=True)  # sorted users: the draws do not depend on row order
    n_users = int(codes.max()) + 1
    g = np.stack([np.bincount(codes, weights=row, minlength=n_users) for row in np.atleast_2d(gains)])  # (C, U)
    o = np.bincount(codes, weights=oracle_gain, minlength=n_users)  # (U,)
    counts = np.random.default_rng(seed).multinomial(n_users, np.full(n_users, 1.0 / n_users), size=n_boot)  # (B, U)
    return g.sum(1) / o.sum(), (counts @ g.T) / (counts @ o)[:, None]
