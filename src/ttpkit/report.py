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
    "adaptive_markdown",
    "plot_adaptive",
    "diagnosis_tables",
    "law_forms_markdown",
    "law_summary_markdown",
    "peak_sentence",
    "personalized_table",
    "plot_law_grid",
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


def plot_adaptive(fixed: Curve, table: Any, path: str | Path, title: str = "") -> Path:
    """Expected utility against mean samples per query: the fixed-N curve and adaptive stopping at each threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def adaptive_markdown(table: Any, fixed: Mapping[str, Curve]) -> str:
    """``adaptive.md``: per task, each threshold's mean samples and utility beside the fixed-N curve at that cost."""
    import numpy as np

    lines = ["| task | threshold | mean samples | expected rougeL (95% CI) | fixed N at that cost | fixed N=16 |",
             "|---|---:|---:|---|---:|---:|"]
    for r in table.itertuples():
        f = fixed[r.task]
        at = float(np.interp(r.mean_n, f.ns, f.mean))
        lines.append(f"| {r.task} | {r.threshold:g} | {r.mean_n:.1f} | {r.utility:.4f} ({r.lo:.4f}..{r.hi:.4f}) | "
                     f"{at:.4f} | {f.mean[-1]:.4f} |")
    return "\n".join(lines) + "\n"


def personalized_table(res: Any):
    """The candidates of a :class:`ttpkit.online.Personalized` record: score (± std), the chosen one marked."""
    table = _table(f"{res.n} candidates, rule {res.rule}", "#", [str(c.idx) for c in res.candidates], ["score", "", "candidate"])
    table.columns[-1].justify = "left"
    for c in res.candidates:
        score = f"{c.score:.3f}" + ("" if c.std is None else f" ± {c.std:.3f}")
        table.add_row(str(c.idx), score, "◀" if c.idx == res.chosen else "", c.text)
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


def peak_sentence(diag: Diagnosis, name: str) -> str:
    """Where more samples stop paying for one scorer, in words: the trusted form's predicted peak, then the observed one."""
    d = diag.scorers[name]
    p, form = d.predicted_peak, d.fit.form
    if p is None:
        return ""
    if p.inside:
        text = (f"predicted peak at N≈{p.n} ({form} form); beyond it the expected {diag.utility} falls by "
                f"{p.drop:.3f} by N={p.end_n}")
        users = d.bend_users[d.bend_users["b"] < 0].head(3)
        if len(users):
            text += "; the bend comes most from " + ", ".join(map(str, users["user_id"]))
    else:
        text = f"no peak predicted up to N={p.end_n} ({form} form)"
    seen = d.observed_peak
    if seen is not None and seen.inside:
        lo, hi = d.observed_drop_ci
        sig = "significant" if lo > 0 else "within noise"
        text += f"; observed peak at N={seen.n}, then {seen.drop:.3f} lower at N={seen.end_n} ({sig}: 95% CI {lo:+.3f}..{hi:+.3f})"
    return text


def diagnosis_tables(diag: Diagnosis) -> list[Any]:
    """Three rich Tables that fit 80 columns: the law's quantities, trusted form and N*; R² per form; max error per form."""
    names = list(diag.scorers)
    quantities = _table(f"law fit on M_fit={diag.m_fit} ({diag.n_queries} queries)", "scorer", names,
                        ["μ̄", "c", "σ̄", "ρ̄", "ρ_eff", "b", "form", "N*"])
    r2 = _table("law vs observed: R²", "scorer", names, list(FORMS))
    err = _table("law vs observed: max error, share of the oracle gain", "scorer", names, list(FORMS))
    for name, d in diag.scorers.items():
        q = d.fit
        quantities.add_row(name, f"{q.mu:.3f}", f"{q.c:.2f}", f"{q.sigma:.3f}", f"{q.rho:.3f}", f"{q.rho_eff:.3f}",
                           f"{q.bend_b:+.3f}", q.form, str(d.recommended_n))
        r2.add_row(name, *[_num(d.r2[f]) for f in FORMS])
        err.add_row(name, *[_num(d.max_error[f], ".0%") for f in FORMS])
    return [quantities, r2, err]


