"""Best-of-N against greedy for a scorer whose scores depend on the draw, by Monte Carlo over draws.

A scorer that standardizes its signals over the N drawn candidates, or that
compares each with the others drawn (within-draw MBR), gives a candidate
another score in another draw, so the exact estimator of
:mod:`ttpkit.scaling._greedy` does not apply. Here each query's N-subsets are
drawn ``draws`` times (seeded), the scorer picks one candidate in each, and
the picks' utilities are compared with the query's greedy answer. The
Monte Carlo error of a query's value is at most 0.5 / sqrt(draws) of the
utility range; the bootstrap over queries then gives the interval as usual.
"""

from __future__ import annotations

from math import comb
from typing import Any, Sequence

import numpy as np
import pandas as pd

from ttpkit.errors import ConfigError, DataError
from ttpkit.pool import greedy_mask
from ttpkit.reward.stack import query_draws
from ttpkit.scaling._bootstrap import bootstrap_means
from ttpkit.scaling._greedy import MODES, VersusGreedy

__all__ = ["draw_versus_greedy"]


def draw_versus_greedy(
    pool: pd.DataFrame,
    scorer: Any,
    utility: str = "rougeL",
    ns: Sequence[int] = (1, 2, 4, 8),
    mode: str = "with-greedy",
    draws: int = 200,
    seed: int = 0,
    n_boot: int = 1000,
    name: str = "stacked",
) -> VersusGreedy:
    """Best-of-N of a draw-dependent scorer (``scorer.score_draw(base, sim)``, ``scorer.rm``) against each query's greedy row.

    Args:
        pool: Labelled pool with greedy rows (and the scorer's RM column).
        scorer: E.g. a fitted :class:`~ttpkit.reward.stack.StackedScorer`.
        utility: Utility column.
        ns: N values; in ``with-greedy`` mode N counts the greedy row.
        mode: ``samples`` or ``with-greedy``.
        draws: Draws per query and N (one when the draw is the whole pool).
        seed: Seed of the draws and the bootstrap.
        n_boot: Bootstrap resamples.
        name: The scorer's name in the result.

    Raises:
        ConfigError: For an unknown mode or an N out of range.
        DataError: If no query has a greedy row.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    rng = np.random.default_rng(seed)
    extra = mode == "with-greedy"
    value, win, tie, loss, greedy_u = [], [], [], [], []
    for rows, base, sim in query_draws(pool, scorer.rm).values():
        g = greedy_mask(rows)
        if not g.any():
            continue
        samples, gi = np.flatnonzero(~g), int(np.flatnonzero(g)[0])
        u = rows[utility].to_numpy(dtype=float)
        row = np.zeros((4, len(ns)))
        for c, n in enumerate(ns):
            k = n - extra
            if not (0 if extra else 1) <= k <= len(samples):
                raise ConfigError(f"N={n} is out of range for {len(samples)} samples per query in mode {mode!r}")
            reps = 1 if comb(len(samples), k) == 1 else draws
            picked = np.empty(reps)
            for d in range(reps):
                idx = rng.choice(samples, k, replace=False)
                if extra:
                    idx = np.append(idx, gi)
                picked[d] = u[idx[int(np.argmax(scorer.score_draw(base[idx], sim[np.ix_(idx, idx)])))]]
            row[:, c] = picked.mean(), (picked > u[gi]).mean(), (picked == u[gi]).mean(), (picked < u[gi]).mean()
        for acc, r in zip((value, win, tie, loss), row):
            acc.append(r)
        greedy_u.append(u[gi])
    if not value:
        raise DataError("no query has a greedy row: sample the pool with --greedy")
    value_a, ug = np.array(value), np.array(greedy_u)
    diff = value_a - ug[:, None]
    lo, hi = np.percentile(bootstrap_means(diff, n_boot=n_boot, seed=seed), [2.5, 97.5], axis=0)
    tup = lambda a: tuple(float(x) for x in a)  # noqa: E731
    return VersusGreedy(name, mode, tuple(int(n) for n in ns), float(ug.mean()), tup(value_a.mean(0)), tup(diff.mean(0)),
                        tup(lo), tup(hi), tup(np.mean(win, 0)), tup(np.mean(tie, 0)), tup(np.mean(loss, 0)), len(ug), diff)
