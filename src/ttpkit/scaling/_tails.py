"""Tail estimators of the ``dist`` form (:mod:`ttpkit.scaling._dist`): a Pareto tail, a separated top cluster, a per-query share.

- :func:`gpd_pwm`: a generalized Pareto distribution from its excesses, by probability-weighted moments.
- :func:`top_cluster`: the candidates a normal bulk cannot explain (an empirical-null threshold).
- :func:`beta_binomial`: a Beta law of per-query shares from per-query counts, by moments.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MAX_CLUSTER", "beta_binomial", "gpd_pwm", "top_cluster"]

MAX_CLUSTER = 0.25  # a top cluster holds at most this share of candidates


def gpd_pwm(excess: np.ndarray) -> tuple[float, float]:
    """(xi, beta) of a generalized Pareto distribution from its excesses, by probability-weighted moments.

    Hosking & Wallis (1987): with a0 = mean and a1 = E[Y (1 - F(Y))],
    xi = 2 - a0 / (a0 - 2 a1) and beta = 2 a0 a1 / (a0 - 2 a1). Closed form,
    so a bootstrap of many refits stays cheap; xi is clipped to [-0.5, 0.5],
    where the estimator is well behaved.
    """
    y = np.sort(np.asarray(excess, dtype=np.float64))
    n = len(y)
    if n < 3 or y[-1] <= 0:
        return 0.0, float(max(y.mean(), 1e-9)) if n else 1e-9
    a0 = float(y.mean())
    a1 = float((y * (n - 1 - np.arange(n)) / (n - 1)).mean())
    den = a0 - 2 * a1
    if den <= 1e-12:
        return 0.5, float(max(a0 * 0.5, 1e-9))
    xi = float(np.clip(2 - a0 / den, -0.5, 0.5))
    beta = float(max(2 * a0 * a1 / den, 1e-9))
    return xi, beta


def top_cluster(z: np.ndarray) -> np.ndarray:
    """Members of a separated top cluster of pooled scores: the candidates a normal bulk cannot explain.

    The bulk is a normal with the pooled median and the IQR's scale (an
    empirical null, robust to the cluster); a candidate is a member when its z
    lies above the level that n bulk draws exceed 2 times in expectation, and
    the cluster is kept when it has at least 3 members and at most
    :data:`MAX_CLUSTER` of the candidates (settings fixed on the synthetic
    populations of :mod:`ttpkit.scaling._synthetic`, never on a test pool).
    """
    from scipy.stats import norm

    n = len(z)
    none = np.zeros(n, dtype=bool)
    if n < 30:
        return none
    q1, med, q3 = np.quantile(z, [0.25, 0.5, 0.75])
    s0 = (q3 - q1) / 1.349
    if s0 <= 0:
        return none
    members = z > med + s0 * norm.isf(2.0 / n)
    if members.sum() < 3 or members.mean() > MAX_CLUSTER:
        return none
    return members


def beta_binomial(counts: np.ndarray, m: int) -> tuple[float, float]:
    """(a, b) of a Beta law of per-query shares from counts out of ``m`` (method of moments; infinite: no overdispersion)."""
    p = float(counts.mean()) / m
    if not 0 < p < 1 or m < 2:
        return float("inf"), float("inf")
    ratio = float(counts.var()) / (m * p * (1 - p))
    rho = (ratio - 1) / (m - 1)
    if rho <= 1e-3:
        return float("inf"), float("inf")
    total = 1 / min(rho, 0.99) - 1
    return p * total, (1 - p) * total
