"""Rendering: tables, plots and reports of what :mod:`ttpkit.scaling` computed. No analysis lives here.

Terminal tables stay readable at 80 columns: scorer names are never cut, and
wide tables are split rather than squeezed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ttpkit.pool import Scorer
from ttpkit.scaling import FORMS, HACK_THRESHOLD, Curve, Diagnosis

__all__ = [
    "curves_json",
    "curves_markdown",
    "curves_table",
    "diagnosis_tables",
    "plot_curves",
    "plot_law_scatter",
    "plot_reliability",
    "plot_training",
    "regime_tables",
    "study_markdown",
    "study_tables",
    "write_diagnosis",
    "write_json",
]


def _table(title: str, first: str, names: list[str], columns: list[str]):
    """A rich Table whose first column holds ``names`` uncut; the other columns are right-aligned."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column(first, no_wrap=True, min_width=max([len(first), *map(len, names)]))
    for col in columns:
        table.add_column(col, justify="right", overflow="fold")
    return table


def curves_json(curves: Mapping[str, Curve]) -> dict[str, dict[str, float]]:
    """``{scorer: {N: value}}``."""
    return {name: c.as_dict() for name, c in curves.items()}


def curves_table(curves: Mapping[str, Curve], utility: str = "rougeL"):
    """A rich Table: one row per scorer, one column per N (mean and 95% interval)."""
    first = next(iter(curves.values()))
    title = f"expected {utility} of best-of-N ({first.n_queries} queries, ± half 95% CI)"
    table = _table(title, "scorer", list(curves), [f"N={n}" for n in first.ns])
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
    return _finish(fig, ax, path)


def _finish(fig, ax, path: str | Path) -> Path:
    """Grid, legend, tight layout; save the figure as PNG and close it."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _save(fig, path: str | Path) -> Path:
    """Tight layout; save the figure as PNG (creating its folder) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_law_scatter(points: Any, path: str | Path, utility: str = "rougeL", title: str = "") -> Path:
    """Law-predicted against observed best-of-N values, one marker per (policy, scorer, N); write a PNG.

    Args:
        points: DataFrame with columns ``policy``, ``scorer``, ``n``, ``observed``, ``predicted``.
        path: PNG to write.
        utility: Utility name for the axis labels.
        title: Figure title.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    return _finish(fig, ax, path)


def write_json(obj: object, path: str | Path) -> Path:
    """Write JSON with a trailing newline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# diagnosis: rendering of a ttpkit.scaling.Diagnosis
# ---------------------------------------------------------------------------------------------


def _num(v: float, fmt: str = ".2f") -> str:
    """A number, or ``n/a`` for NaN (a flat observed curve has no R²)."""
    return "n/a" if v != v else format(v, fmt)


def diagnosis_tables(diag: Diagnosis) -> list[Any]:
    """Two rich Tables (the law's quantities and N*, then its accuracy per form) that fit 80 columns."""
    names = list(diag.scorers)
    quantities = _table(f"law fit on M_fit={diag.m_fit} ({diag.n_queries} queries)", "scorer", names,
                        ["μ̄", "c", "σ̄", "ρ̄", "ρ_eff", "N*"])
    accuracy = _table("law vs observed (R², max error as a share of the oracle gain)", "scorer", names,
                      [f"R² {f}" for f in FORMS] + [f"err {f}" for f in FORMS])
    for name, d in diag.scorers.items():
        q = d.fit
        quantities.add_row(name, f"{q.mu:.3f}", f"{q.c:.2f}", f"{q.sigma:.3f}", f"{q.rho:.3f}", f"{q.rho_eff:.3f}",
                           str(d.recommended_n))
        accuracy.add_row(name, *[_num(d.r2[f]) for f in FORMS], *[_num(d.max_error[f], ".0%") for f in FORMS])
    return [quantities, accuracy]


def _law_plot(diag: Diagnosis, name: str, path: Path) -> Path:
    """Observed curve of one scorer with every law form's prediction and the oracle ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d, oracle = diag.scorers[name], diag.scorers["oracle"].observed
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot(d.observed.ns, d.observed.mean, "o-", color="k", label="observed")
    ax.fill_between(d.observed.ns, d.observed.lo, d.observed.hi, color="k", alpha=0.15)
    for form, style in zip(FORMS, ("--", "-.", ":")):
        ax.plot(diag.ns_pred, d.predicted[form], style, label=f"law ({form})")
    ax.plot(diag.ns_pred, d.fit.ceiling(diag.ns_pred), color="gray", alpha=0.6, label="oracle ceiling")
    ax.plot(oracle.ns, oracle.mean, "s", color="gray", alpha=0.6, ms=3, label="oracle observed")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N")
    ax.set_ylabel(f"expected {diag.utility}")
    ax.set_title(f"{name}: observed vs law (fit on M_fit={d.fit.m_fit})")
    return _finish(fig, ax, path)


def _rho_histogram(diag: Diagnosis, path: Path) -> Path:
    """Histogram of the per-query score-utility correlation of every scorer but the oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    for name, d in diag.scorers.items():
        if name != "oracle":
            ax.hist(d.rho_q, bins=20, alpha=0.4, label=name)
    ax.axvline(HACK_THRESHOLD, color="r", lw=1, label="hacking threshold")
    ax.set_xlabel("within-query correlation ρ_q")
    ax.set_ylabel("queries")
    return _finish(fig, ax, path)


