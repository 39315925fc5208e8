"""Short-form vs long-form: oracle gain, the RMs' share of it and the law's accuracy, side by side (docs/results.md).

    python scripts/long_form_table.py results/failures/study:gc-ordinary:results/git-commits/test.parquet \
        results/failures/study:ds-ordinary:results/debian-synopsis/test.parquet \
        results/long-form/study:dd-ordinary:results/debian-description/test.parquet

Each argument is ``<study dir>:<regime>:<test pool>``. Reads the studies' ``regimes.csv`` and
``law_forms.csv`` (written by ``ttpkit bench`` with ``kind: failures``) and the test pools
(candidate lengths); prints three Markdown tables.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from ttpkit.pool import QUERY_ID, TEXT, read_pool

METHODS = ("style", "mbr", "global-mse", "user-mse", "user-pairwise", "user-prob", "user-prob@lcb", "user-prob@ucb",
           "ens5", "ens5@lcb", "soft", "reg", "backoff", "cross", "cross-prob")
TRAINED = ("global-mse", "user-mse", "user-pairwise", "user-prob")
FORMS = ("plain", "tail", "log", "bend", "mixture")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cells", nargs="+", help="study-dir:regime:test-pool")
    ap.add_argument("--m-fit", type=int, default=4)
    args = ap.parse_args()
    cells = [c.split(":") for c in args.cells]
    names = [r for _, r, _ in cells]
    reg, law = {}, {}
    for d, r, _ in cells:
        t = pd.read_csv(f"{d}/regimes.csv")
        reg[r] = t[t["regime"] == r].set_index("method")
        t = pd.read_csv(f"{d}/law_forms.csv")
        law[r] = t[(t["regime"] == r) & (t["m_fit"] == args.m_fit)].set_index("method")

    print("| | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    rows = {"candidate words (mean)": [], "queries": [], "N=1 (any scorer)": [], "oracle N=16": [],
            "oracle gain N=1→16": [], "relative gain": []}
    for (_, r, pool_path) in cells:
        pool = read_pool(pool_path)
        o = reg[r].loc["oracle"]
        rows["candidate words (mean)"].append(f"{pool[TEXT].str.split().str.len().mean():.1f}")
        rows["queries"].append(f"{pool[QUERY_ID].nunique()}")
        rows["N=1 (any scorer)"].append(f"{o['N=1']:.3f}")
        rows["oracle N=16"].append(f"{o['N=16']:.3f}")
        rows["oracle gain N=1→16"].append(f"{o['N=16'] - o['N=1']:+.3f}")
        rows["relative gain"].append(f"{(o['N=16'] - o['N=1']) / o['N=1']:+.0%}")
    for k, v in rows.items():
        print(f"| {k} | " + " | ".join(v) + " |")

    print("\nShare of the oracle gain at N=16 (± 95% CI half-width of the N=16 value; ↘ the curve falls somewhere):\n")
    print("| method | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    for m in METHODS:
        cells_m = []
        for r in names:
            if m not in reg[r].index:
                cells_m.append("–")
                continue
            row = reg[r].loc[m]
            fall = "" if bool(row["monotone"]) else f" ↘ (peak N={int(row['peak_n'])})"
            cells_m.append(f"{row['share']:.0%} ± {row['ci_half']:.3f}{fall}")
        print(f"| {m} | " + " | ".join(cells_m) + " |")

    print(f"\nThe law fitted on M_fit={args.m_fit}, trained RMs: best form's R² and max error (share of the oracle gain):\n")
    print("| RM | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    for m in TRAINED:
        cells_m = []
        for r in names:
            if m not in law[r].index:
                cells_m.append("–")
                continue
            row = law[r].loc[m]
            r2 = {f: row[f"r2_{f}"] for f in FORMS if np.isfinite(row[f"r2_{f}"])}
            best = max(r2, key=r2.get)
            ok = "✓" if r2[best] >= 0.95 and row[f"err_{best}"] <= 0.10 else "✗"
            cells_m.append(f"{best}: R² {r2[best]:.2f}, err {row[f'err_{best}']:.0%} {ok}")
        print(f"| {m} | " + " | ".join(cells_m) + " |")


if __name__ == "__main__":
    main()
