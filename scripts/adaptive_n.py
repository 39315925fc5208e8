"""Adaptive N against fixed N on the test pools, scored by the bundled user-pairwise model (docs/results.md).

    python scripts/adaptive_n.py --results results

Reads ``<results>/bundled/<task>/test.parquet`` (written by scripts/train_bundled.py),
replays adaptive stopping (rounds of 4, up to 16) over 200 random orders of each
query's 16 candidates per threshold (:func:`ttpkit.scaling.adaptive_curve`), and
writes ``<results>/bundled/adaptive.csv``, ``adaptive.md`` and ``adaptive_<task>.png``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from ttpkit.pool import ROUGEL, read_pool
from ttpkit.report import adaptive_markdown, plot_adaptive
from ttpkit.scaling import adaptive_curve, curves

TASKS = ("git-commits", "debian-synopsis")
SCORER = "bundled-user-pairwise"
THRESHOLDS = (1.0, 0.5, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02, 0.01, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=Path("results"))
    ap.add_argument("--orders", type=int, default=200)
    args = ap.parse_args()
    rows, fixed = [], {}
    for task in TASKS:
        pool = read_pool(args.results / "bundled" / task / "test.parquet", require=[ROUGEL])
        fixed[task] = curves(pool, [SCORER], ROUGEL, list(range(1, 17)))[SCORER]
        table = adaptive_curve(pool, SCORER, THRESHOLDS, ROUGEL, round_size=4, n_orders=args.orders)
        table.insert(0, "task", task)
        rows.append(table)
        plot_adaptive(fixed[task], table, args.results / "bundled" / f"adaptive_{task}.png", title=f"{task}: adaptive vs fixed N")
        print(table.round(4).to_string(index=False), flush=True)
    out = pd.concat(rows, ignore_index=True)
    out.to_csv(args.results / "bundled" / "adaptive.csv", index=False)
    (args.results / "bundled" / "adaptive.md").write_text(adaptive_markdown(out, fixed))


if __name__ == "__main__":
    main()
