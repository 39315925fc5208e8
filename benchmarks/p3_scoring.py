"""P3: reward-model scoring throughput (candidates/s) with cached profile embeddings.

Profile items and query inputs are embedded first (as a long-running service has
them cached); the timed part embeds the candidates and runs features + the RM, so
it is the cost of scoring new candidates. Runs the float32 encoder and the
opt-in bfloat16 one at each batch size, and reports how far bf16 moves the
scores (Spearman correlation with the float32 scores, share of queries whose
best-of-N pick changes). The encoder has the depth the RM was trained on:
``user-prob-L2`` (2 of MiniLM's 6 layers) is the RM behind P3's figure,
``user-prob`` the full-encoder one.

    python benchmarks/p3_scoring.py --rm results/git-commits/rm/user-prob-L2 \
        --pool results/git-commits/test.parquet --data ../shared/data/git-commits --split test
"""

from __future__ import annotations

import time

import numpy as np
from scipy.stats import spearmanr

from _p3 import load, parser  # benchmarks/_p3.py
from ttpkit.reward.features import Encoder


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--batch", default="16,64,128", help="comma-separated encoder batch sizes")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="on cuda the encoder runs in bfloat16 either way")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    setup = load(ap)
    args, rm, pool, queries, cached = setup.args, setup.rm, setup.pool, setup.queries, setup.cached
    scores = {}
    for dtype in args.dtypes.split(","):
        for batch in (int(b) for b in args.batch.split(",")):
            enc = Encoder(batch_size=batch, dtype=dtype, layers=rm.config.encoder_layers, device=args.device)
            enc.encode(cached)  # the cached part
            enc.encode(["warm-up"])
            t0 = time.perf_counter()
            scores[dtype] = rm.score(pool, queries, encoder=enc).mean
            dt = time.perf_counter() - t0
            print(f"{args.device} {dtype:>8}, encoder batch {batch:>3}: {len(pool)} candidates of {pool['query_id'].nunique()} queries in {dt:.2f} s: "
                  f"{len(pool) / dt:.0f} candidates/s ({rm.config.variant}, encoder layers: {rm.config.encoder_layers or 'all'})")
    if {"float32", "bfloat16"} <= set(scores):
        a, b = scores["float32"], scores["bfloat16"]
        pick = pool.assign(a=a, b=b).groupby("query_id").agg(a=("a", "idxmax"), b=("b", "idxmax"))
        print(f"bf16 vs float32 scores: Spearman {spearmanr(a, b).statistic:.5f}, max |diff| {np.abs(a - b).max():.2e}, "
              f"best-of-{pool.groupby('query_id').size().max()} pick changed on {(pick.a != pick.b).mean():.1%} of queries")


if __name__ == "__main__":
    main()
