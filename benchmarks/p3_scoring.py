"""P3: reward-model scoring throughput (candidates/s) with cached profile embeddings.

Profile items and query inputs are embedded first (as a long-running service has
them cached); the timed part embeds the candidates (batch size --batch) and runs
features + the RM, so it is the cost of scoring new candidates.

    python benchmarks/p3_scoring.py --rm runs/git-commits/rm/user-prob --pool runs/git-commits/test.parquet \
        --data ../shared/data/git-commits --split test
"""

from __future__ import annotations

import argparse
import time

from ttpkit.data import load_split
from ttpkit.pool import read_pool
from ttpkit.reward.features import Encoder
from ttpkit.reward.models import RewardModel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rm", required=True)
    ap.add_argument("--pool", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", default="test")
    ap.add_argument("--batch", type=int, default=128)
    args = ap.parse_args()
    rm = RewardModel.load(args.rm)
    pool = read_pool(args.pool)
    queries = load_split(args.data, args.split).by_id()
    enc = Encoder(batch_size=args.batch)
    used = {queries[q] for q in pool["query_id"].unique()}
    enc.encode([q.source for q in used] + [p.target for q in used for p in q.profile])  # the cached part
    t0 = time.perf_counter()
    rm.score(pool, queries, encoder=enc)
    dt = time.perf_counter() - t0
    print(f"{len(pool)} candidates of {len(used)} queries in {dt:.2f} s: {len(pool) / dt:.0f} candidates/s "
          f"(encoder batch {args.batch}, {rm.config.variant})")


if __name__ == "__main__":
    main()
