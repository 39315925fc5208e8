"""Best-of-N curves (``ttpkit curves``) and adaptive stopping against fixed N: tables, JSON, Markdown, plots."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ttpkit.report._draw import _finish, _plot_over_n, _pyplot, _table
from ttpkit.scaling import Curve
from ttpkit.scaling import cost_matched


def curves_json(curves: Mapping[str, Curve]) -> dict[str, dict[str, float]]:
    """``{scorer: {N: value}}``."""
    return {name: c.as_dict() for name, c in curves.items()}


CELL_WIDTH = 15  # one "0.321 ±0.015" cell with rich's padding and column gap


def curves_table(curves: Mapping[str, Curve], utility: str = "rougeL", width: int = 80) -> Any:
    """A rich Table: one row per scorer, one column per N (mean and 95% interval).

    Args:
        curves: ``{scorer: curve}``, all at the same N.
        utility: Utility name for the title.
        width: Columns the table must fit in; when the N columns do not fit,
            they are split over several tables (returned as one rich Group).
    """
    from rich.console import Group

    first = next(iter(curves.values()))
    one = first.n_queries < 2  # a bootstrap over one query has no spread: say "n/a", not a false ±0.000
    title = f"expected {utility} of best-of-N (" + ("1 query: no interval)" if one else f"{first.n_queries} queries, ± half 95% CI)")
    per_table = max(1, (width - 2 - max([len("scorer"), *map(len, curves)])) // CELL_WIDTH)
    tables = []
    for start in range(0, len(first.ns), per_table):
        part = slice(start, start + per_table)
        table = _table(title if start == 0 else "", "scorer", list(curves), [f"N={n}" for n in first.ns[part]])
        for name, c in curves.items():
            cells = zip(c.mean[part], c.lo[part], c.hi[part])
            table.add_row(name, *[f"{m:.3f} ±" + ("n/a" if one else f"{(hi - lo) / 2:.3f}") for m, lo, hi in cells])
        tables.append(table)
    return tables[0] if len(tables) == 1 else Group(*tables)


def curves_markdown(curves: Mapping[str, Curve]) -> str:
    """The same table in Markdown."""
    first = next(iter(curves.values()))
    head = "| scorer | " + " | ".join(f"N={n}" for n in first.ns) + " |"
    rule = "|---|" + "---:|" * len(first.ns)
    rows = [f"| {name} | " + " | ".join(f"{m:.3f}" for m in c.mean) + " |" for name, c in curves.items()]
    return "\n".join([head, rule, *rows])


def plot_curves(curves: Mapping[str, Curve], path: str | Path, utility: str = "rougeL", title: str = "") -> Path:
    """Plot curves against N (log2 axis) with 95% bootstrap bands; write a PNG."""
    first = next(iter(curves.values()))
    series = [(name, c.ns, c.mean, c.lo, c.hi) for name, c in curves.items()]
    return _plot_over_n(series, path, f"expected {utility}", title or f"best-of-N, {first.n_queries} queries")


def plot_adaptive(fixed: Curve, table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Expected utility against mean samples per query: the fixed-N curve and adaptive stopping at each threshold.

    Args:
        fixed: The fixed-N curve of the scorer.
        table: :func:`ttpkit.scaling.adaptive_curve`'s rows (``threshold``, ``mean_n``, ``utility``).
        path: PNG to write.
        title: Figure title.
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot(fixed.ns, fixed.mean, "o-", color="k", ms=3, label="fixed N")
    ax.fill_between(fixed.ns, fixed.lo, fixed.hi, color="k", alpha=0.1)
    ax.plot(table["mean_n"], table["utility"], "s--", color="C3", ms=4, label="adaptive (thresholds)")
    for r in table.itertuples():
        ax.annotate(f"{r.threshold:g}", (r.mean_n, r.utility), fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set_xlabel("mean samples per query")
    ax.set_ylabel("expected rougeL of the pick")
    ax.set_title(title)
    return _finish(fig, ax, path)


def adaptive_markdown(table: pd.DataFrame, fixed: Mapping[str, Curve]) -> str:
    """``adaptive.md``: per task, each threshold's mean samples and utility beside the fixed-N curve at that cost.

    Args:
        table: :func:`ttpkit.scaling.adaptive_curve`'s rows with a ``task`` column.
        fixed: ``{task: fixed-N curve}`` (see :func:`ttpkit.scaling.cost_matched`).
    """
    lines = ["| task | threshold | mean samples | expected rougeL (95% CI) | fixed N at that cost | fixed N=16 |",
             "|---|---:|---:|---|---:|---:|"]
    for r in cost_matched(table, fixed).itertuples():
        lines.append(f"| {r.task} | {r.threshold:g} | {r.mean_n:.1f} | {r.utility:.4f} ({r.lo:.4f}..{r.hi:.4f}) | "
                     f"{r.fixed_at_cost:.4f} | {r.fixed_at_max_n:.4f} |")
    return "\n".join(lines) + "\n"
