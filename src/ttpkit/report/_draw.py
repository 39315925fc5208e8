"""Shared pieces of every renderer: rich tables that fit 80 columns, number cells, and PNG writing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ttpkit.paths import write_atomic, writing


def _table(title: str, first: str, names: list[str], columns: list[str]) -> Any:
    """A rich Table whose first column holds ``names`` uncut; the other columns are right-aligned."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(first, no_wrap=True, min_width=max([len(first), *map(len, names)]))
    for col in columns:
        table.add_column(col, justify="right", overflow="fold")
    return table


def _num(v: float, fmt: str = ".2f") -> str:
    """A number, or ``n/a`` for NaN (a flat observed curve has no R²)."""
    return "n/a" if v != v else format(v, fmt)


def _pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend (imported here: matplotlib is heavy)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_over_n(series: list[tuple[str, Any, Any, Any, Any]], path: str | Path, ylabel: str, title: str,
                 zero: bool = False) -> Path:
    """Lines against N (log2 axis) with their 95% bands, one per ``(label, ns, values, lo, hi)``; ``zero`` draws y=0."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, ns, values, lo, hi in series:
        ax.plot(ns, values, marker="o", label=label)
        ax.fill_between(ns, lo, hi, alpha=0.2)
    if zero:
        ax.axhline(0, color="k", lw=0.8, ls="--")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (candidates per query)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return _finish(fig, ax, path)


def _finish(fig: Any, ax: Any, path: str | Path) -> Path:
    """Grid, legend, tight layout; save the figure as PNG and close it."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    """Tight layout; save the figure as PNG (creating its folder, atomically) and close it."""
    plt = _pyplot()
    fig.tight_layout()
    path = Path(path)
    try:
        with writing(path.parent, "folder"):
            path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, lambda tmp: fig.savefig(tmp, format="png"), "plot")
    finally:
        plt.close(fig)
    return path


