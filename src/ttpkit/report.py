"""Tables and plots of best-of-N curves."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ttpkit.scaling import Curve

__all__ = [
    "curves_json", "curves_markdown", "curves_table", "plot_curves", "plot_law_scatter", "plot_training", "write_json",
]


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
    return _finish(fig, ax, path)


def _finish(fig, ax, path: str | Path) -> Path:
    """Grid, legend, tight layout; save the figure as PNG and close it."""
    import matplotlib.pyplot as plt

    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
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
# diagnosis: the law, collapsed users, hacked queries, compute-aware N
# ---------------------------------------------------------------------------------------------


def _slug(scorer: str) -> str:
    """File-name form of a scorer (``user-prob@lcb:1`` -> ``user-prob_lcb1``)."""
    return scorer.replace("@", "_").replace(":", "")


def _powers(limit: int) -> list[int]:
    ns, n = [], 1
    while n <= limit:
        ns.append(n)
        n *= 2
    return ns


def per_user_n(
    pool, scorer: str, utility: str, ns: list[int], tau: float, cost: float, min_gain: float, seed: int = 0
):
    """Recommended N per user from each user's own law quantities (N=1 for collapsed users)."""
    import numpy as np
    import pandas as pd

    from ttpkit.scaling import expected_max_normal, query_stats, recommend_n

    qs = query_stats(pool, scorer, utility, tau, seed)
    e = np.array([expected_max_normal(n) for n in ns])
    rows = []
    for user in pd.unique(qs.user_id):
        sel = qs.user_id == user
        s, rho = qs.s[sel], qs.rho[sel]
        collapsed = bool(qs.collapsed[sel].all())
        rho_u = float((s * rho).sum() / s.sum()) if s.sum() > 0 else 0.0
        curve = qs.mu[sel].mean() + (0.0 if collapsed else rho_u * s.mean()) * e
        n_u = 1 if collapsed else recommend_n(curve, ns, cost, min_gain)
        rows.append({"user_id": user, "queries": int(sel.sum()), "collapsed": collapsed, "rho": rho_u, "n": n_u})
    return pd.DataFrame(rows)


