"""P3's trade-off: how many MiniLM layers the reward model's features need.

For each data set and each encoder depth (``Encoder(layers=L)``, the first L
of MiniLM's 6 layers, mean-pooled), times the encoder alone on the test
pool's candidates (nothing cached, float32), then trains RMs on features from
that encoder (train pool, dev pool for early stopping, several seeds) and
scores the held-out test pool. Reports the share of the oracle's
best-of-N gain each recovers and, against the 6-layer encoder, the paired
difference in expected best-of-N utility with a 95% bootstrap interval over
queries (scores averaged over seeds).

    python benchmarks/p3_layers.py --results results --data ../shared/data

(the pools are the ones behind docs/results.md; 7 min on 2 cores).
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np

from ttpkit.data import load_split
from ttpkit.pool import read_pool
from ttpkit.reward.features import Encoder
from ttpkit.reward.models import RewardModel, RMConfig
from ttpkit.scaling import best_of_n, bootstrap_ci, pool_matrix
from ttpkit.utility import within_query_corr


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", default="results", help="directory with <data set>/{train,dev,test}.parquet")
    ap.add_argument("--data", default="../shared/data")
    ap.add_argument("--datasets", default="git-commits,debian-synopsis")
    ap.add_argument("--layers", default="6,3,2,1")
    ap.add_argument("--variants", default="user-prob,user-pairwise")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n", type=int, default=16, help="N of the best-of-N comparison")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    seeds = [int(s) for s in args.seeds.split(",")]
    print("| data set | layers | encoder texts/s | RM | share of oracle gain at N=%d (mean ± sd over %d seeds) "
          "| within-query corr | best-of-%d vs 6 layers [95%% CI] |" % (args.n, len(seeds), args.n))
    print("|---|---:|---:|---|---:|---:|---:|")
    for ds in args.datasets.split(","):
        q = {s: load_split(f"{args.data}/{ds}", s).by_id() for s in ("train", "dev", "test")}
        pools = {s: read_pool(f"{args.results}/{ds}/{s}.parquet") for s in ("train", "dev", "test")}
        test = pools["test"]
        util = test["rougeL"].to_numpy()
        ids, U = pool_matrix(test, util)
        oracle = best_of_n(U, U, [1, args.n]).mean(0)
        full: dict[str, np.ndarray] = {}
        for layers in (int(x) for x in args.layers.split(",")):
            enc = Encoder(batch_size=16, layers=layers)
            texts = test["text"].fillna("").astype(str).tolist()
            enc.encode(["warm-up"])
            t0 = time.perf_counter()
            enc.encode(texts)
            speed = len(set(texts)) / (time.perf_counter() - t0)
            for variant in args.variants.split(","):
                shares, corrs, per_query = [], [], []
                for seed in seeds:
                    cfg = RMConfig(variant=variant, seed=seed, encoder_layers=layers)
                    rm = RewardModel(cfg).fit(pools["train"], q["train"], pools["dev"], q["dev"], encoder=enc)
                    s = rm.score(test, q["test"], encoder=enc).mean
                    _, S = pool_matrix(test, s)
                    b = best_of_n(S, U, [1, args.n])
                    shares.append((b[:, 1].mean() - b[:, 0].mean()) / (oracle[1] - oracle[0]))
                    corrs.append(within_query_corr(s, util, test["query_id"].to_numpy()))
                    per_query.append(b[:, 1])
                pq = np.mean(per_query, axis=0)
                if layers == 6:
                    full[variant] = pq
                    vs = "(reference)"
                elif variant in full:
                    lo, hi = bootstrap_ci((pq - full[variant])[:, None])
                    vs = f"{(pq - full[variant]).mean():+.4f} [{lo[0]:+.4f}, {hi[0]:+.4f}]"
                else:
                    vs = "n/a"
                print(f"| {ds} | {layers} | {speed:.0f} | {variant} | {np.mean(shares):.3f} ± {np.std(shares):.3f} "
                      f"| {np.mean(corrs):.3f} | {vs} |", flush=True)


if __name__ == "__main__":
    main()
