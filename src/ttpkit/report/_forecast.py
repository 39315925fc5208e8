"""The forecasting protocol's report: ``forecast.md`` and the error plot (the numbers come from :mod:`ttpkit.scaling`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ttpkit.report._draw import _pyplot, _save
from ttpkit.scaling import FORMS, forecast_summary

__all__ = ["forecast_markdown", "plot_forecast_errors"]


def _pct(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{x:.0%}"


def _num(x: float) -> str:
    return "–" if not np.isfinite(x) else f"{x:.2f}"


def forecast_markdown(table: pd.DataFrame) -> str:
    """``forecast.md``: per source and M_fit, each form's share of curves within 10% of the oracle gain, then the misses."""
    summary = forecast_summary(table)
    lines = ["# Forecasting best-of-N curves from M_fit candidates per query\n",
             "Each form is fitted on the first M_fit candidates of each query and scored against the curve observed on all M. "
             "`err ≤ 10%`: share of curves (with its 95% Wilson interval) whose largest error of the predicted gain over N=1 is at most 10% of the "
             "oracle's gain at that N; `peak ×2`: among curves that peak before the largest N, the share whose predicted "
             "peak is within a factor 2; `in band`: share of (curve, N) points inside the dist form's 90% band; `trusted`: per curve, the form that "
             "predicts best from half of the M_fit candidates to all of them (no candidate beyond M_fit is used to pick it). "
             "`floor > 10%`: share of curves whose noise floor, the error of the exact curve of the first M_fit candidates "
             "at N ≤ M_fit (no forecast needed there), is already above 10%; `err ≤ 10%, floor ≤ 10%`: the target's share over the other curves.\n",
             "| source | M_fit | form | curves | err ≤ 10% (95% CI) | median err | median R² | peaks | peak ×2 | in band | floor > 10% | err ≤ 10%, floor ≤ 10% |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in summary.itertuples():
        lines.append(f"| {r.source} | {r.m_fit} | {r.form} | {r.curves} | {_pct(r.err_ok)} ({_pct(r.err_ok_lo)}–{_pct(r.err_ok_hi)}) | {r.median_err:.3f} | "
                     f"{_num(r.median_r2)} | {r.peaks} | {_pct(r.peak_x2)} | {_pct(r.in_band)} | {_pct(r.floor_over)} | {_pct(r.err_ok_floor)} |")
    miss = table[table["err_dist"] > 0.10].sort_values("err_dist", ascending=False)
    lines += ["", f"## Curves the dist form misses (max error > 10% of the oracle gain): {len(miss)} of {len(table)}\n",
              "| source | pool | scorer | M_fit | M | share of oracle gain | err dist | best other form | tail drop (σ) |",
              "|---|---|---|---:|---:|---:|---:|---|---:|"]
    others = [f for f in FORMS if f != "dist"]
    for r in miss.head(40).itertuples():
        errs = {f: getattr(r, f"err_{f}") for f in others}
        best = min(errs, key=errs.get)
        lines.append(f"| {r.source} | {r.pool} | {r.scorer} | {r.m_fit} | {r.m} | {r.share:.2f} | {r.err_dist:.2f} | "
                     f"{best} ({errs[best]:.2f}) | {r.dist_tail_drop:.2f} |")
    return "\n".join(lines) + "\n"


def plot_forecast_errors(table: pd.DataFrame, path: str | Path) -> Path:
    """Box plot of each form's max gain error per source and M_fit, with the 10% target line."""
    plt = _pyplot()
    groups = list(table.groupby(["source", "m_fit"], sort=True))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.5 * len(groups), 3.6), dpi=100, squeeze=False)
    for ax, ((source, m_fit), g) in zip(axes[0], groups):
        data = [g[f"err_{f}"].clip(upper=1.0).dropna().to_numpy() for f in FORMS]
        ax.boxplot(data, showfliers=True)
        ax.set_xticks(range(1, len(FORMS) + 1), list(FORMS))
        ax.axhline(0.10, color="r", lw=1, ls="--")
        ax.set_title(f"{source}, M_fit={m_fit} ({len(g)} curves)", fontsize=9)
        ax.set_ylabel("max error / oracle gain (clipped at 1)")
        ax.tick_params(axis="x", labelsize=8, rotation=30)
    return _save(fig, path)