def write_diagnosis(
    pool,
    scorers: list[str],
    out_dir: str | Path,
    utility: str = "rougeL",
    m_fit: int = 4,
    n_max: int = 32,
    tau: float = 0.05,
    references: dict[str, str] | None = None,
    cost_per_sample: float = 1.0,
    min_gain_per_cost: float = 1e-3,
    seed: int = 0,
) -> dict:
    """Fit the law for each scorer and write ``report.md``, ``law.json``, plots and lists.

    Returns:
        The content of ``law.json``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from ttpkit.scaling import FORMS, curves, fit_law, fit_log_curve, hacked_queries, recommend_n
    from ttpkit.scaling._law import r_squared
    from ttpkit.scaling import collapsed_users as find_collapsed

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = int(pool.groupby("query_id")["idx"].nunique().min())
    ns_obs = _powers(m)
    ns_pred = _powers(max(n_max, m))
    observed = curves(pool, ["oracle", *[s for s in scorers if s != "oracle"]], utility, ns_obs, seed=seed)
    oracle = observed["oracle"]
    gain = oracle.mean[-1] - oracle.mean[0]
    a, b, r2_log = fit_log_curve(ns_obs, oracle.mean)
    law: dict = {
        "settings": {"utility": utility, "m_fit": m_fit, "pool_size": m, "tau": tau, "queries": oracle.n_queries,
                     "cost_per_sample": cost_per_sample, "min_gain_per_cost": min_gain_per_cost},
        "oracle_log_fit": {"a": a, "b": b, "r2": r2_log},
        "scorers": {},
    }
    lines = [f"# ttpkit diagnosis\n", f"{oracle.n_queries} queries, pools of {m}, utility `{utility}`; "
             f"law quantities measured on the first {m_fit} candidates of each query (M_fit={m_fit}).\n",
             f"Oracle fit: {utility} = {a:.3f} + {b:.3f} ln N (R² = {r2_log:.3f}).\n",
             "## The law per scorer\n",
             "| scorer | μ̄ | c | σ̄ | ρ̄ | ρ_eff | hacked | R² plain | R² tail | R² log | max err plain | max err tail | max err log | N* |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    fig_h, ax_h = plt.subplots(figsize=(6, 4), dpi=110)
    hacked_lists: dict = {}
    for scorer in scorers:
        fit = fit_law(pool, scorer, utility, m_fit=min(m_fit, m), tau=tau, seed=seed)
        full = fit_law(pool, scorer, utility, tau=tau, seed=seed)
        obs = np.array(observed[scorer].mean)
        entry = {"quantities": fit.as_dict(), "quantities_full_pool": full.as_dict(),
                 "observed": observed[scorer].as_dict(), "predicted": {}, "r2": {}, "max_error_frac_of_oracle_gain": {}}
        for form in FORMS:
            pred = fit.predict(ns_pred, form)
            entry["predicted"][form] = {str(n): float(v) for n, v in zip(ns_pred, pred)}
            at_obs = pred[: len(ns_obs)]
            flat = gain > 0 and np.ptp(obs) < 0.02 * gain  # R² of a flat curve only measures noise
            entry["r2"][form] = float("nan") if flat else r_squared(obs, at_obs)
            entry["max_error_frac_of_oracle_gain"][form] = float(np.abs(at_obs - obs).max() / gain) if gain > 0 else float("nan")
        entry["ceiling"] = {str(n): float(v) for n, v in zip(ns_pred, fit.ceiling(ns_pred))}
        plain = fit.predict(ns_pred, "plain")
        n_star = recommend_n(plain, ns_pred, cost_per_sample, min_gain_per_cost) if fit.rho > 0 else 1
        users = per_user_n(pool, scorer, utility, ns_pred, tau, cost_per_sample, min_gain_per_cost, seed)
        spent = float((users["n"] * users["queries"]).sum())
        entry["compute"] = {"recommended_n": n_star, "per_user_n": dict(zip(users["user_id"], map(int, users["n"]))),
                            "saved_vs_global_n": 1 - spent / (n_star * users["queries"].sum()) if n_star else 0.0}
        law["scorers"][scorer] = entry
        fmt = lambda v: "n/a" if v != v else f"{v:.2f}"  # noqa: E731  (NaN: flat observed curve)
        lines.append(
            f"| {scorer} | {fit.mu:.3f} | {fit.c:.2f} | {fit.sigma:.3f} | {fit.rho:.3f} | {fit.rho_eff:.3f} | {fit.hacked:.2f} | "
            + " | ".join(fmt(entry["r2"][f]) for f in FORMS) + " | "
            + " | ".join(f"{entry['max_error_frac_of_oracle_gain'][f]:.0%}" for f in FORMS) + f" | {n_star} |"
        )
        # observed vs predicted
        fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
        c = observed[scorer]
        ax.plot(c.ns, c.mean, "o-", color="k", label="observed")
        ax.fill_between(c.ns, c.lo, c.hi, color="k", alpha=0.15)
        for form, style in zip(FORMS, ("--", "-.", ":")):
            ax.plot(ns_pred, fit.predict(ns_pred, form), style, label=f"law ({form})")
        ax.plot(ns_pred, fit.ceiling(ns_pred), color="gray", alpha=0.6, label="oracle ceiling")
        ax.plot(oracle.ns, oracle.mean, "s", color="gray", alpha=0.6, ms=3, label="oracle observed")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("N")
        ax.set_ylabel(f"expected {utility}")
        ax.set_title(f"{scorer}: observed vs law (fit on M_fit={fit.m_fit})")
        _finish(fig, ax, out / f"law_{_slug(scorer)}.png")
        if scorer != "oracle":
            from ttpkit.scaling import query_stats

            ax_h.hist(query_stats(pool, scorer, utility, tau, seed).rho, bins=20, alpha=0.4, label=scorer)
        col = find_collapsed(pool, scorer, utility, tau, seed)
        col.to_csv(out / f"collapsed_{_slug(scorer)}.csv", index=False)
        hk = hacked_queries(pool, scorer, utility, references=references, seed=seed)
        hacked_lists[scorer] = hk
        hk.to_csv(out / f"hacked_{_slug(scorer)}.csv", index=False)
        entry["collapsed_users"] = col.to_dict(orient="records")
        entry["hacked_queries"] = hk[["query_id", "user_id", "rho"]].to_dict(orient="records")
    ax_h.axvline(-0.1, color="r", lw=1, label="hacking threshold")
    ax_h.set_xlabel("within-query correlation ρ_q")
    ax_h.set_ylabel("queries")
    _finish(fig_h, ax_h, out / "rho_hist.png")
    lines += ["", "R² is over the observed N = " + ", ".join(map(str, ns_obs)) + "; 'n/a' when the observed curve spans < 2% of the oracle gain. "
              "Max error is a fraction of the oracle gain. N* is the compute-aware N of the plain law.", ""]
    for scorer in scorers:
        e = law["scorers"][scorer]
        lines.append(f"## {scorer}\n")
        lines.append(f"![{scorer}](law_{_slug(scorer)}.png)\n")
        cu = e["collapsed_users"]
        lines.append(f"Collapsed users ({len(cu)}): " + (", ".join(f"{r['user_id']} (score std {r['score_std']:.2g})" for r in cu) or "none") + "\n")
        hk_df = hacked_lists[scorer]
        lines.append(f"Hacked queries (ρ_q < -0.1): {len(hk_df)} of {oracle.n_queries}.\n")
        if len(hk_df):
            lines.append("| query | ρ_q | top-scored | best | reference |\n|---|---:|---|---|---|")
            for _, r in hk_df.head(10).iterrows():
                cell = lambda t: str(t).replace("|", "\\|")[:80]  # noqa: E731
                lines.append(f"| {r['query_id']} | {r['rho']:.2f} | {cell(r['top_scored'])} ({r['top_scored_utility']:.2f}) | "
                             f"{cell(r['best'])} ({r['best_utility']:.2f}) | {cell(r['reference'])} |")
            lines.append("")
        comp = e["compute"]
        lines.append(f"Compute-aware N: {comp['recommended_n']} overall; per-user N saves "
                     f"{comp['saved_vs_global_n']:.0%} of the samples.\n")
    lines.append("![rho histogram](rho_hist.png)\n")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    write_json(law, out / "law.json")
    return law
