"""Best-of-N against the greedy answer: exact selection probabilities, paired gains and win rates.

The answer a user already has is the greedy decode of the same personalized
prompt (one sample at temperature 0). Best-of-N pays only where it beats that,
so every best-of-N figure is stated as a *paired* difference to the greedy
utility of the same query, with a bootstrap CI over queries, and as win / tie /
loss probabilities against it.

Both are exact expectations over the random N-subsets of a query's M samples,
from each candidate's probability of being the one chosen. Sort the M samples
by score, highest first; a subset of k chooses its highest-scored member, and a
tie is broken uniformly. For a candidate with A samples scored above it and T
scored equal to it (itself included),

    P(chosen) = sum_t C(T-1, t-1) C(M-A-T, k-t) / C(M, k) * 1 / t,

summing over t, the number of its ties in the subset. Two selection modes:

- ``samples``: N samples, best of them (:func:`ttpkit.scaling.best_of_n`'s curve);
- ``with-greedy``: the greedy decode always among the candidates, plus N-1
  samples (what ``personalize`` does when the greedy row is on); the greedy
  row then competes by its own score, and its ties count in ``1 / t`` above.

Then E[u] = sum_j P(j) u_j, win = sum_j P(j) [u_j > u_greedy], tie and loss
likewise, per query; tables average over queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb
from typing import Sequence

import numpy as np
import pandas as pd

from ttpkit.errors import ConfigError, DataError
from ttpkit.pool import IDX, QUERY_ID, Scorer, greedy_rows, sampled
from ttpkit.scaling._bon import pool_matrix, scorer_values
from ttpkit.scaling._bootstrap import bootstrap_means

__all__ = ["MODES", "VersusGreedy", "greedy_utilities", "selection_probabilities", "versus_greedy"]

MODES = ("samples", "with-greedy")


def selection_probabilities(scores: np.ndarray, k: int, greedy_score: float | None = None) -> tuple[np.ndarray, float]:
    """Each sample's chance of being chosen by best-of-``k`` (and the greedy row's, when it is always a candidate).

    Args:
        scores: (M,) the samples' scores.
        k: Samples drawn (uniformly, without replacement), 0..M.
        greedy_score: The greedy row's score if it is always among the
            candidates (``with-greedy``), else None.

    Returns:
        ``(p, p_greedy)``: (M,) probabilities and the greedy row's (0 when not
        a candidate); they sum to 1.
    """
    m = len(scores)
    if not 0 <= k <= m or (k == 0 and greedy_score is None):
        raise ConfigError(f"best-of-{k} of {m} samples{' with the greedy row' if greedy_score is not None else ''} is undefined")
    total = comb(m, k)
    p = np.zeros(m)
    for j, s in enumerate(scores):
        above, tied = int((scores > s).sum()), int((scores == s).sum())
        rest = m - above - tied
        g_tied = greedy_score is not None and greedy_score == s
        if greedy_score is not None and greedy_score > s:
            continue
        p[j] = sum(comb(tied - 1, t - 1) * comb(rest, k - t) / (t + g_tied) for t in range(1, min(tied, k) + 1)) / total
    p_greedy = 0.0
    if greedy_score is not None:
        above, tied = int((scores > greedy_score).sum()), int((scores == greedy_score).sum())
        rest = m - above - tied
        p_greedy = sum(comb(tied, t) * comb(rest, k - t) / (t + 1) for t in range(0, min(tied, k) + 1)) / total
    return p, p_greedy


@dataclass(frozen=True)
class VersusGreedy:
    """One scorer's best-of-N against the greedy answer, on the queries that have one.

    Attributes:
        scorer: The scorer (``oracle``, ``random`` or a score column with its rule).
        mode: ``samples`` (N samples) or ``with-greedy`` (the greedy row plus N-1 samples).
        ns: N values.
        greedy: Mean utility of the greedy answers.
        mean: Mean utility of best-of-N, per N.
        gain, lo, hi: Mean paired difference to greedy and its 95% bootstrap CI over queries, per N.
        win, tie, loss: Mean probability that best-of-N's answer is better than, as good as, worse than greedy's.
        n_queries: Queries compared.
        per_query: (Q, len(ns)) best-of-N minus greedy, per query.
    """

    scorer: str
    mode: str
    ns: tuple[int, ...]
    greedy: float
    mean: tuple[float, ...]
    gain: tuple[float, ...]
    lo: tuple[float, ...]
    hi: tuple[float, ...]
    win: tuple[float, ...]
    tie: tuple[float, ...]
    loss: tuple[float, ...]
    n_queries: int
    per_query: np.ndarray

    def at(self, n: int) -> dict[str, float]:
        """The row of one N: ``mean, gain, lo, hi, win, tie, loss``."""
        i = self.ns.index(n)
        return {k: getattr(self, k)[i] for k in ("mean", "gain", "lo", "hi", "win", "tie", "loss")}


def greedy_utilities(pool: pd.DataFrame, utility: str, greedy: pd.DataFrame | None = None) -> pd.Series:
    """Each query's greedy utility, by query id: from ``greedy`` (a pool of greedy decodes) or the pool's own greedy rows.

    Raises:
        DataError: If there is no greedy row, or the greedy rows lack the utility.
    """
    rows = greedy_rows(pool) if greedy is None else greedy.drop_duplicates(QUERY_ID, keep="first")
    if not len(rows):
        raise DataError("no greedy answers: sample the pool with --greedy, or give a pool of greedy decodes "
                        "(ttpkit sample --temperature 0 --m 1)")
    if utility not in rows.columns:
        raise DataError(f"the greedy answers have no {utility!r} column; run `ttpkit label` on them first")
    return rows.set_index(QUERY_ID)[utility].astype(float)


def _greedy_scores(pool: pd.DataFrame, scorer: Scorer, utility: str, seed: int) -> pd.Series:
    rows = greedy_rows(pool)
    return pd.Series(scorer_values(rows, scorer, utility, seed), index=rows[QUERY_ID].to_numpy())


def versus_greedy(
    pool: pd.DataFrame,
    scorers: Sequence[str | Scorer],
    utility: str = "rougeL",
    ns: Sequence[int] = (1, 2, 4, 8),
    mode: str = "samples",
    greedy: pd.DataFrame | None = None,
    seed: int = 0,
    n_boot: int = 1000,
) -> dict[str, VersusGreedy]:
    """Best-of-N of each scorer against the greedy answer of the same query: paired gains with CIs, win rates.

    Args:
        pool: Labelled (and scored) pool; its greedy rows are the baseline unless ``greedy`` is given.
        scorers: Scorers (``oracle``, ``random``, ``<name>[@<rule>]``; ``soft:`` rules are not supported here).
        utility: Utility column.
        ns: N values (at most M; in ``with-greedy`` mode N counts the greedy row).
        mode: ``samples`` or ``with-greedy`` (:data:`MODES`); the latter needs the scores of the pool's own greedy rows.
        greedy: A pool of greedy decodes (one row per query) to compare with, instead of the pool's greedy rows.
        seed: Seed of the bootstrap and of the ``thompson`` rule.
        n_boot: Bootstrap resamples.

    Returns:
        ``{scorer: VersusGreedy}`` in the order given, on the queries that have both samples and a greedy answer.

    Raises:
        ConfigError: For an unknown mode, an N out of range, or a ``soft`` rule.
        DataError: If no query has a greedy answer.
    """
    if mode not in MODES:
        raise ConfigError(f"unknown mode {mode!r}; modes: {', '.join(MODES)}")
    if mode == "with-greedy" and greedy is not None:
        raise ConfigError("mode 'with-greedy' scores the pool's own greedy rows; give no separate greedy pool")
    g_util = greedy_utilities(pool, utility, greedy)
    samples = sampled(pool)
    samples = samples[samples[QUERY_ID].isin(g_util.index)]
    if not len(samples):
        raise DataError("no query has both sampled candidates and a greedy answer")
    qids, u = pool_matrix(samples, samples[utility].to_numpy(dtype=np.float64))
    m = u.shape[1]
    ks = [n - (mode == "with-greedy") for n in ns]
    if any(not (0 if mode == "with-greedy" else 1) <= k <= m for k in ks):
        raise ConfigError(f"N must be in [1, {m + (mode == 'with-greedy')}] for {m} samples per query in mode {mode!r}, got {list(ns)}")
    ug = g_util.reindex(qids).to_numpy()
    out = {}
    for scorer in scorers:
        sc = Scorer.parse(scorer) if isinstance(scorer, str) else scorer
        if sc.rule and sc.rule.startswith("soft"):
            raise ConfigError(f"scorer {sc}: soft rules are not supported against greedy")
        _, r = pool_matrix(samples, scorer_values(samples, sc, utility, seed))
        sg = _greedy_scores(pool, sc, utility, seed).reindex(qids).to_numpy() if mode == "with-greedy" else None
        out[str(sc)] = _compare(str(sc), mode, ns, ks, r, u, ug, sg, seed, n_boot)
    return out


def _compare(name: str, mode: str, ns: Sequence[int], ks: Sequence[int], r: np.ndarray, u: np.ndarray, ug: np.ndarray,
             sg: np.ndarray | None, seed: int, n_boot: int) -> VersusGreedy:
    """Exact per-query expectations for one scorer, then the paired bootstrap over queries."""
    q = len(ug)
    value, win, tie, loss = (np.zeros((q, len(ns))) for _ in range(4))
    for i in range(q):
        for c, k in enumerate(ks):
            p, pg = selection_probabilities(r[i], k, None if sg is None else float(sg[i]))
            value[i, c] = p @ u[i] + pg * ug[i]
            win[i, c] = p @ (u[i] > ug[i])
            tie[i, c] = p @ (u[i] == ug[i]) + pg
            loss[i, c] = p @ (u[i] < ug[i])
    diff = value - ug[:, None]
    boots = bootstrap_means(diff, n_boot=n_boot, seed=seed)  # (n_boot, len(ns))
    lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
    tup = lambda a: tuple(float(x) for x in a)  # noqa: E731
    return VersusGreedy(name, mode, tuple(int(n) for n in ns), float(ug.mean()), tup(value.mean(0)), tup(diff.mean(0)),
                        tup(lo), tup(hi), tup(win.mean(0)), tup(tie.mean(0)), tup(loss.mean(0)), q, diff)
