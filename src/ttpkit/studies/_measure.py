"""The failure study's measurements: settings tuned on dev, one row per method, paired CIs, calibration, examples.

Every setting (κ, λ, τ, β, the cap) is chosen on the regime's dev pool under
ordinary conditions, never on test (:func:`tune`). The rows, the paired
differences against each method's base and the calibration of every
probabilistic scorer are computed on test (:func:`method_rows`,
:func:`calibration_rows`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ttpkit.pool import QUERY_ID, ROUGEL, TEXT, USER_ID, candidates_per_query, greedy_rows, score_col, std_col
from ttpkit.reward import RegScorer, calibration
from ttpkit.scaling import (
    Curve,
    capped_scorer_curve,
    curves,
    failure_measures,
    find_peak,
    hack_suspects,
    is_monotone,
    oracle_share,
    paired_share_diff,
    versus_greedy,
)
from ttpkit.studies._scoring import DET

__all__ = ["BETAS", "CAPS", "KAPPAS", "TAUS", "Tuner", "against_greedy_columns", "calibration_rows", "capped", "examples", "method_rows", "tune", "tuners"]

KAPPAS, TAUS, BETAS = (0.5, 1.0, 2.0), (0.03, 0.1, 0.3, 1.0), (0.25, 0.5, 1.0, 2.0)
CAPS = (1, 2, 4)  # the N a query that looks hacked may use (chosen on dev)
UNITLESS = ("ens", "judge-prob")  # scores not in utility units (prefixes): mapped by an affine fit on dev before calibration


def _best_of(pool: pd.DataFrame, values: np.ndarray | pd.Series, m: int) -> float:
    """Best-of-m of arbitrary per-row scores on a labelled pool."""
    return curves(pool.assign(score_tmp=values), ["tmp"], ROUGEL, [m], n_boot=2)["tmp"].mean[0]


def _best_of_scorer(pool: pd.DataFrame, scorer: str, m: int) -> float:
    return curves(pool, [scorer], ROUGEL, [m], n_boot=2)[scorer].mean[0]


def capped(pool: pd.DataFrame, ns: Sequence[int], cap: int, scorer: str, seed: int = 0) -> Curve:
    """The curve of ``scorer`` with N capped at ``cap`` on the queries where user-pairwise runs against mbr."""
    suspects = hack_suspects(pool, pool[score_col(DET)].to_numpy(), pool[score_col("mbr")].to_numpy())
    return capped_scorer_curve(pool, scorer, ROUGEL, ns, {q: cap for q in suspects}, seed=seed)


@dataclass(frozen=True)
class Tuner:
    """One setting chosen on dev: the candidate that maximizes ``objective(dev, candidate, m)`` (ties: the first).

    Attributes:
        key: Its key in ``tuning.json``.
        candidates: What is tried, in order.
        objective: Best-of-M on dev under a candidate.
        value: The setting a candidate stands for.
        needs: A dev column the tuner needs (it is skipped when the column is absent).
    """

    key: str
    candidates: tuple
    objective: Callable[[pd.DataFrame, Any, int], float]
    value: Callable[[Any], float] = float
    needs: str | None = None


def _rule(template: str) -> Callable[[pd.DataFrame, Any, int], float]:
    return lambda dev, c, m: _best_of_scorer(dev, template.format(*c) if isinstance(c, tuple) else template.format(c), m)


def _reg(dev: pd.DataFrame, beta: float, m: int) -> float:
    return _best_of(dev, RegScorer(DET, beta).score(dev, {}).mean, m)


def _lcb(name: str) -> Callable[[pd.DataFrame, Any, int], float]:
    return lambda dev, k, m: _best_of(dev, dev[score_col(name)] - k * dev[std_col(name)], m)


def tuners(ens: str) -> tuple[Tuner, ...]:
    """The settings of the failure study's methods, in the order ``tuning.json`` lists them (``ens``: the ensemble's label)."""
    return (
        Tuner("kappa", tuple(("lcb", k) for k in KAPPAS) + tuple(("ucb", k) for k in KAPPAS), _rule("user-prob@{}:{}"),
              value=lambda c: float(c[1])),
        Tuner("lambda", KAPPAS, _rule(f"{ens}@lcb:{{}}")),
        Tuner("tau", TAUS, _rule(f"{DET}@soft:{{}}")),
        Tuner("beta", BETAS, _reg),
        Tuner("cap", CAPS, lambda dev, c, m: capped(dev, [m], c, "backoff").per_query[:, -1].mean(), value=int),
        Tuner("kappa_cross", KAPPAS, _rule("cross-prob@lcb:{}"), needs=score_col("cross-prob")),
        Tuner("kappa_judge", KAPPAS, _lcb("judge-prob"), needs=score_col("judge-prob")),
    )


def tune(dev: pd.DataFrame, ens: str, keys: Sequence[str] | None = None) -> dict[str, float]:
    """Every setting (or those in ``keys``) whose tuner's column ``dev`` has, maximizing best-of-M on dev."""
    m = candidates_per_query(dev)
    out = {}
    for t in tuners(ens):
        if (keys is None or t.key in keys) and (t.needs is None or t.needs in dev.columns):
            out[t.key] = t.value(max(t.candidates, key=lambda c: t.objective(dev, c, m)))
    return out


