"""Soft best-of-N, computed exactly: draw N of M candidates, then pick one with probability softmax(score / λ).

Hard best-of-N keeps the top-scored of the N drawn; soft best-of-N (Verdun et
al. 2025) samples the answer from softmax(r / λ) over them, so an over-confident
scorer cannot push all of its mass onto one hacked candidate. λ → 0 is hard
best-of-N, λ → ∞ random selection.

**The expectation.** Let w_i = exp(r_i / λ) and S a uniform N-subset. Then

    E[u] = Σ_i u_i · P(i ∈ S) · E_T[ w_i / (w_i + W_T) ],   P(i ∈ S) = N / M,

where T = S \\ {i} is a uniform (N-1)-subset of the other M-1 candidates and
W_T its weight. With 1/x = ∫_0^∞ e^{-tx} dt and E_T[e^{-t W_T}] = ā_{N-1}(e^{-t w})
(ā_k: the mean over k-subsets of the product of their z_j, the normalised
elementary symmetric polynomial), the substitution y = e^{-t w_i} gives

    E_T[ w_i / (w_i + W_T) ] = ∫_0^1 ā_{N-1}( { y^{w_j / w_i} }_{j ≠ i} ) dy.

The integrand lies in [0, 1]; ā_k for every k comes from one pass of the
recurrence ā_k ← ((n - k) ā_k + k z ā_{k-1}) / n (a convex combination, so it
stays in range for any M). The integral is taken by Gauss-Legendre on panels
that crowd towards both ends, where y^{w_j/w_i} bends sharply; it matches
enumeration of every subset to 1e-10 (``tests/test_scaling.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ttpkit.errors import ConfigError

__all__ = ["soft_best_of_n"]


@lru_cache(maxsize=4)
def _nodes(per_panel: int = 12, depth: int = 14) -> tuple[np.ndarray, np.ndarray]:
    """Quadrature nodes and weights on [0, 1], panels at 10^-k and 1 - 10^-k (k = 1..depth)."""
    edges = sorted({0.0, 0.5, 1.0, *(10.0**-k for k in range(1, depth + 1)), *(1 - 10.0**-k for k in range(1, 16))})
    x, w = np.polynomial.legendre.leggauss(per_panel)
    xs, ws = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        xs.append(a + (b - a) * (x + 1) / 2)
        ws.append((b - a) / 2 * w)
    return np.concatenate(xs), np.concatenate(ws)


def _subset_means(z: np.ndarray, kmax: int) -> np.ndarray:
    """ā_k for k = 0..kmax of the last axis of z: (..., n) -> (..., kmax + 1)."""
    shape = z.shape[:-1]
    a = np.zeros((*shape, kmax + 1))
    a[..., 0] = 1.0
    for n in range(1, z.shape[-1] + 1):  # add element n-1 to a set of n-1
        zn = z[..., n - 1 : n]
        k = np.arange(1, min(n, kmax) + 1)
        a[..., k] = ((n - k) * a[..., k] + k * zn * a[..., k - 1]) / n
    return a


def _choice_probabilities(scores: np.ndarray, lam: float, ns: Sequence[int]) -> np.ndarray:
    """(len(ns), M): P(candidate i is the answer) for one pool of M."""
    m = len(scores)
    r = (scores - scores.max()) / lam
    y, wq = _nodes()
    out = np.zeros((len(ns), m))
    for i in range(m):  # one candidate at a time: (nodes, M) arrays stay in cache (3x faster than all at once)
        ratio = np.exp(np.minimum(np.delete(r, i) - r[i], 700.0))  # w_j / w_i, (M-1,); y**e^700 is 0 below y = 1
        with np.errstate(under="ignore"):
            z = y[:, None] ** ratio[None, :]  # (nodes, M-1)
        integral = wq @ _subset_means(z, max(ns) - 1)  # (max N,): E_T[w_i / (w_i + W_T)] for |T| = 0..max N - 1
        out[:, i] = [n / m * integral[n - 1] for n in ns]
    return out


def soft_best_of_n(scores: np.ndarray, utils: np.ndarray, ns: Sequence[int], lam: float) -> np.ndarray:
    """Expected utility of soft best-of-N for each query, exactly (see the module docstring).

    Args:
        scores: (Q, M) scores.
        utils: (Q, M) utilities.
        ns: N values, each in [1, M].
        lam: Softmax temperature in score units (> 0).

    Returns:
        (Q, len(ns)) expected utilities.
    """
    scores, utils = np.asarray(scores, float), np.asarray(utils, float)
    if not lam > 0:
        raise ConfigError(f"soft best-of-N needs a temperature > 0, got {lam}")
    q, m = scores.shape
    if min(ns) < 1 or max(ns) > m:
        raise ConfigError(f"every N must be in [1, {m}] for pools of {m}; got {list(ns)}")
    out = np.zeros((q, len(ns)))
    for row in range(q):
        out[row] = _choice_probabilities(scores[row], lam, ns) @ utils[row]
    return out
