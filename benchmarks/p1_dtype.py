"""P1 in float32 and bfloat16 side by side: ttpkit's sampler on the embedded Gemma 3 270M (``--dtype``).

Each dtype runs in its own child process, one after the other, so that load
time and peak memory (``ru_maxrss``) are each dtype's own. Every child loads
the model, samples the same prompts at 1 prompt per batch (latency, N per
prompt) and at ``--batch`` prompts per batch (what ``ttpkit sample`` does),
then once more with other seeds. It prints, per dtype: seconds per query at
``--batch`` and at 1 prompt per batch, load seconds and peak RSS. Then the
distributions:

* sampled first-token total-variation distance, as ``p1_sampling.py`` reports
  it: bf16 (seeds B) against fp32 (seeds A), next to the noise floor fp32
  (seeds B) against fp32 (seeds A); same sample counts;
* exact first-token TV: the top-p nucleus of the first token computed from
  the prefill logits of each dtype (no sampling noise), averaged over prompts;
* with ``--pool-queries Q`` (issue 30's check, e.g. 64): a pool of Q dev
  queries x N candidates sampled as ``ttpkit sample`` does (per-query seeds,
  ``--batch`` queries per decode batch), labelled with ROUGE-L against the
  references: each dtype's mean length (tokens), mean utility and oracle
  (best of N) with 95% bootstrap intervals over queries, and the paired
  difference to the reference dtype with its interval. bf16 keeps the
  distribution when its first-token TV is at the noise floor and its mean
  utility and oracle lie inside the reference's intervals (the paired
  differences' intervals containing 0).

    python benchmarks/p1_dtype.py [--data ../shared/data/git-commits] [--queries 4] [--n 16] [--batch 4]
                                  [--dtypes float32,bfloat16] [--device cpu|cuda] [--json out.json]
                                  [--pool-queries 64]

bf16 without native CPU support (no AVX512-BF16 or AMX) is emulated and slower
than float32; the script prints whether this CPU has it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections import Counter


def child(args: argparse.Namespace) -> dict:
    """One dtype's measurements (run in a fresh process)."""
    import torch

    from ttpkit.data import load_split
    from ttpkit.policy import SamplingConfig
    from ttpkit.policy.local import LocalPolicy
    from ttpkit.policy.spec import _place

    ds = load_split(args.data, args.split)
    cfg = SamplingConfig(seed=0, max_new_tokens=args.max_new_tokens or ds.task.max_new_tokens or 32)
    t0 = time.perf_counter()
    policy = _place(LocalPolicy.embedded(ds.task, cfg, dtype=args.child), args.device, args.child)
    load_s = time.perf_counter() - t0
    prompts = [policy.prompt(q) for q in ds.queries[: args.queries]]
    lens = [policy.tokenizer(p, return_tensors="pt").input_ids.shape[1] for p in prompts]
    policy.complete(prompts[0], 2, 0)  # warm-up

    def first_tokens(texts: list[str]) -> list[int]:
        ids = [policy.tokenizer(" " + t, add_special_tokens=False).input_ids if t else [] for t in texts]
        return [r[0] for r in ids if r]

    def run(batch: int, seeds: list[int]) -> tuple[float, list[int], float]:
        rows, lengths = [], []
        t = time.perf_counter()
        for i in range(0, len(prompts), batch):
            for texts in policy.complete_many(prompts[i : i + batch], args.n, seeds[i : i + batch]):
                rows += first_tokens(texts)
                lengths += [len(x) for x in texts]
        return (time.perf_counter() - t) / len(prompts), rows, sum(lengths) / max(len(lengths), 1)

    seeds_a = list(range(len(prompts)))
    seeds_b = [1000 + i for i in seeds_a]
    t_one, _, _ = run(1, seeds_a)
    t_batch, rows_a, chars = run(args.batch, seeds_a)
    _, rows_b, _ = run(args.batch, seeds_b)
    nuclei = []
    with torch.inference_mode():  # the exact first-token nucleus of each prompt, from this dtype's prefill logits
        _, first, _ = policy._prefill(prompts)
        for logits in first:
            z = (logits[0].float() / cfg.temperature).masked_fill(policy._stop_mask.to(logits.device), float("-inf"))
            p, idx = torch.softmax(z, -1).sort(descending=True)
            keep = (p.cumsum(-1) - p) < cfg.top_p
            p, idx = p[keep] / p[keep].sum(), idx[keep]
            nuclei.append(dict(zip(idx.tolist(), p.tolist())))
    pool = sample_pool(policy, ds.queries[: args.pool_queries], args.n, args.batch) if args.pool_queries else {}
    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {**pool, "dtype": args.child, "device": args.device, "load_s": load_s, "s_per_query_batch": t_batch,
            "s_per_query_one": t_one, "peak_rss_gb": rss_kb / 1e6, "prompt_tokens": sum(lens) / len(lens),
            "mean_chars": chars, "first_a": rows_a, "first_b": rows_b, "nuclei": nuclei,
            "threads": torch.get_num_threads()}


TV_SLACK = 0.05  # the spread of the sampled noise floor itself at 64 samples is a few hundredths


def sample_pool(policy, queries: list, n: int, batch: int) -> dict:
    """Per query: mean and best ROUGE-L of its ``n`` candidates (sampled as ``ttpkit sample`` does) and their mean length in tokens."""
    from ttpkit.utility import rouge_many

    mean_u, best_u, tokens = [], [], []
    t = time.perf_counter()
    for i in range(0, len(queries), batch):
        chunk = queries[i : i + batch]
        for q, cands in zip(chunk, policy.sample(chunk, n)):
            u = rouge_many([c.text for c in cands], [q.reference] * len(cands))["rougeL"].to_numpy()
            mean_u.append(float(u.mean()))
            best_u.append(float(u.max()))
            tokens.append(sum(c.n_tokens for c in cands) / len(cands))
    return {"pool_mean": mean_u, "pool_oracle": best_u, "pool_tokens": tokens,
            "pool_s_per_query": (time.perf_counter() - t) / max(len(queries), 1)}


