"""A :class:`ttpkit.scaling.Diagnosis` (``ttpkit diagnose``) and the law forms' fit over many curves, rendered.

Terminal tables of the law per scorer, the peak in words, law plots,
``report.md`` with ``law.json`` and the CSVs, and ``law_forms.md`` (whose
shares :mod:`ttpkit.scaling._summary` computes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ttpkit.jsonio import write_json
from ttpkit.paths import write_atomic, writing
from ttpkit.pool import ScorerRef
from ttpkit.report._draw import _finish, _num, _pyplot, _save, _table
from ttpkit.scaling import FORMS, HACK_THRESHOLD, Diagnosis
from ttpkit.scaling import law_targets, peak_targets, summarised

_STYLES = ("--", "-.", ":", "-", (0, (1, 3)), (0, (5, 1)), (0, (3, 1, 1, 1)))  # one line style per form of FORMS


def peak_sentence(diag: Diagnosis, name: str) -> str:
    """Where more samples stop paying for one scorer, in words: the trusted form's predicted peak, then the observed one."""
    d = diag.scorers[name]
    p, form = d.predicted_peak, d.trusted
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
    if len(d.band[0]):
        lo_n, hi_n = d.peak_band
        text += f"; the dist form puts the peak at N in [{lo_n}, {hi_n}] (90% band)"
    dist = d.fit.dist
    if dist is not None and dist.tail_drop > 1.0:  # plain populations stay below 1 σ (tests/test_dist.py)
        text += f"; hacked tail: E(u | score) falls by {dist.tail_drop:.1f} σ at the highest scores"
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
                           f"{q.bend_b:+.3f}", d.trusted, str(d.recommended_n))
        r2.add_row(name, *[_num(d.r2[f]) for f in FORMS])
        err.add_row(name, *[_num(d.max_error[f], ".0%") for f in FORMS])
    return [quantities, r2, err]


def _law_plot(diag: Diagnosis, name: str, path: Path) -> Path:
    """Observed curve of one scorer with every law form's prediction and the oracle ceiling."""
    plt = _pyplot()
    d, oracle = diag.scorers[name], diag.scorers["oracle"].observed
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    ax.plot(d.observed.ns, d.observed.mean, "o-", color="k", label="observed")
    ax.fill_between(d.observed.ns, d.observed.lo, d.observed.hi, color="k", alpha=0.15)
    if d.band[0]:
        ax.fill_between(diag.ns_pred, d.band[0], d.band[1], color="tab:purple", alpha=0.12, label="dist 90% band")
    for form, style in zip(FORMS, _STYLES):
        trusted = " *" if form == d.trusted else ""
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
    plt = _pyplot()
    cols = min(3, max(1, len(names)))
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), dpi=100, squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        d = diag.scorers[name]
        ax.plot(d.observed.ns, d.observed.mean, "o-", color="k", ms=3, label="observed")
        ax.fill_between(d.observed.ns, d.observed.lo, d.observed.hi, color="k", alpha=0.12)
        for form, style in zip(FORMS, _STYLES):
            thick = form == d.trusted
            ax.plot(diag.ns_pred, d.predicted[form], linestyle=style, lw=2 if thick else 1, label=form)
        lo, hi = min(d.observed.lo), max(d.observed.hi)
        ax.set_ylim(lo - 0.2 * (hi - lo), hi + 0.2 * (hi - lo))  # a form that runs away leaves the panel
        ax.set_xscale("log", base=2)
        ax.set_title(f"{name} (trusted: {d.trusted})", fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.supxlabel("N", fontsize=9)
    fig.supylabel(f"expected {diag.utility}", fontsize=9)
    return _save(fig, path)


def _rho_histogram(diag: Diagnosis, path: Path) -> Path:
    """Histogram of the per-query score-utility correlation of every scorer but the oracle."""
    plt = _pyplot()
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
    slug = ScorerRef.parse(name).slug
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
    with writing(out, "report folder"):
        out.mkdir(parents=True, exist_ok=True)
    lines = _law_markdown(diag)
    for name, d in diag.scorers.items():
        slug = ScorerRef.parse(name).slug
        _law_plot(diag, name, out / f"law_{slug}.png")
        for kind, table in (("collapsed", d.collapsed_users), ("hacked", d.hacked_queries)):
            write_atomic(out / f"{kind}_{slug}.csv", lambda tmp, t=table: t.to_csv(tmp, index=False), "report table")
        lines += _scorer_markdown(diag, name)
    _rho_histogram(diag, out / "rho_hist.png")
    lines.append("![rho histogram](rho_hist.png)\n")
    write_atomic(out / "report.md", lambda tmp: tmp.write_text("\n".join(lines) + "\n", encoding="utf-8"), "report")
    law = diag.as_dict()
    write_json(law, out / "law.json")
    return law


def law_summary_markdown(table: pd.DataFrame) -> list[str]:
    """The targets of the law forms over every regime x method (oracle and random left out), per M_fit and form.

    Args:
        table: :func:`ttpkit.scaling.law_table`'s rows with ``regime`` and ``method`` columns.

    Returns:
        Markdown lines: the shares of :func:`ttpkit.scaling.law_targets`, then of :func:`ttpkit.scaling.peak_targets`.
    """
    lines = ["## Summary\n",
             "Over the curves that move by more than their 95% CI: the share that each form fits with R² ≥ .95, with a "
             "max error ≤ 10% of the oracle gain, and both; `trusted` is the form the diagnosis uses (`bend` when its "
             "curvature is below 0 with 95% confidence, else `tail`); `best` picks the best form per curve after seeing "
             "it (an upper bound, not a method).\n",
             "| M_fit | curves | form | R² ≥ .95 | err ≤ 10% | both | median R² |", "|---:|---:|---|---:|---:|---:|---:|"]
    for r in law_targets(table).itertuples():
        lines.append(f"| {r.m_fit} | {r.curves} | {r.form} | {r.r2_ok:.0%} | {r.err_ok:.0%} | {r.both:.0%} | {r.median_r2:.2f} |")
    lines += ["", "Peaks: curves whose highest point is before the largest N (`significant`: the drop's 95% CI excludes 0); "
              "the share where a form's predicted peak is within a factor 2 of the observed one, and where its "
              "prediction falls right after the observed peak.\n",
              "| M_fit | peaks | significant | form | peak N within ×2 | falls after it |", "|---:|---:|---:|---|---:|---:|"]
    for r in peak_targets(table).itertuples():
        lines.append(f"| {r.m_fit} | {r.peaks} | {r.significant} | {r.form} | {r.within:.0%} | {r.falls:.0%} |")
    return lines + [""]


def law_forms_markdown(table: pd.DataFrame, m_fit: int = 8) -> str:
    """``law_forms.md``: the targets' summary, then R² and max error of every form per regime x method at one M_fit, then the peaks."""
    forms = list(FORMS)
    t = summarised(table)
    t = t[t["m_fit"] == m_fit]
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
