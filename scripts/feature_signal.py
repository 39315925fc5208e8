"""Which RM features carry signal on a labelled pool: each feature's within-query Spearman correlation with utility.

    python scripts/feature_signal.py results/debian-synopsis/train.parquet ../shared/data/debian-synopsis \
        results/debian-description/train.parquet ../shared/data/debian-description --out results/debian-description/features.md

Pairs of (pool, data directory) are compared side by side. A feature helps an RM
rank one query's candidates only through its variation within the query, so
the table reports the mean over queries of the within-query Spearman ρ (with a
bootstrap 95% CI over queries) and the share of queries where the feature is
constant. Runs the real encoder (cached).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from ttpkit import stages
from ttpkit.pool import QUERY_ID, ROUGEL, read_pool
from ttpkit.reward.features import LONG_FEATURES, build_features


def signal(pool: pd.DataFrame, data_dir: str, utility: str, seed: int = 0) -> pd.DataFrame:
    data = stages.dataset_for_pool(data_dir, pool)
    enc = stages.default_encoder()
    x = build_features(pool, data.by_id(), enc, LONG_FEATURES)
    enc.save_cache()
    u = pool[utility].to_numpy()
    groups = pool.groupby(QUERY_ID, sort=False).indices
    rows = []
    rng = np.random.default_rng(seed)
    for j, name in enumerate(LONG_FEATURES):
        rhos, const = [], 0
        for idx in groups.values():
            f, y = x[idx, j], u[idx]
            if np.ptp(f) == 0 or np.ptp(y) == 0:
                const += np.ptp(f) == 0
                continue
            rhos.append(spearmanr(f, y).statistic)
        r = np.asarray(rhos)
        boot = [rng.choice(r, len(r)).mean() for _ in range(1000)] if len(r) else [np.nan]
        rows.append({"feature": name, "rho": r.mean() if len(r) else np.nan, "lo": np.percentile(boot, 2.5),
                     "hi": np.percentile(boot, 97.5), "constant": const / len(groups)})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pairs", nargs="+", help="pool data [pool data ...]")
    ap.add_argument("--utility", default=ROUGEL)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    if len(args.pairs) % 2:
        ap.error("give pairs of: pool data-directory")
    tables = []
    for pool_path, data_dir in zip(args.pairs[::2], args.pairs[1::2]):
        pool = read_pool(pool_path, require=[args.utility])
        t = signal(pool, data_dir, args.utility).set_index("feature")
        name = Path(data_dir).name
        tables.append(t.rename(columns=lambda c: f"{name} {c}"))
        print(f"{name}: {pool[QUERY_ID].nunique()} queries, {len(pool)} candidates")
    table = pd.concat(tables, axis=1)
    lines = ["| feature | " + " | ".join(f"{Path(d).name}: mean within-query ρ [95% CI], constant"
                                          for d in args.pairs[1::2]) + " |",
             "|---|" + "---|" * (len(args.pairs) // 2)]
    for feat, row in table.iterrows():
        cells = []
        for d in args.pairs[1::2]:
            n = Path(d).name
            cells.append(f"{row[f'{n} rho']:+.3f} [{row[f'{n} lo']:+.3f}, {row[f'{n} hi']:+.3f}], {row[f'{n} constant']:.0%}")
        lines.append(f"| `{feat}` | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
