"""Print the Markdown tables of docs/failures.md from a failures study's outputs.

    python scripts/failures_tables.py results/failures/study
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd


def _pct(v: float) -> str:
    return "n/a" if v != v else f"{v:.0%}"


def _m3(t: pd.DataFrame, paired: pd.DataFrame) -> None:
    """Target M3, method by method: regimes where it gains >= 10 points over user-pairwise (CI excluding 0)
    and lowers hacking or collapse, and its cost in the ordinary regimes (<= 2 points allowed)."""
    print("\n### Target M3, method by method\n")
    print("| method | cost in gc-ordinary | cost in ds-ordinary | regimes with >= +10 points (CI > 0) and less hacking or collapse |")
    print("|---|---:|---:|---|")
    det = t[t.method == "user-pairwise"].set_index("regime")
    for m in dict.fromkeys(paired.loc[paired["base"] == "user-pairwise", "method"]):
        rows = paired[(paired.method == m) & (paired["base"] == "user-pairwise")].set_index("regime")
        cost = {r: rows.loc[r, "diff"] * 100 if r in rows.index else float("nan") for r in ("gc-ordinary", "ds-ordinary")}
        wins = []
        for r, x in rows.iterrows():
            if r.endswith("ordinary") or not (x["diff"] >= 0.10 and x.lo > 0):
                continue
            me = t[(t.regime == r) & (t.method == m)].iloc[0]
            better = me.hacked < det.loc[r, "hacked"] or me.collapsed_share < det.loc[r, "collapsed_share"] or me.c < det.loc[r, "c"]
            wins.append(f"{r} ({x['diff'] * 100:+.0f}{'' if better else ', no fewer failures'})")
        print(f"| {m} | {cost['gc-ordinary']:+.1f} | {cost['ds-ordinary']:+.1f} | {', '.join(wins) or 'none'} |")


def main(root: str) -> None:
    d = Path(root)
    t, paired, cal = (pd.read_csv(d / f) for f in ("regimes.csv", "paired.csv", "calibration.csv"))
    if "base" not in paired.columns:  # outputs of the first version of the runner
        paired["base"] = "user-pairwise"
    regimes = list(dict.fromkeys(t["regime"]))
    print("### Share of the oracle gain at the largest N (methods x regimes)\n")
    for start in range(0, len(regimes), 6):
        part = regimes[start : start + 6]
        print("| method | " + " | ".join(part) + " |\n|---|" + "---:|" * len(part))
        for method in dict.fromkeys(t["method"]):
            cells = []
            for r in part:
                row = t[(t.regime == r) & (t.method == method)]
                cells.append("" if row.empty else _pct(row["share"].iloc[0]) + ("" if row["monotone"].iloc[0] else "↓"))
            print(f"| {method} | " + " | ".join(cells) + " |")
        print()
    print("↓: the curve falls somewhere between N=1 and the largest N.\n")
    print("### Collapse and hacking of user-pairwise and the fixes (within-query share / users collapsed / c / hacked)\n")
    keep = ["user-pairwise", "user-prob", "ens5", "reg", "backoff", "mbr", "judge", "judge-prob"]
    print("| regime | " + " | ".join(keep) + " |\n|---|" + "---|" * len(keep))
    for r in regimes:
        cells = []
        for m in keep:
            row = t[(t.regime == r) & (t.method == m)]
            cells.append("" if row.empty else
                         f"{row.within_share.iloc[0]:.2f} / {row.collapsed_share.iloc[0]:.0%} / {row.c.iloc[0]:.2f} / {row.hacked.iloc[0]:.0%}")
        print(f"| {r} | " + " | ".join(cells) + " |")
    print("\n### Each fix against its base (user-pairwise; the argmax judge for judge-prob): difference in the share of the oracle gain at the largest N, paired bootstrap 95% CI over queries\n")
    methods = list(dict.fromkeys(paired["method"]))
    print("| regime | " + " | ".join(methods) + " |\n|---|" + "---:|" * len(methods))
    for r in regimes:
        cells = []
        for m in methods:
            row = paired[(paired.regime == r) & (paired.method == m)]
            if row.empty:
                cells.append("")
                continue
            x = row.iloc[0]
            star = "**" if x.lo > 0 or x.hi < 0 else ""
            cells.append(f"{star}{x['diff'] * 100:+.0f} [{x.lo * 100:+.0f}, {x.hi * 100:+.0f}]{star}")
        print(f"| {r} | " + " | ".join(cells) + " |")
    print("\nBold: the 95% interval excludes 0.\n")
    print("### Calibration on test (μ ± σ against ROUGE-L)\n")
    print("| regime | model | NLL | 50% coverage | 90% coverage | Spearman(σ, abs err) | Spearman(query σ, user-pairwise loss) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for row in cal.itertuples():
        print(f"| {row.regime} | {row.model} | {row.nll:.2f} | {row.coverage50:.0%} | {row.coverage90:.0%} | "
              f"{row.spearman_std_error:.2f} | {row.failure_spearman:.2f} |")
    _m3(t, paired)
    tuned = json.loads((d / "tuning.json").read_text())
    print("\n### Settings chosen on dev\n")
    print("| regime | " + " | ".join(next(iter(tuned.values()))) + " |\n|---|" + "---:|" * len(next(iter(tuned.values()))))
    for r, v in tuned.items():
        print(f"| {r} | " + " | ".join(f"{x:g}" for x in v.values()) + " |")


if __name__ == "__main__":
    main(sys.argv[1])
