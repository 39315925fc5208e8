"""P2: exact best-of-N curves, 10,000 queries x M=64, all N=1..64, against Monte-Carlo resampling.

Prints the exact estimator's wall time; then, from a timed Monte-Carlo run, the
draws per (query, N) that resampling needs to match a target accuracy (mean
curve within 1e-3 or 1e-4, or per-query curves within 1e-2 RMS) and the time
that takes; the exact estimator's own error is float rounding.
Run: python benchmarks/p2_curves.py
"""

from __future__ import annotations

import time

import numpy as np

from ttpkit.scaling import best_of_n

Q, M = 10_000, 64
NS = list(range(1, M + 1))


def monte_carlo(scores: np.ndarray, utils: np.ndarray, ns: list[int], draws: int, seed: int = 0) -> np.ndarray:
    """Per-query best-of-N utility by resampling N-subsets, (Q, len(ns)), vectorized over queries."""
    rng = np.random.default_rng(seed)
    q, m = scores.shape
    out = np.zeros((q, len(ns)))
    rows = np.arange(q)[:, None]
    for k, n in enumerate(ns):
        for _ in range(draws):
            idx = np.argsort(rng.random((q, m)), axis=1)[:, :n]  # a uniform n-subset per query
            best = idx[np.arange(q), np.argmax(scores[rows, idx], axis=1)]
            out[:, k] += utils[np.arange(q), best]
    return out / draws


def main() -> None:
    rng = np.random.default_rng(0)
    utils = rng.beta(0.8, 4.0, size=(Q, M))  # ROUGE-like: mass near 0, long right tail
    scores = 0.5 * utils + 0.1 * rng.standard_normal((Q, M))
    t0 = time.perf_counter()
    exact = best_of_n(scores, utils, NS)  # (Q, 64) per-query curves
    t_exact = time.perf_counter() - t0
    print(f"exact: {Q} queries x M={M}, all N=1..{M}: {t_exact:.3f} s")
    probe = [1, 2, 4, 8, 16, 32, 64]
    cols = [n - 1 for n in probe]
    draws = 16
    t0 = time.perf_counter()
    mc = monte_carlo(scores, utils, probe, draws)
    t_probe = time.perf_counter() - t0
    per_draw_all_n = t_probe / draws * len(NS) / len(probe)  # seconds per draw for every N=1..64
    mean_err = np.abs(mc.mean(0) - exact[:, cols].mean(0)).max()
    query_rms = np.sqrt(((mc - exact[:, cols]) ** 2).mean(0)).max()
    print(f"monte-carlo, {draws} draws per (query, N): mean-curve max error {mean_err:.1e}, per-query RMS error {query_rms:.1e}")
    # Monte-Carlo error falls as 1/sqrt(draws): the draws needed for a target follow from the measured error.
    targets = (("mean curve, max error", mean_err, 1e-3), ("mean curve, max error", mean_err, 1e-4), ("per-query curves, RMS", query_rms, 1e-2))
    for what, err, target in targets:
        need = max(1, int(np.ceil(draws * (err / target) ** 2)))
        t_mc = need * per_draw_all_n
        print(f"{what} < {target:g}: {need} draws, about {t_mc:.1f} s -> exact is {t_mc / t_exact:.0f}x faster")


if __name__ == "__main__":
    main()
