"""How far pool-consensus MBR (the exact scorer ttpkit reports) is from MBR computed within each draw of N.

    python benchmarks/mbr_within_draw.py results/git-commits/test.parquet results/debian-synopsis/test.parquet [--draws 400]

Prints, per pool and N, the exact best-of-N of pool-consensus MBR and the Monte-Carlo estimate of
within-draw MBR with its 95% half-width (docs/failures.md).
"""

from __future__ import annotations

import argparse

from ttpkit.pool import ROUGEL, candidates_per_query, n_grid, read_pool
from ttpkit.reward.mbr import mbr_scores, within_draw_mbr_curve
from ttpkit.scaling import curves


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pools", nargs="+")
    ap.add_argument("--draws", type=int, default=400)
    args = ap.parse_args()
    for path in args.pools:
        pool = read_pool(path, require=[ROUGEL])
        pool["score_mbr"] = mbr_scores(pool)
        ns = n_grid(candidates_per_query(pool))
        exact = curves(pool, ["mbr", "oracle"], ROUGEL, ns)
        mc, half = within_draw_mbr_curve(pool, ROUGEL, ns, draws=args.draws)
        gain = exact["oracle"].mean[-1] - exact["oracle"].mean[0]
        print(f"{path}: {exact['mbr'].n_queries} queries, M={ns[-1]}")
        print("| N | pool-consensus MBR | within-draw MBR (MC ± 95%) | difference / oracle gain |\n|---:|---:|---:|---:|")
        for n, e, w, h in zip(ns, exact["mbr"].mean, mc, half):
            print(f"| {n} | {e:.4f} | {w:.4f} ± {h:.4f} | {(e - w) / gain:+.1%} |")


if __name__ == "__main__":
    main()
