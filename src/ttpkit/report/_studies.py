"""Study results (``ttpkit bench`` and the failure study): results tables, share of the oracle gain per regime, law scatter, reliability."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ttpkit.report._draw import _finish, _num, _pyplot, _save, _table


def study_tables(table: pd.DataFrame, utility: str = "rougeL") -> list[Any]:
    """One rich Table per data set x policy: scorers by N, share of the oracle gain, within-query correlation."""
    ns = [c for c in table.columns if c.startswith("N=")]
    out = []
    for (dataset, policy), part in table.groupby(["dataset", "policy"], sort=False):
        t = _table(f"{dataset} / {policy}: expected {utility} of best-of-N", "scorer", list(part["scorer"]),
                   [*ns, "gain", "corr"])
        for _, r in part.iterrows():
            t.add_row(r["scorer"], *[_num(r[n], ".3f") for n in ns], _num(r["frac_oracle_gain"], ".0%"), f"{r['corr']:.3f}")
        out.append(t)
    return out


def study_markdown(table: pd.DataFrame) -> str:
    """The whole results table in Markdown (floats to 3 decimals)."""
    cols = list(table.columns)
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def regime_tables(table: pd.DataFrame, per_table: int = 4) -> list[Any]:
    """Share of the oracle gain at the largest N, methods by regimes, ``per_table`` regimes a table (80 columns)."""
    show = table.pivot(index="method", columns="regime", values="share").reindex(table["method"].unique())
    show = show[list(dict.fromkeys(table["regime"]))]
    out = []
    for start in range(0, show.shape[1], per_table):
        part = show.iloc[:, start : start + per_table]
        t = _table("share of the oracle gain at the largest N", "method", list(part.index), list(part.columns))
        for name, row in part.iterrows():
            t.add_row(name, *[_num(v, ".0%") for v in row])
        out.append(t)
    return out


def plot_law_scatter(points: pd.DataFrame, path: str | Path, utility: str = "rougeL", title: str = "") -> Path:
    """Law-predicted against observed best-of-N values, one marker per (policy, scorer, N); write a PNG.

    Args:
        points: DataFrame with columns ``policy``, ``scorer``, ``n``, ``observed``, ``predicted``.
        path: PNG to write.
        utility: Utility name for the axis labels.
        title: Figure title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    markers = "osD^v<>ph*"
    for i, (policy, part) in enumerate(points.groupby("policy", sort=False)):
        ax.scatter(part["observed"], part["predicted"], s=14, alpha=0.7, marker=markers[i % len(markers)], label=policy)
    lo = float(min(points["observed"].min(), points["predicted"].min()))
    hi = float(max(points["observed"].max(), points["predicted"].max()))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--", label="predicted = observed")
    ax.set_xlabel(f"observed expected {utility}")
    ax.set_ylabel(f"law-predicted expected {utility}")
    ax.set_title(title or "law vs observed", fontsize=10)
    return _finish(fig, ax, path)


def plot_reliability(rows: list[dict], path: str | Path) -> Path:
    """Reliability of predicted standard deviations: observed RMS error against mean predicted σ per σ-bin.

    Args:
        rows: One dict per (regime, model) with ``bins_std`` and ``bins_rmse``.
        path: PNG to write; one panel per model, one line per regime, the diagonal is calibrated.
    """
    plt = _pyplot()
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4), dpi=110, squeeze=False)
    for ax, model in zip(axes[0], models):
        top = 0.0
        for r in (r for r in rows if r["model"] == model):
            ax.plot(r["bins_std"], r["bins_rmse"], "o-", ms=3, lw=1, label=r["regime"])
            top = max(top, *r["bins_std"], *r["bins_rmse"])
        ax.plot([0, top], [0, top], color="grey", ls="--", lw=1, label="calibrated")
        ax.set_xlabel("predicted σ (bin mean)")
        ax.set_ylabel("observed RMS error")
        ax.set_title(model, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=5)
    return _save(fig, path)
