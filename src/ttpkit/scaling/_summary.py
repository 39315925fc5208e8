"""Summaries of computed results that reports render: how often the law forms hit their targets, and cost-matched curves.

- :func:`law_targets`: over the curves that move, the share of curves each law
  form fits (R² ≥ .95, max error ≤ 10% of the oracle gain, both) per M_fit.
- :func:`peak_targets`: over the curves with an observed peak, the share where
  each form's predicted peak is within a factor 2 and falls right after it.
- :func:`cost_matched`: adaptive stopping against the fixed-N curve at the
  same mean cost.

Each takes the table that :func:`ttpkit.scaling.law_table` (with ``regime`` and
``method`` columns added by the failure study) or
:func:`ttpkit.scaling.adaptive_curve` returns, and gives plain numbers in a
DataFrame; :mod:`ttpkit.report` only formats them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ttpkit.pool import ROUGEL, ScorerRef, candidates_per_query, n_grid
from ttpkit.scaling._bon import Curve
from ttpkit.scaling._bootstrap import curve_moves
from ttpkit.scaling._diagnose import Diagnosis, diagnose
from ttpkit.scaling._law import FORMS, find_peak

__all__ = ["R2_TARGET", "ERR_TARGET", "PEAK_FACTOR", "cost_matched", "law_table", "law_targets", "peak_targets", "summarised"]

R2_TARGET = 0.95  # a form fits a curve when its R² reaches this ...
ERR_TARGET = 0.1  # ... and its max error is at most this share of the oracle gain
PEAK_FACTOR = 2  # a predicted peak N within this factor of the observed one counts as found
LEFT_OUT = ("oracle", "random")  # methods whose curves say nothing about a law form's fit

_LAW_COLUMNS = ["m_fit", "curves", "form", "r2_ok", "err_ok", "both", "median_r2"]
_PEAK_COLUMNS = ["m_fit", "peaks", "significant", "form", "within", "falls"]


def summarised(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of a law table that summaries count: every method but ``oracle`` and ``random``."""
    return table[~table["method"].isin(list(LEFT_OUT))]


def _trusted(g: pd.DataFrame, prefix: str) -> pd.Series:
    """Per row, the value of ``<prefix>_<form>`` for the row's trusted ``form``."""
    return g.apply(lambda r: r[f"{prefix}_{r['form']}"], axis=1)


def law_targets(table: pd.DataFrame) -> pd.DataFrame:
    """Per M_fit and form, the shares of moving curves that the form fits.

    Args:
        table: A law table (:func:`ttpkit.scaling.law_table`) with a ``method``
            column; ``oracle`` and ``random`` rows are left out.

    Returns:
        One row per (``m_fit``, ``form``), forms in :data:`FORMS` order, then
        ``trusted`` (the form the diagnosis uses) and ``best`` (the best form
        per curve, picked after seeing it: an upper bound). Columns: ``curves``
        (moving curves at that M_fit), ``r2_ok`` (share with R² ≥ .95),
        ``err_ok`` (share with max error ≤ 10%), ``both``, ``median_r2``.
    """
    forms = list(FORMS)
    t = summarised(table)
    rows = []
    for m_fit, g in t[t["moves"]].groupby("m_fit"):
        cols = {f: (g[f"r2_{f}"], g[f"err_{f}"]) for f in forms}
        cols["trusted"] = (_trusted(g, "r2"), _trusted(g, "err"))
        cols["best"] = (g[[f"r2_{f}" for f in forms]].max(axis=1), g[[f"err_{f}" for f in forms]].min(axis=1))
        for name, (r2, err) in cols.items():
            rows.append({"m_fit": m_fit, "curves": len(g), "form": name, "r2_ok": (r2 >= R2_TARGET).mean(),
                         "err_ok": (err <= ERR_TARGET).mean(), "both": ((r2 >= R2_TARGET) & (err <= ERR_TARGET)).mean(),
                         "median_r2": r2.median()})
    return pd.DataFrame(rows, columns=_LAW_COLUMNS)