def _law_markdown(diag: Diagnosis) -> list[str]:
    """The report's header and its table of the law per scorer."""
    a, b, r2 = diag.oracle_log_fit
    forms = " | ".join(f"R² {f}" for f in FORMS) + " | " + " | ".join(f"max err {f}" for f in FORMS)
    lines = ["# ttpkit diagnosis\n",
             f"{diag.n_queries} queries, pools of {diag.m}, utility `{diag.utility}`; law quantities measured on "
             f"the first {diag.m_fit} candidates of each query (M_fit={diag.m_fit}).\n",
             f"Oracle fit: {diag.utility} = {a:.3f} + {b:.3f} ln N (R² = {r2:.3f}).\n",
             "## The law per scorer\n",
             f"| scorer | μ̄ | c | σ̄ | ρ̄ | ρ_eff | hacked | {forms} | N* |",
             "|---|" + "---:|" * (7 + 2 * len(FORMS))]
    for name, d in diag.scorers.items():
        q = d.fit
        lines.append(f"| {name} | {q.mu:.3f} | {q.c:.2f} | {q.sigma:.3f} | {q.rho:.3f} | {q.rho_eff:.3f} | {q.hacked:.2f} | "
                     + " | ".join(_num(d.r2[f]) for f in FORMS) + " | "
                     + " | ".join(_num(d.max_error[f], ".0%") for f in FORMS) + f" | {d.recommended_n} |")
    lines += ["", "R² is over the observed N = " + ", ".join(map(str, diag.ns)) + "; 'n/a' when the observed curve "
              "spans < 2% of the oracle gain. Max error is a fraction of the oracle gain. N* is the compute-aware N "
              "of the plain law.", ""]
    return lines


def _scorer_markdown(diag: Diagnosis, name: str) -> list[str]:
    """One scorer's section: its plot, collapsed users, hacked queries with examples, compute-aware N."""
    d = diag.scorers[name]
    slug = Scorer.parse(name).slug
    cu = d.collapsed_users
    users = ", ".join(f"{r.user_id} (score std {r.score_std:.2g})" for r in cu.itertuples()) or "none"
    lines = [f"## {name}\n", f"![{name}](law_{slug}.png)\n", f"Collapsed users ({len(cu)}): {users}\n",
             f"Hacked queries (ρ_q < {HACK_THRESHOLD}): {len(d.hacked_queries)} of {diag.n_queries}.\n"]
    if len(d.hacked_queries):
        cell = lambda t: str(t).replace("|", "\\|")[:80]  # noqa: E731
        lines.append("| query | ρ_q | top-scored | best | reference |\n|---|---:|---|---|---|")
        for r in d.hacked_queries.head(10).itertuples():
            lines.append(f"| {r.query_id} | {r.rho:.2f} | {cell(r.top_scored)} ({r.top_scored_utility:.2f}) | "
                         f"{cell(r.best)} ({r.best_utility:.2f}) | {cell(r.reference)} |")
        lines.append("")
    lines.append(f"Compute-aware N: {d.recommended_n} overall; per-user N saves {d.saved_vs_global_n:.0%} of the samples.\n")
    return lines


def write_diagnosis(diag: Diagnosis, out_dir: str | Path) -> dict:
    """Write ``report.md``, ``law.json``, a law plot per scorer, ``rho_hist.png`` and the collapsed/hacked CSVs.

    Returns:
        The content of ``law.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = _law_markdown(diag)
    for name, d in diag.scorers.items():
        slug = Scorer.parse(name).slug
        _law_plot(diag, name, out / f"law_{slug}.png")
        d.collapsed_users.to_csv(out / f"collapsed_{slug}.csv", index=False)
        d.hacked_queries.to_csv(out / f"hacked_{slug}.csv", index=False)
        lines += _scorer_markdown(diag, name)
    _rho_histogram(diag, out / "rho_hist.png")
    lines.append("![rho histogram](rho_hist.png)\n")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    law = diag.as_dict()
    write_json(law, out / "law.json")
    return law


# ---------------------------------------------------------------------------------------------
# studies: rendering of ttpkit bench's results table
# ---------------------------------------------------------------------------------------------


def study_tables(table: Any, utility: str = "rougeL") -> list[Any]:
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


def study_markdown(table: Any) -> str:
    """The whole results table in Markdown (floats to 3 decimals)."""
    cols = list(table.columns)
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def regime_tables(table: Any, per_table: int = 4) -> list[Any]:
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


def plot_reliability(rows: list[dict], path: str | Path) -> Path:
    """Reliability of predicted standard deviations: observed RMS error against mean predicted σ per σ-bin.

    Args:
        rows: One dict per (regime, model) with ``bins_std`` and ``bins_rmse``.
        path: PNG to write; one panel per model, one line per regime, the diagonal is calibrated.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
