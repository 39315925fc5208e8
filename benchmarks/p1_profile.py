"""Where P1's time goes: torch.profiler over one batch of 4 queries x N=16, the prefill, and the output layer alone.

    python benchmarks/p1_profile.py [--data ../shared/data/git-commits] [--dtype bfloat16] [--skip-profile]

The prefill is timed two ways in the same run (fastest of 3 each): one forward
pass per prompt (what the sampler does) and all prompts in one right-padded
pass with an attention mask (issue 30's question: would one padded pass for a
decode batch beat a prefill per prompt?).
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.profiler import ProfilerActivity, profile

from ttpkit.data import load_split
from ttpkit.policy import SamplingConfig
from ttpkit.policy.local import LocalPolicy


def prefills(policy: LocalPolicy, prompts: list[str]) -> None:
    """Prints the prefill time per prompt, one pass per prompt against one right-padded pass for all (fastest of 3)."""
    from transformers import DynamicCache

    tok, model = policy.tokenizer, policy.model
    batch = tok(prompts, return_tensors="pt", padding=True, padding_side="right")
    lengths = batch.attention_mask.sum(1)

    def padded() -> None:
        model(**batch, use_cache=True, logits_to_keep=torch.unique(lengths - 1), past_key_values=DynamicCache(config=model.config))

    with torch.inference_mode():
        for name, fn in (("one pass per prompt", lambda: policy._prefill(prompts)), ("one padded pass", padded)):
            best = min(_timed(fn) for _ in range(3))
            print(f"prefill, {name}: {best / len(prompts):.3f} s per prompt ({lengths.float().mean():.0f} tokens on average, "
                  f"{batch.input_ids.shape[1]} padded; {policy.model.dtype})")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/git-commits")
    ap.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    ap.add_argument("--skip-profile", action="store_true", help="only the prefill and output-layer timings")
    args = ap.parse_args()
    ds = load_split(args.data, "dev")
    policy = LocalPolicy.embedded(ds.task, SamplingConfig(seed=0), dtype=args.dtype)
    prompts = [policy.prompt(q) for q in ds.queries[:4]]
    policy.complete(prompts[0], 2, 0)  # warm-up
    if not args.skip_profile:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            policy.complete_many(prompts, 16, [0, 1, 2, 3])
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8))
    prefills(policy, prompts)
    weight = policy.model.get_output_embeddings().weight  # the tied 262k-token output layer
    with torch.inference_mode():
        for rows in (1, 16, 64):
            x = torch.randn(rows, weight.shape[1], dtype=weight.dtype)
            torch.nn.functional.linear(x, weight)
            t0 = time.perf_counter()
            for _ in range(5):
                torch.nn.functional.linear(x, weight)
            dt = (time.perf_counter() - t0) / 5
            print(f"output layer, {rows:>2} rows: {dt * 1000:.0f} ms ({dt * 1000 / rows:.1f} ms per row)")


if __name__ == "__main__":
    main()