def method_rows(regime: str, methods: Mapping[str, Any], res: Mapping[str, Curve], test: pd.DataFrame, ns: Sequence[int],
                seed: int) -> tuple[list[dict], list[dict]]:
    """One ``regimes.csv`` row per method, and one ``paired.csv`` row per method that has a base.

    Args:
        methods: Label -> :class:`ttpkit.studies.failures.Method` resolved for this regime (``scorer`` filled in).
        res: Scorer -> curve on test.
    """
    oracle = res["oracle"]
    rows, paired = [], []
    for label, method in methods.items():
        c = res[method.scorer]
        peak = find_peak(ns, c.mean)
        rows.append({"regime": regime, "method": label, "scorer": method.scorer, **{f"N={n}": v for n, v in zip(ns, c.mean)},
                     "share": oracle_share(c.mean, oracle.mean), "ci_half": (c.hi[-1] - c.lo[-1]) / 2,
                     "monotone": is_monotone(c.mean), "peak_n": peak.n, "queries": c.n_queries,
                     **failure_measures(test, method.measured_as or method.scorer, ROUGEL, seed=seed)})
        if method.base is not None:
            d, lo, hi = paired_share_diff(res[methods[method.base].scorer].per_query, c.per_query, oracle.per_query, seed)
            paired.append({"regime": regime, "method": label, "base": method.base, "diff": d, "lo": lo, "hi": hi})
    return rows, paired


def _to_utility(dev: pd.DataFrame, name: str) -> tuple[float, float]:
    """Least-squares ``utility ≈ a + slope * score`` on the dev pool (σ then scales by ``|slope|``)."""
    x, y = dev[score_col(name)].to_numpy(float), dev[ROUGEL].to_numpy(float)
    slope, a = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (0.0, float(y.mean()))
    return float(a), float(slope)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else float("nan")


def calibration_rows(regime: str, names: Sequence[str], dev: pd.DataFrame, test: pd.DataFrame, res: Mapping[str, Curve]) -> list[dict]:
    """Calibration of each probabilistic scorer in ``names`` on test, and how well its std predicts where user-pairwise fails."""
    loss = res["oracle"].per_query[:, -1] - res[DET].per_query[:, -1]  # what user-pairwise leaves on the table, per query
    rows = []
    for name in names:
        if std_col(name) not in test.columns:
            continue
        a, slope = _to_utility(dev, name) if name.startswith(UNITLESS) else (0.0, 1.0)
        c = calibration(a + slope * test[score_col(name)], abs(slope) * test[std_col(name)], test[ROUGEL])
        q_std = test.groupby(QUERY_ID, sort=False)[std_col(name)].mean().reindex(list(res[DET].query_ids)).to_numpy()
        rows.append({"regime": regime, "model": name, **c.as_dict(), "failure_spearman": _spearman(q_std, loss),
                     "bins_std": list(c.bins_std), "bins_rmse": list(c.bins_rmse)})
    return rows


def examples(test: pd.DataFrame, regime: str, references: Mapping[str, str | None], count: int = 3) -> list[dict]:
    """The ``count`` queries where the deterministic RM's top pick is furthest below the best candidate."""
    rows = []
    for qid, d in test.groupby(QUERY_ID, sort=False):
        top, best = d.loc[d[score_col(DET)].idxmax()], d.loc[d[ROUGEL].idxmax()]
        rows.append({"regime": regime, "query_id": qid, "user_id": top[USER_ID], "loss": float(best[ROUGEL] - top[ROUGEL]),
                     "top_scored": top[TEXT], "top_score": float(top[score_col(DET)]), "top_utility": float(top[ROUGEL]),
                     "best": best[TEXT], "best_score": float(best[score_col(DET)]), "best_utility": float(best[ROUGEL]),
                     "reference": references.get(qid)})
    return sorted(rows, key=lambda r: -r["loss"])[:count]


def against_greedy_columns(rows: list[dict], scored: pd.DataFrame, scorers: list[str], n: int, seed: int = 0) -> list[dict]:
    """Each scorer's row gains the greedy answer's utility and best-of-N's paired gain over it at the largest N
    (greedy + N-1 samples), where the policy decoded the greedy row (``greedy: true``); rows are unchanged otherwise."""
    if not len(greedy_rows(scored)):
        return rows
    vs = versus_greedy(scored, scorers, ROUGEL, [n], "with-greedy", seed=seed)
    return [{**r, "greedy": vs[r["scorer"]].greedy, f"vs_greedy N={n}": vs[r["scorer"]].gain[0],
             "vs_greedy_lo": vs[r["scorer"]].lo[0], "vs_greedy_hi": vs[r["scorer"]].hi[0],
             "win_vs_greedy": vs[r["scorer"]].win[0], "loss_vs_greedy": vs[r["scorer"]].loss[0]} for r in rows]
