"""Tables and plots of best-of-N curves."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from ttpkit.scaling import Curve

__all__ = ["curves_json", "curves_markdown", "curves_table", "plot_curves", "plot_training", "write_json"]


def curves_json(curves: Mapping[str, Curve]) -> dict[str, dict[str, float]]:
    """``{scorer: {N: value}}``."""
    return {name: c.as_dict() for name, c in curves.items()}


def curves_table(curves: Mapping[str, Curve], utility: str = "rougeL"):
    """A rich Table: one row per scorer, one column per N (mean and 95% interval)."""
    from rich.table import Table

    first = next(iter(curves.values()))
    table = Table(title=f"expected {utility} of best-of-N ({first.n_queries} queries, ± half 95% CI)")
    table.add_column("scorer")
    for n in first.ns:
        table.add_column(f"N={n}", justify="right")
    for name, c in curves.items():
        table.add_row(name, *[f"{m:.3f} ±{(hi - lo) / 2:.3f}" for m, lo, hi in zip(c.mean, c.lo, c.hi)])
    return table


def curves_markdown(curves: Mapping[str, Curve]) -> str:
    """The same table in Markdown."""
    first = next(iter(curves.values()))
    head = "| scorer | " + " | ".join(f"N={n}" for n in first.ns) + " |"
    rule = "|---|" + "---:|" * len(first.ns)
    rows = [f"| {name} | " + " | ".join(f"{m:.3f}" for m in c.mean) + " |" for name, c in curves.items()]
    return "\n".join([head, rule, *rows])


def plot_curves(curves: Mapping[str, Curve], path: str | Path, utility: str = "rougeL", title: str = "") -> Path:
    """Plot curves against N (log2 axis) with 95% bootstrap bands; write a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for name, c in curves.items():
        ax.plot(c.ns, c.mean, marker="o", label=name)
        ax.fill_between(c.ns, c.lo, c.hi, alpha=0.2)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N (candidates per query)")
    ax.set_ylabel(f"expected {utility}")
    first = next(iter(curves.values()))
    ax.set_title(title or f"best-of-N, {first.n_queries} queries")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_training(history: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """Plot a reward model's train and dev loss against the step; write a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=110)
    steps = [h["epoch"] for h in history]
    ax.plot(steps, [h["train_loss"] for h in history], label="train")
    ax.plot(steps, [h["dev_loss"] for h in history], label="dev")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title or "training")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def write_json(obj: object, path: str | Path) -> Path:
    """Write JSON with a trailing newline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
    return path