def _law_plot(diag: Diagnosis, name: str, path: Path) -> Path:
    """Observed curve of one scorer with every law form's prediction and the oracle ceiling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d, oracle = diag.scorers[name], diag.scorers["oracle"].observed
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot(d.observed.ns, d.observed.mean, "o-", color="k", label="observed")
    ax.fill_between(d.observed.ns, d.observed.lo, d.observed.hi, color="k", alpha=0.15)
    for form, style in zip(FORMS, ("--", "-.", ":", "-", (0, (1, 3)))):
        trusted = " *" if form == d.fit.form else ""
        ax.plot(diag.ns_pred, d.predicted[form], linestyle=style, lw=2 if trusted else 1.2, label=f"law ({form}){trusted}")
    ax.plot(diag.ns_pred, d.fit.ceiling(diag.ns_pred), color="gray", alpha=0.6, label="oracle ceiling")
    ax.plot(oracle.ns, oracle.mean, "s", color="gray", alpha=0.6, ms=3, label="oracle observed")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("N")
    ax.set_ylabel(f"expected {diag.utility}")
    ax.set_title(f"{name}: observed vs law (fit on M_fit={d.fit.m_fit})")
    return _finish(fig, ax, path)


def plot_law_grid(diag: Diagnosis, names: list[str], path: str | Path, title: str = "") -> Path:
    """One panel per scorer: the observed curve (95% CI) and every form's prediction; the trusted form is thick."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, max(1, len(names)))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), dpi=100, squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        d = diag.scorers[name]
        ax.plot(d.observed.ns, d.observed.mean, "o-", color="k", ms=3, label="observed")
        ax.fill_between(d.observed.ns, d.observed.lo, d.observed.hi, color="k", alpha=0.12)
        for form, style in zip(FORMS, ("--", "-.", ":", "-", (0, (1, 3)))):
            thick = form == d.fit.form
            ax.plot(diag.ns_pred, d.predicted[form], linestyle=style, lw=2 if thick else 1, label=form)
        lo, hi = min(d.observed.lo), max(d.observed.hi)
        ax.set_ylim(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo))  # a form that runs away leaves the panel
        ax.set_xscale("log", base=2)
        ax.set_title(f"{name} (trusted: {d.fit.form})", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.supxlabel("N", fontsize=9)
    fig.supylabel(f"expected {diag.utility}", fontsize=9)
    return _save(fig, path)


def law_summary_markdown(table: Any) -> list[str]:
    """The targets of the law forms over every regime x method (oracle and random left out), per M_fit and form."""
    forms = list(FORMS)
    t = table[~table["method"].isin(["oracle", "random"])]
    lines = ["## Summary\n",
             "Over the curves that move by more than their 95% CI: the share that each form fits with R² ≥ .95, with a "
             "max error ≤ 10% of the oracle gain, and both; `trusted` is the form the diagnosis uses (`bend` when its "
             "curvature is below 0 with 95% confidence, else `tail`); `best` picks the best form per curve after seeing "
             "it (an upper bound, not a method).\n",
             "| M_fit | curves | form | R² ≥ .95 | err ≤ 10% | both | median R² |", "|---:|---:|---|---:|---:|---:|---:|"]
    for m_fit, g in t[t["moves"]].groupby("m_fit"):
        cols = {f: (g[f"r2_{f}"], g[f"err_{f}"]) for f in forms}
        cols["trusted"] = (g.apply(lambda r: r[f"r2_{r['form']}"], axis=1), g.apply(lambda r: r[f"err_{r['form']}"], axis=1))
        cols["best"] = (g[[f"r2_{f}" for f in forms]].max(axis=1), g[[f"err_{f}" for f in forms]].min(axis=1))
        for name, (r2, err) in cols.items():
            lines.append(f"| {m_fit} | {len(g)} | {name} | {(r2 >= .95).mean():.0%} | {(err <= .1).mean():.0%} | "
                         f"{((r2 >= .95) & (err <= .1)).mean():.0%} | {r2.median():.2f} |")
    lines += ["", "Peaks: curves whose highest point is before the largest N (`significant`: the drop's 95% CI excludes 0); "
              "the share where a form's predicted peak is within a factor 2 of the observed one, and where its "
              "prediction falls right after the observed peak.\n",
              "| M_fit | peaks | significant | form | peak N within ×2 | falls after it |", "|---:|---:|---:|---|---:|---:|"]
    for m_fit, g in t[t["obs_inside"]].groupby("m_fit"):
        for f in [*forms, "trusted"]:
            pk = g.apply(lambda r: r[f"peak_{r['form']}"], axis=1) if f == "trusted" else g[f"peak_{f}"]
            falls = g.apply(lambda r: r[f"falls_{r['form']}"], axis=1) if f == "trusted" else g[f"falls_{f}"]
            within = (pk <= 2 * g["obs_peak"]) & (pk >= g["obs_peak"] / 2)
            lines.append(f"| {m_fit} | {len(g)} | {int((g['obs_drop_lo'] > 0).sum())} | {f} | {within.mean():.0%} | {falls.mean():.0%} |")
    return lines + [""]


def law_forms_markdown(table: Any, m_fit: int = 8) -> str:
    """``law_forms.md``: the targets' summary, then R² and max error of every form per regime x method at one M_fit, then the peaks."""
    forms = list(FORMS)
    t = table[(table["m_fit"] == m_fit) & ~table["method"].isin(["oracle", "random"])]
    lines = ["# Law forms against the observed curves\n", *law_summary_markdown(table),
             f"## Every curve (fit on M_fit={m_fit})\n",
             "R² and max error (share of the oracle gain) of every form over the observed N; `moves`: the curve moves "
             "by more than its 95% CI; the trusted form is marked *.\n",
             "| regime | method | moves | " + " | ".join(f"R² {f}" for f in forms) + " | "
             + " | ".join(f"err {f}" for f in forms) + " |",
             "|---|---|:-:|" + "---:|" * (2 * len(forms))]
    for r in t.itertuples():
        mark = lambda f, text: text + ("*" if f == r.form else "")  # noqa: E731
        lines.append(f"| {r.regime} | {r.method} | {'yes' if r.moves else 'no'} | "
                     + " | ".join(mark(f, _num(getattr(r, f"r2_{f}"))) for f in forms) + " | "
                     + " | ".join(mark(f, _num(getattr(r, f"err_{f}"), ".0%")) for f in forms) + " |")
    peaks = t[t["obs_inside"]]
    lines += ["", f"## Observed peaks (fit on M_fit={m_fit})\n",
              "Curves whose highest point is before the largest N. `drop`: from the peak to the largest N, with its paired "
              "bootstrap 95% CI; per form, the predicted peak N and whether it falls right after the observed peak.\n",
              "| regime | method | peak N | drop (95% CI) | " + " | ".join(forms) + " |",
              "|---|---|---:|---|" + "---|" * len(forms)]
    for r in peaks.itertuples():
        cells = [f"{getattr(r, f'peak_{f}')} {'↓' if getattr(r, f'falls_{f}') else '↑'}" for f in forms]
        lines.append(f"| {r.regime} | {r.method} | {r.obs_peak} | {r.obs_drop:.3f} ({r.obs_drop_lo:+.3f}..{r.obs_drop_hi:+.3f}) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


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
              "of the plain law, stopped at the peak the trusted form predicts (`bend` when its curvature b is below 0 "
              "with 95% confidence, else `tail`).", ""]
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
    lines.append(f"Where more samples stop paying: {peak_sentence(diag, name)}.\n")
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
