"""Adaptive N against fixed N on the test pools, scored by the bundled user-pairwise model (docs/results.md).

    python scripts/adaptive_n.py --results results

Reads ``<results>/bundled/<task>/test.parquet`` (written by scripts/train_bundled.py),
replays adaptive stopping (rounds of 4, up to 16) over 200 random orders of each
query's 16 candidates per threshold (:func:`ttpkit.scaling.adaptive_curve`), and
writes ``<results>/bundled/adaptive.csv``, ``adaptive.md`` and ``adaptive_<task>.png``
(or under ``--out``). ``--scorer bundled-user-prob --scale 1`` measures the gain in
ROUGE-L units with the probabilistic model's predicted utility instead.
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
    ap.add_argument("--scorer", default=SCORER)
    ap.add_argument("--scale", type=float, default=None, help="unit of the gain (default: the scorer's std over the pool)")
    ap.add_argument("--thresholds", default=",".join(map(str, THRESHOLDS)))
    ap.add_argument("--out", type=Path, default=None, help="output directory (default: <results>/bundled)")
    args = ap.parse_args()
    out_dir = args.out or args.results / "bundled"
    out_dir.mkdir(parents=True, exist_ok=True)
    thresholds = [float(t) for t in args.thresholds.split(",")]
    rows, fixed = [], {}
    for task in TASKS:
        pool = read_pool(args.results / "bundled" / task / "test.parquet", require=[ROUGEL])
        fixed[task] = curves(pool, [args.scorer], ROUGEL, list(range(1, 17)))[args.scorer]
        table = adaptive_curve(pool, args.scorer, thresholds, ROUGEL, round_size=4, n_orders=args.orders, scale=args.scale)
        table.insert(0, "task", task)
        rows.append(table)
        plot_adaptive(fixed[task], table, out_dir / f"adaptive_{task}.png", title=f"{task}: adaptive vs fixed N")
        print(table.round(4).to_string(index=False), flush=True)
    out = pd.concat(rows, ignore_index=True)
    out.to_csv(out_dir / "adaptive.csv", index=False)
    (out_dir / "adaptive.md").write_text(adaptive_markdown(out, fixed))


if __name__ == "__main__":
    main()