def peak_targets(table: pd.DataFrame) -> pd.DataFrame:
    """Per M_fit and form, the shares of observed peaks that the form's prediction finds.

    Args:
        table: A law table with a ``method`` column (as for :func:`law_targets`).

    Returns:
        One row per (``m_fit``, ``form``), forms in :data:`FORMS` order, then
        ``trusted``. Columns: ``peaks`` (curves whose highest point is before
        the largest N), ``significant`` (of those, the ones whose drop's 95% CI
        excludes 0), ``within`` (share where the predicted peak N is within a
        factor 2 of the observed one), ``falls`` (share where the prediction
        falls right after the observed peak).
    """
    t = summarised(table)
    rows = []
    for m_fit, g in t[t["obs_inside"]].groupby("m_fit"):
        for f in [*FORMS, "trusted"]:
            pk = _trusted(g, "peak") if f == "trusted" else g[f"peak_{f}"]
            falls = _trusted(g, "falls") if f == "trusted" else g[f"falls_{f}"]
            within = (pk <= PEAK_FACTOR * g["obs_peak"]) & (pk >= g["obs_peak"] / PEAK_FACTOR)
            rows.append({"m_fit": m_fit, "peaks": len(g), "significant": int((g["obs_drop_lo"] > 0).sum()), "form": f,
                         "within": within.mean(), "falls": falls.mean()})
    return pd.DataFrame(rows, columns=_PEAK_COLUMNS)


def cost_matched(table: pd.DataFrame, fixed: Mapping[str, Curve]) -> pd.DataFrame:
    """Adaptive stopping beside the fixed-N curve at the same mean number of samples.

    Args:
        table: Rows of :func:`ttpkit.scaling.adaptive_curve` with a ``task``
            column (``mean_n`` is the mean samples per query).
        fixed: ``{task: fixed-N curve}`` of the same scorer.

    Returns:
        A copy of ``table`` with ``fixed_at_cost`` (the fixed-N curve linearly
        interpolated at ``mean_n``) and ``fixed_at_max_n`` (its value at its
        largest N).
    """
    out = table.copy()
    out["fixed_at_cost"] = [float(np.interp(r.mean_n, fixed[r.task].ns, fixed[r.task].mean)) for r in table.itertuples()]
    out["fixed_at_max_n"] = [fixed[r.task].mean[-1] for r in table.itertuples()]
    return out


def law_table(
    pool: pd.DataFrame, scorers: Sequence[str | ScorerRef], utility: str = ROUGEL, m_fits: Sequence[int] = (4, 8),
    ns: Sequence[int] | None = None, seed: int = 0,
) -> tuple[pd.DataFrame, dict[int, Diagnosis]]:
    """Every law form against every observed curve, for each M_fit: R², max error, and the peaks.

    One row per (scorer, m_fit): ``moves`` (:func:`curve_moves`), ``r2_<form>``
    and ``err_<form>`` for every form of :data:`FORMS`, the trusted ``form``,
    the observed peak (``obs_peak``, ``obs_inside``, ``obs_drop`` and its 95%
    CI ``obs_drop_lo``/``obs_drop_hi``), and per form the predicted peak over
    the observed N (``peak_<form>``) and whether the prediction falls right
    after the observed peak (``falls_<form>``).

    Returns:
        The table and the :class:`Diagnosis` of each M_fit (for plots).
    """
    m = candidates_per_query(pool)
    ns = tuple(int(n) for n in (ns if ns is not None else n_grid(m)))
    rows, diags = [], {}
    for m_fit in m_fits:
        diag = diagnose(pool, scorers, utility, m_fit=m_fit, max_n=max(ns), seed=seed, ns=ns, n_band=0)
        diags[m_fit] = diag
        at = [diag.ns_pred.index(n) for n in ns]
        for name, d in diag.scorers.items():
            seen = d.observed_peak
            k = ns.index(seen.n)
            row = {"scorer": name, "m_fit": m_fit, "moves": curve_moves(d.observed.per_query, seed),
                   "share": diag.frac_oracle_gain(name), "form": d.fit.form, "b": d.fit.bend_b, "b_hi": d.fit.bend_b_hi,
                   "obs_peak": seen.n, "obs_inside": seen.inside, "obs_drop": seen.drop,
                   "obs_drop_lo": d.observed_drop_ci[0], "obs_drop_hi": d.observed_drop_ci[1]}
            for form in FORMS:
                pred = np.asarray(d.predicted[form])[at]
                row[f"r2_{form}"], row[f"err_{form}"] = d.r2[form], d.max_error[form]
                row[f"peak_{form}"] = find_peak(ns, pred).n
                row[f"falls_{form}"] = bool(k + 1 < len(ns) and pred[k + 1] < pred[k])
            rows.append(row)
    return pd.DataFrame(rows), diags
