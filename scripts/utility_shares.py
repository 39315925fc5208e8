"""Share of the oracle gain at the largest N of each scorer under each utility (rougeL, rougeLsum, rouge1).

    python scripts/utility_shares.py results/long-form/study/cache/scored-<test>.parquet style,mbr,user-mse,user-pairwise,user-prob,ens5

The reward models learn one utility (rougeL); this shows how their ranking fares when the same
candidates are judged by the others, and how well the utilities agree within a query.
"""

from __future__ import annotations

import sys

import numpy as np
from scipy.stats import spearmanr

from ttpkit.pool import QUERY_ID, ROUGE1, ROUGEL, ROUGELSUM, candidates_per_query, read_pool
from ttpkit.scaling import curves


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    pool = read_pool(sys.argv[1], require=[ROUGEL, ROUGELSUM, ROUGE1])
    names = sys.argv[2].split(",")
    m = candidates_per_query(pool)
    print(f"| utility | oracle N=1 → N={m} | " + " | ".join(names) + " |")
    print("|---|---:|" + "---:|" * len(names))
    for u in (ROUGEL, ROUGELSUM, ROUGE1):
        c = curves(pool, ["oracle", *names], u, [1, m], n_boot=2)
        o = c["oracle"].mean
        gain = o[1] - o[0]
        print(f"| {u} | {o[0]:.3f} → {o[1]:.3f} | " + " | ".join(f"{(c[n].mean[1] - c[n].mean[0]) / gain:.0%}" for n in names) + " |")
    for u in (ROUGELSUM, ROUGE1):
        rho = [spearmanr(g[ROUGEL], g[u]).statistic for _, g in pool.groupby(QUERY_ID) if g[ROUGEL].nunique() > 1 and g[u].nunique() > 1]
        print(f"\nmean within-query Spearman ρ of rougeL and {u}: {np.mean(rho):.2f} ({len(rho)} queries)")


if __name__ == "__main__":
    main()
