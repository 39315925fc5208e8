"""The dist form on fresh seeds of the synthetic populations, against their true curves (docs/results.md, issue 23).

For each population and seed: the pool of ``ttpkit.scaling.synthetic_pool`` (400 queries x 64), the dist form
fitted on the first 8 candidates of each query, and its max gain error against ``true_curve`` (1,024 fresh
candidates per query) at N = 1..64. Prints the mean, the share of seeds within 0.10 and how often the predicted
peak is within a factor 2 of the true one. ``--detect score`` fits with the score-only top cluster (before
session 11) instead of the joint hacked cluster, for the comparison in docs/results.md.

    python scripts/forecast_synthetic_seeds.py --seeds 10:30 [--detect score]    (about 2 min on 2 cores)
"""

from __future__ import annotations

import argparse

import numpy as np

import ttpkit.scaling._dist as dist
from ttpkit.scaling import KINDS, find_peak, gain_error, query_stats, synthetic_pool, true_curve
from ttpkit.scaling._bon import best_of_n
from ttpkit.scaling._synthetic import _draw, _effects
from ttpkit.scaling._tails import top_cluster

NS = [1, 2, 4, 8, 16, 32, 64]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", default="10:30", help="a range start:stop of population seeds")
    ap.add_argument("--detect", choices=("joint", "score"), default="joint")
    args = ap.parse_args()
    start, stop = (int(x) for x in args.seeds.split(":"))
    if args.detect == "score":  # the rule before session 11: the score's empirical-null cluster alone
        dist.hack_cluster = lambda z, d, r: top_cluster(z.ravel()).reshape(z.shape)
    print(f"{'population':10s} {'mean err':>8s} {'<= 0.10':>8s} {'peak x2':>8s}")
    for kind in KINDS:
        errs, peaks, peaked = [], 0, 0
        for seed in range(start, stop):
            truth = true_curve(kind, NS, seed=seed)
            _, u = _draw(kind, 400, 1024, np.random.default_rng([seed, 2]), _effects(kind, 400, seed))
            pred = dist.fit_dist(query_stats(synthetic_pool(kind, seed=seed), "rm", "rougeL"), 8).predict(NS)
            errs.append(gain_error(pred, truth, best_of_n(u, u, NS).mean(0)))
            true_peak = find_peak(NS, truth)
            if true_peak.inside:
                peaked += 1
                peaks += true_peak.n / 2 <= find_peak(NS, pred).n <= true_peak.n * 2
        e = np.array(errs)
        print(f"{kind:10s} {e.mean():8.3f} {np.mean(e <= 0.10):8.0%} {f'{peaks}/{peaked}' if peaked else '-':>8s}")


if __name__ == "__main__":
    main()
