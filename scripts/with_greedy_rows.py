"""Add a pool of greedy decodes to a pool sampled without them, as its greedy rows (idx M, greedy True).

    python scripts/with_greedy_rows.py --pool results/git-commits/test.parquet \
        --greedy results/greedy/git-commits/test_greedy.parquet --out results/greedy/git-commits/test_T1.0.parquet

The greedy decode of a prompt does not depend on the seed or on the samples beside it (ttpkit.policy), so a
pool of greedy decodes (`ttpkit sample --temperature 0 --m 1`) sampled later is the same as the greedy row
`--greedy` would have added. Only the pool columns and labels are kept: score the result again (`ttpkit score`)
so that every row, the greedy ones included, has every score.
"""

from __future__ import annotations

import argparse

import pandas as pd

from ttpkit.pool import GREEDY, IDX, POOL_COLUMNS, QUERY_ID, SAMPLING_COLUMNS, UTILITIES, candidates_per_query, pool_manifest, read_pool, write_pool


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", required=True)
    ap.add_argument("--greedy", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    pool, greedy = read_pool(args.pool), read_pool(args.greedy)
    m = candidates_per_query(pool)
    keep = [c for c in (*POOL_COLUMNS, *SAMPLING_COLUMNS, *UTILITIES) if c in pool.columns or c in greedy.columns]
    greedy = greedy[greedy[QUERY_ID].isin(set(pool[QUERY_ID]))].drop_duplicates(QUERY_ID).assign(**{IDX: m, GREEDY: True})
    out = pd.concat([pool.assign(**{GREEDY: False}), greedy], ignore_index=True)
    out = out[[c for c in keep if c in out.columns]].sort_values([QUERY_ID, IDX], kind="stable")
    order = {q: i for i, q in enumerate(dict.fromkeys(pool[QUERY_ID]))}
    out = out.sort_values(QUERY_ID, key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    write_pool(out, args.out, pool_manifest(pool))
    print(f"{args.out}: {len(pool)} samples of {len(order)} queries (M={m}) and {len(greedy)} greedy rows")


if __name__ == "__main__":
    main()