def ci(x: list[float], y: list[float] | None = None, draws: int = 2000) -> tuple[float, float, float]:
    """Mean of ``x`` (of ``x - y``, paired, if ``y``) and its 95% bootstrap interval over queries (seed 0)."""
    import numpy as np

    d = np.asarray(x) - (np.asarray(y) if y is not None else 0.0)
    idx = np.random.default_rng(0).integers(0, len(d), size=(draws, len(d)))
    lo, hi = np.percentile(d[idx].mean(axis=1), [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


def pool_check(ref: dict, r: dict) -> dict:
    """Prints and returns the pool comparison of ``r`` against ``ref``; ``keeps`` is whether every paired interval holds 0."""
    out, keeps = {}, True
    for key, name in (("pool_tokens", "mean length, tokens"), ("pool_mean", "mean ROUGE-L"), ("pool_oracle", "oracle ROUGE-L (best of N)")):
        (m0, l0, h0), (m1, l1, h1), (d, dl, dh) = ci(ref[key]), ci(r[key]), ci(r[key], ref[key])
        inside = l0 <= m1 <= h0
        keeps &= dl <= 0 <= dh
        out[key] = {"ref": [m0, l0, h0], "other": [m1, l1, h1], "diff": [d, dl, dh], "inside_ref_ci": inside}
        print(f"  {name:<27} {ref['dtype']} {m0:.4f} [{l0:.4f}, {h0:.4f}]  {r['dtype']} {m1:.4f} [{l1:.4f}, {h1:.4f}]  "
              f"paired diff {d:+.4f} [{dl:+.4f}, {dh:+.4f}]{'' if inside else '  OUTSIDE the reference interval'}")
    return {**out, "keeps": keeps}


def tv(a: Counter | dict, b: Counter | dict) -> float:
    na, nb = max(sum(a.values()), 1e-12), max(sum(b.values()), 1e-12)
    return 0.5 * sum(abs(a.get(k, 0) / na - b.get(k, 0) / nb) for k in set(a) | set(b))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/git-commits")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4, help="prompts per decode batch")
    ap.add_argument("--n", type=int, default=16, help="samples per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: the task's (32 one-line)")
    ap.add_argument("--dtypes", default="float32,bfloat16", help="comma-separated; the first is the reference")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--pool-queries", type=int, default=0, help="also sample a pool of this many dev queries and compare utilities")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    from ttpkit.device import native_bf16

    print(f"{args.queries} prompts, N={args.n}, device {args.device}, native CPU bf16: {native_bf16()}")
    print(f"{'dtype':<10} {args.batch} per batch  1 per batch   load     peak RSS", flush=True)
    results = []
    for dtype in args.dtypes.split(","):  # one child per dtype, its row printed as soon as it ends
        cmd = [sys.executable, __file__, *sys.argv[1:], "--child", dtype]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        if proc.returncode:
            sys.exit(f"{dtype} failed:\n{proc.stderr[-3000:]}")
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(f"{r['dtype']:<10} {r['s_per_query_batch']:6.2f} s/q    {r['s_per_query_one']:6.2f} s/q   "
              f"{r['load_s']:5.1f} s  {r['peak_rss_gb']:5.2f} GB  (prompts of {r['prompt_tokens']:.0f} tokens, "
              f"{r['threads']} threads)", flush=True)
    ref = results[0]
    fa, fb = Counter(ref["first_a"]), Counter(ref["first_b"])
    floor = tv(fb, fa)
    for r in results[1:]:
        speed = f"{ref['s_per_query_batch'] / r['s_per_query_batch']:.2f}x at {args.batch} per batch, " \
                f"{ref['s_per_query_one'] / r['s_per_query_one']:.2f}x at 1"
        exact = sum(tv(a, b) for a, b in zip(r["nuclei"], ref["nuclei"])) / len(ref["nuclei"])
        print(f"{r['dtype']} vs {ref['dtype']}: {speed}; mean characters per candidate {r['mean_chars']:.1f} vs {ref['mean_chars']:.1f}")
        print(f"  sampled first-token TV to {ref['dtype']} (seeds A): {r['dtype']} (seeds B) {tv(Counter(r['first_b']), fa):.3f}, "
              f"{ref['dtype']} (seeds B) {floor:.3f} = the noise floor ({len(ref['first_a'])} samples each)")
        print(f"  exact first-token TV of the top-p nuclei (prefill logits), mean over prompts: {exact:.4f}")
        r["tv_sampled"], r["tv_floor"], r["tv_exact"] = tv(Counter(r["first_b"]), fa), floor, exact
        if args.pool_queries:
            print(f"  pool of {len(ref['pool_mean'])} queries x {args.n}: {ref['pool_s_per_query']:.2f} vs {r['pool_s_per_query']:.2f} s/query")
            r["pool_check"] = pool_check(ref, r)
            r["keeps_distribution"] = r["pool_check"]["keeps"] and r["tv_sampled"] <= floor + TV_SLACK
            print(f"  {r['dtype']} keeps the distribution (sampled TV <= noise floor + {TV_SLACK}, "
                  f"every paired interval holds 0): {r['keeps_distribution']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: v for k, v in r.items() if k not in ("first_a", "first_b", "nuclei") and not k.startswith("pool_")
                        or k in ("pool_check", "pool_s_per_query")} for r in results], f, indent=1)


if __name__ == "__main__":
    main()
