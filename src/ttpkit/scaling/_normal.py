"""Moments of the maximum of N iid standard normals (re-exported by :mod:`ttpkit.scaling`).

e_N = E[max of N] and v_N = E[max^2 of N] are the constants the law's forms
scale with (``docs/theory.md``); both are integrals of x^p N φ(x) Φ(x)^(N-1),
computed by quadrature once per (N, p) and cached.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from ttpkit.errors import ConfigError

__all__ = ["expected_max_normal", "expected_sq_max_normal"]


@lru_cache(maxsize=None)
def _max_normal_moment(n: int, power: int) -> float:
    """E[(max of N iid standard normals)^power] = ∫ x^power N φ(x) Φ(x)^(N-1) dx, by quadrature."""
    from scipy import integrate, special

    if n < 1:
        raise ConfigError(f"N must be >= 1, got {n}")
    log_n = np.log(n) - 0.5 * np.log(2 * np.pi)

    def f(x: float) -> float:  # x^p * N * phi(x) * Phi(x)^(N-1), in logs for large N
        return x**power * np.exp(log_n - 0.5 * x * x + (n - 1) * special.log_ndtr(x))

    value, _ = integrate.quad(f, -12, 12, limit=200, epsabs=1e-12, epsrel=1e-12)
    return float(value)


def expected_max_normal(n: int) -> float:
    """e_N = E[max of N iid standard normals] (e_1 = 0)."""
    return 0.0 if n == 1 else _max_normal_moment(int(n), 1)


def expected_sq_max_normal(n: int) -> float:
    """v_N = E[(max of N iid standard normals)^2] (v_1 = 1)."""
    return 1.0 if n == 1 else _max_normal_moment(int(n), 2)


def _e(ns: Sequence[int]) -> np.ndarray:
    """(len(ns),) e_N for each N."""
    return np.array([expected_max_normal(int(n)) for n in ns])


def _v(ns: Sequence[int]) -> np.ndarray:
    """(len(ns),) v_N for each N."""
    return np.array([expected_sq_max_normal(int(n)) for n in ns])
