"""Adaptive best-of-N, evaluated offline on labelled pools (re-exported by :mod:`ttpkit.scaling`).

``ttpkit personalize --adaptive`` samples a query in rounds and stops when the
next round's expected gain (:func:`ttpkit.selection.round_gain`) falls
below a threshold (``min_round_gain``). :func:`adaptive_curve` replays that rule on a pool of M
candidates per query: for many random orders of each query's candidates it
reveals them round by round, stops where the rule would, and keeps the
highest-scored candidate seen. Averaging over orders gives the expected
utility and the mean samples per query of each threshold, to compare with
the exact fixed-N curve of the same scorer.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ttpkit.errors import ConfigError
from ttpkit.pool import ScorerRef
from ttpkit.scaling._bon import bootstrap_ci, pool_matrix, scorer_values
from ttpkit.selection import round_gain

__all__ = ["adaptive_curve"]


def adaptive_curve(
    pool: pd.DataFrame,
    scorer: str | ScorerRef,
    thresholds: Sequence[float],
    utility: str = "rougeL",
    round_size: int = 4,
    max_n: int | None = None,
    n_orders: int = 200,
    scale: float | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Expected utility and mean samples per query of adaptive stopping at each threshold.

    Args:
        pool: Labelled, scored pool (M candidates per query).
        scorer: Scorer (its selection values, rule applied).
        thresholds: Values of ``min_round_gain``: stop when the next round's
            expected gain (:func:`ttpkit.selection.round_gain`), in units of
            ``scale``, is below it.
        utility: Utility column.
        round_size: Candidates per round (the first round too).
        max_n: Most candidates per query (default and at most: M).
        n_orders: Random orders of each query's candidates averaged over.
        scale: Unit of the gain (default: the scorer's std over the pool, what
            a bundled model's card stores).
        seed: Seed of the orders and of the bootstrap.

    Returns:
        One row per threshold: ``threshold, mean_n, utility, lo, hi``
        (95% bootstrap interval over queries).
    """
    values = scorer_values(pool, scorer, utility, seed)
    _, r = pool_matrix(pool, values)
    _, u = pool_matrix(pool, pool[utility].to_numpy(dtype=np.float64))
    q, m = r.shape
    max_n = min(max_n or m, m)
    if not 1 <= round_size <= max_n:
        raise ConfigError(f"round_size must be in [1, {max_n}], got {round_size}")
    unit = scale if scale is not None else float(np.std(values))
    stops = list(range(round_size, max_n, round_size)) + [max_n]  # sample sizes after each round
    rng = np.random.default_rng(seed)
    th = np.asarray(thresholds, dtype=np.float64)
    used = np.zeros((q, len(th)))
    got = np.zeros((q, len(th)))
    for i in range(q):
        for _ in range(n_orders):
            order = rng.permutation(m)[:max_n]
            rs, us = r[i, order], u[i, order]
            # the gain each round would expect, computed once for every threshold
            gains = [round_gain(rs[:k], max_n, round_size, unit) for k in stops]
            for j, t in enumerate(th):
                k = next(s for s, g in zip(stops, gains) if g < t)
                used[i, j] += k
                got[i, j] += us[int(np.argmax(rs[:k]))]
    used /= n_orders
    got /= n_orders
    lo, hi = bootstrap_ci(got, seed=seed)
    return pd.DataFrame({"threshold": th, "mean_n": used.mean(0), "utility": got.mean(0), "lo": lo, "hi": hi})
