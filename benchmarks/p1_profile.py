"""Where P1's time goes: torch.profiler over one batch of 4 queries x N=16, the prefill, and the output layer alone.

    python benchmarks/p1_profile.py [--data ../shared/data/git-commits]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from ttpkit.data import load_split
from ttpkit.policy import SamplingConfig
from ttpkit.policy.local import LocalPolicy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/git-commits")
    args = ap.parse_args()
    ds = load_split(args.data, "dev")
    policy = LocalPolicy.embedded(ds.task, SamplingConfig(seed=0))
    prompts = [policy.prompt(q) for q in ds.queries[:4]]
    policy.complete(prompts[0], 2, 0)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        policy.complete_many(prompts, 16, [0, 1, 2, 3])
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
    with torch.inference_mode():
        t0 = time.perf_counter()
        caches, _, lengths = policy._prefill(prompts)
        print(f"prefill: {(time.perf_counter() - t0) / len(prompts):.2f} s per prompt ({sum(lengths) / len(lengths):.0f} tokens)")
    weight = policy.model.get_output_embeddings().weight  # the tied 262k-token output layer
    with torch.inference_mode():
        for rows in (1, 16, 64):
            x = torch.randn(rows, weight.shape[1])
            torch.nn.functional.linear(x, weight)
            t0 = time.perf_counter()
            for _ in range(5):
                torch.nn.functional.linear(x, weight)
            dt = (time.perf_counter() - t0) / 5
            print(f"output layer, {rows:>2} rows: {dt * 1000:.0f} ms ({dt * 1000 / rows:.1f} ms per row)")


if __name__ == "__main__":
    main()
