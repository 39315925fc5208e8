"""Forecasting best-of-N curves from a few candidates, the same protocol for every form of the law.

:func:`forecast` fits every form of :data:`ttpkit.scaling.FORMS` on the first
``m_fit`` candidates of each query, predicts the curve at every N of ``ns``,
and scores the prediction against the curve observed on all M candidates:

- ``err_<form>``: the largest error of the predicted gain over N = 1, as a share
  of the oracle's gain at that N: max over N > 1 of
  |(P_N - P_1) - (O_N - O_1)| / (oracle_N - oracle_1);
- ``r2_<form>``: R² of P against O (NaN for a flat observed curve);
- ``peak_<form>``: the predicted peak N (argmax over ``ns``) beside ``obs_peak``;
- for ``dist``, ``in_band``: the share of N where O lies inside the 90%
  bootstrap band, and ``peak_lo``/``peak_hi``, the band of the peak N;
- ``err_floor``: the noise floor of the comparison, the same gain error of the
  exact curve of the first ``m_fit`` candidates (no form, no extrapolation) at
  N <= m_fit. Above :data:`ERR_TARGET`, the first candidates' own curve already
  misses the target where it needs no forecast;
- ``trusted``: the form a user without the M candidates would pick, using only
  the ``m_fit`` they have: each form fitted on the first half of them and
  judged on the exact curve of all ``m_fit`` (N <= m_fit), or ``dist`` when its
  fit finds a hacked cluster, which no form is judged on at those N;
  ``err_trusted`` is that form's error above, fitted on all ``m_fit``.

:func:`holdout_errors` is what ``diagnose`` trusts a form by: the same gain
error, on the curve of the candidates the fit never saw.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ttpkit.errors import ConfigError
from ttpkit.pool import IDX, ScorerRef, candidates_per_query, n_grid
from ttpkit.scaling._bon import best_of_n, pool_matrix, scorer_values
from ttpkit.scaling._dist import DistFit, dist_band
from ttpkit.scaling._law import FORMS, LawFit, fit_law, find_peak
from ttpkit.scaling._stats import FLAT_FRACTION, query_stats, r_squared

__all__ = ["ERR_TARGET", "forecast", "forecast_summary", "gain_error", "holdout_errors"]

ERR_TARGET = 0.10  # the target: max error <= 10% of the oracle gain


def gain_error(predicted: Sequence[float], observed: Sequence[float], oracle: Sequence[float]) -> float:
    """max over N > 1 of |(P_N - P_1) - (O_N - O_1)| / (oracle_N - oracle_1), over the N where the oracle gains."""
    p, o, r = (np.asarray(x, dtype=np.float64) for x in (predicted, observed, oracle))
    og = r[1:] - r[0]
    ok = og > 1e-12
    if not ok.any():
        return float("nan")
    return float((np.abs((p[1:] - p[0]) - (o[1:] - o[0]))[ok] / og[ok]).max())


def _curve(scores: np.ndarray, utils: np.ndarray, ns: Sequence[int]) -> np.ndarray:
    return best_of_n(scores, utils, ns).mean(0)


def holdout_errors(pool: pd.DataFrame, fit: LawFit, scorer: str | ScorerRef, utility: str, seed: int = 0) -> dict[str, float]:
    """Each form's gain error (:func:`gain_error`) on the candidates after the first ``fit.m_fit``: fitted on some, judged on others.

    Returns:
        ``{form: error}``; empty when fewer than 2 candidates per query are held out.
    """
    m = candidates_per_query(pool)
    held = m - fit.m_fit
    if held < 2:
        return {}
    rest = pool[pool[IDX] >= fit.m_fit]
    qs = query_stats(rest, scorer, utility, seed=seed)
    r = np.where(qs.collapsed[:, None], 0.0, qs.scores)
    ns = list(n_grid(held))
    observed, oracle = _curve(r, qs.utils, ns), _curve(qs.utils, qs.utils, ns)
    return {form: gain_error(fit.predict(ns, form), observed, oracle) for form in FORMS}


def _floor(pool: pd.DataFrame, scorer: str | ScorerRef, utility: str, m_fit: int, u: np.ndarray, seed: int) -> float:
    """Gain error of the exact curve of the first ``m_fit`` candidates against the curve of all M, at N <= m_fit."""
    ns = list(n_grid(m_fit))
    first = pool[pool[IDX] < m_fit]
    _, rf = pool_matrix(first, scorer_values(first, scorer, utility, seed))
    _, uf = pool_matrix(first, first[utility].to_numpy(dtype=np.float64))
    _, r = pool_matrix(pool, scorer_values(pool, scorer, utility, seed))
    return gain_error(_curve(rf, uf, ns), _curve(r, u, ns), _curve(u, u, ns))


def _pick(pool: pd.DataFrame, scorer: str | ScorerRef, utility: str, m_fit: int, seed: int, dist: DistFit) -> str:
    """The form with the least gain error when fitted on the first ``m_fit // 2`` candidates and judged on all ``m_fit``.

    ``tails``, a baseline, is never picked. A hacked cluster in ``dist``, the fit on all ``m_fit`` candidates
    (top-scored candidates worth less than their queries' others: p > 0, h < 0), makes ``dist`` the pick: the
    hacks win only at larger N, so no form is judged on them at N <= ``m_fit``, and only ``dist`` models them.
    """
    if dist.p > 0 and dist.h < 0:
        return "dist"
    half = max(3, m_fit // 2)
    if half >= m_fit:
        return "tail"
    fit = fit_law(pool, scorer, utility, m_fit=half, seed=seed, n_boot=20)
    first = pool[pool[IDX] < m_fit]
    qs = query_stats(first, scorer, utility, seed=seed)
    r = np.where(qs.collapsed[:, None], 0.0, qs.scores)
    ns = list(n_grid(m_fit))
    observed, oracle = _curve(r, qs.utils, ns), _curve(qs.utils, qs.utils, ns)
    errors = {form: gain_error(fit.predict(ns, form), observed, oracle) for form in FORMS if form != "tails"}
    finite = {f: e for f, e in errors.items() if np.isfinite(e)}
    return min(finite, key=finite.get) if finite else "tail"


def forecast(
    pool: pd.DataFrame,
    scorers: Sequence[str | ScorerRef],
    utility: str = "rougeL",
    m_fit: int = 8,
    ns: Sequence[int] | None = None,
    n_boot: int = 100,
    seed: int = 0,
) -> pd.DataFrame:
    """The forecasting protocol on one pool: every form, fitted on ``m_fit`` candidates per query, against all M.

    Args:
        pool: Labelled, scored pool with M > ``m_fit`` candidates per query.
        scorers: Scorers to forecast (``oracle`` is the unit of error and is not a row).
        utility: Utility column.
        m_fit: Candidates per query to fit on (the first by idx).
        ns: N values to predict and score (default: 1..M in the pool's grid).
        n_boot: Bootstrap resamples of the queries for the ``dist`` band.
        seed: Seed of the bootstrap and of the ``thompson`` rule.

    Returns:
        One row per scorer: ``scorer, m_fit, m, queries, share, obs_peak`` and,
        per form, ``err_``, ``r2_``, ``peak_``; ``in_band``, ``peak_lo``, ``peak_hi``.

    Raises:
        ConfigError: If ``m_fit`` is not below M, or below 3.
    """
    m = candidates_per_query(pool)
    if not 3 <= m_fit < m:
        raise ConfigError(f"m_fit must be in [3, {m - 1}] to forecast pools of {m} candidates per query, got {m_fit}")
    ns = [int(n) for n in (ns if ns is not None else n_grid(m))]
    _, u = pool_matrix(pool, pool[utility].to_numpy(dtype=np.float64))
    oracle = _curve(u, u, ns)
    rows = []
    for scorer in scorers:
        if str(scorer) == "oracle":
            continue
        _, r = pool_matrix(pool, scorer_values(pool, scorer, utility, seed))
        observed = _curve(r, u, ns)
        fit = fit_law(pool, scorer, utility, m_fit=m_fit, seed=seed)
        gain = oracle[-1] - oracle[0]
        flat = gain > 0 and np.ptp(observed) < FLAT_FRACTION * gain
        row: dict = {"scorer": str(scorer), "m_fit": m_fit, "m": m, "queries": len(u),
                     "share": float((observed[-1] - observed[0]) / gain) if gain > 0 else float("nan"),
                     "obs_peak": find_peak(ns, observed).n, "flat": bool(flat)}
        for form in FORMS:
            pred = fit.predict(ns, form)
            row[f"err_{form}"] = gain_error(pred, observed, oracle)
            row[f"r2_{form}"] = float("nan") if flat else r_squared(observed, pred)
            row[f"peak_{form}"] = find_peak(ns, pred).n
        row["err_floor"] = _floor(pool, scorer, utility, m_fit, u, seed)
        row["trusted"] = _pick(pool, scorer, utility, m_fit, seed, fit.dist)
        row["err_trusted"] = row[f"err_{row['trusted']}"]
        qs = query_stats(pool, scorer, utility, seed=seed, m=m_fit)
        lo, hi, (p_lo, p_hi) = dist_band(qs, ns, n_boot=n_boot, seed=seed)
        seen = observed - observed[0]  # the band is of the gain over N = 1
        inside = (seen[1:] >= lo[1:] - 1e-12) & (seen[1:] <= hi[1:] + 1e-12)
        row.update({"in_band": float(inside.mean()), "peak_lo": p_lo, "peak_hi": p_hi,
                    "dist_tail_drop": fit.dist.tail_drop, "dist_c": 1 - fit.dist.live})
        rows.append(row)
    return pd.DataFrame(rows)


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a share k / n."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(centre - half), float(centre + half)


def forecast_summary(table: pd.DataFrame) -> pd.DataFrame:
    """The protocol's targets per (source, M_fit, form) over the rows of :func:`forecast` tables.

    Columns: ``source, m_fit, form, curves, err_ok`` (share with max gain error
    <= :data:`ERR_TARGET`) with its 95% Wilson interval ``err_ok_lo``/``err_ok_hi``, ``median_err``, ``median_r2``, ``peaks`` (curves whose
    observed peak is before the largest N), ``peak_x2`` (share of those whose
    predicted peak is within a factor 2), and for ``dist`` ``in_band`` (share of
    (curve, N) points inside the 90% band); ``floor_over``, the share of curves
    whose noise floor (``err_floor``) is above the target, and ``err_ok_floor``,
    ``err_ok`` over the other curves (NaN where tables lack ``err_floor``).
    """
    rows = []
    for (source, m_fit), g in table.groupby(["source", "m_fit"], sort=True):
        end = g["m"].astype(int)
        peaked = g["obs_peak"] < end
        floor = g["err_floor"] if "err_floor" in g else pd.Series(np.nan, index=g.index)
        clear = floor <= ERR_TARGET
        for form in (*FORMS, "trusted"):
            err = g[f"err_{form}"]
            peak = g[f"peak_{form}"] if form != "trusted" else pd.Series([r[f"peak_{r['trusted']}"] for _, r in g.iterrows()], index=g.index)
            ratio = peak / g["obs_peak"]
            lo, hi = _wilson(int((err <= ERR_TARGET).sum()), len(g))
            rows.append({"source": source, "m_fit": int(m_fit), "form": form, "curves": len(g),
                         "err_ok": float((err <= ERR_TARGET).mean()), "err_ok_lo": lo, "err_ok_hi": hi,
                         "median_err": float(err.median()),
                         "median_r2": float(g[f"r2_{form}"].median()) if form != "trusted" else float("nan"),
                         "peaks": int(peaked.sum()),
                         "peak_x2": float(((ratio >= 0.5) & (ratio <= 2))[peaked].mean()) if peaked.any() else float("nan"),
                         "in_band": float(g["in_band"].mean()) if form == "dist" else float("nan"),
                         "floor_over": float((floor > ERR_TARGET).mean()) if floor.notna().any() else float("nan"),
                         "err_ok_floor": float((err[clear] <= ERR_TARGET).mean()) if clear.any() else float("nan")})
    return pd.DataFrame(rows)
