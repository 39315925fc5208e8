"""P2: exact best-of-N curves, 10,000 queries x M=64, all N=1..64, against Monte-Carlo resampling.

Prints the exact estimator's wall time, then the number of Monte-Carlo draws per
(query, N) that reaches the same accuracy (max abs error of the mean curve below
the target) and its wall time, and the ratio. Run: python benchmarks/p2_curves.py
"""

from __future__ import annotations

import time

import numpy as np

from ttpkit.scaling import best_of_n

Q, M = 10_000, 64
NS = list(range(1, M + 1))


def monte_carlo(scores: np.ndarray, utils: np.ndarray, ns: list[int], draws: int, seed: int = 0) -> np.ndarray:
    """Mean best-of-N utility over queries by resampling N-subsets (vectorized over queries)."""
    rng = np.random.default_rng(seed)
    q, m = scores.shape
    out = np.zeros(len(ns))
    rows = np.arange(q)[:, None]
    for k, n in enumerate(ns):
        total = 0.0
        for _ in range(draws):
            idx = np.argsort(rng.random((q, m)), axis=1)[:, :n]  # a uniform n-subset per query
            best = np.argmax(scores[rows, idx], axis=1)
            total += utils[rows[:, 0], idx[np.arange(q), best]].mean()
        out[k] = total / draws
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    utils = rng.beta(0.8, 4.0, size=(Q, M))  # ROUGE-like: mass near 0, long right tail
    scores = 0.5 * utils + 0.1 * rng.standard_normal((Q, M))
    t0 = time.perf_counter()
    exact = best_of_n(scores, utils, NS).mean(0)
    t_exact = time.perf_counter() - t0
    print(f"exact: {Q} queries x M={M}, N=1..{M}: {t_exact:.3f} s")
    # Monte-Carlo accuracy: the exact curve's own precision is float64; ask MC for 1e-3 (a tenth of a ROUGE point)
    target = 1e-3
    ns_probe = [1, 2, 4, 8, 16, 32, 64]
    for draws in (1, 2, 4, 8, 16):
        t0 = time.perf_counter()
        mc = monte_carlo(scores, utils, ns_probe, draws)
        t_mc_probe = time.perf_counter() - t0
        err = np.abs(mc - exact[[n - 1 for n in ns_probe]]).max()
        t_mc_all = t_mc_probe * len(NS) / len(ns_probe)  # every N=1..64 costs about the same per N
        print(f"monte-carlo draws={draws:2d}: max error {err:.2e}, est. {t_mc_all:.1f} s for N=1..{M}")
        if err < target:
            break
    print(f"ratio (monte-carlo at max error < {target:g} / exact): {t_mc_all / t_exact:.0f}x")


if __name__ == "__main__":
    main()
