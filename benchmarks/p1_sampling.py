"""P1: shared-prefill sampling vs HF generate(num_return_sequences=N) on the embedded Gemma 3 270M.

Same prompts (4-shot git-commits prompts, about 600 tokens), same decoding
(temperature 1.0, top-p 0.95, at most 32 new tokens, stop at the end of the
line). Prints seconds per query for naive generate and for ttpkit, one query per
batch (latency) and ``--batch`` queries per batch (what ``LocalPolicy.sample``
does; throughput), the speed ratios, and token-level statistics of the output
distributions (mean length in tokens, share of empty lines, total-variation
distance of the first-token distributions, against two naive runs as the noise
floor). int8 is opt-in and changes the outputs; the statistics show by how much.

    python benchmarks/p1_sampling.py [--data ../shared/data/git-commits] [--queries 4] [--n 16] [--batch 4] [--device cuda]

On ``--device cuda`` both samplers run on the GPU in bfloat16 (int8 is skipped:
it is CPU-only); ``benchmarks/p1_dtype.py`` compares float32 with bfloat16.

A multi-line task (``--data ../shared/data/debian-description``) decodes up to the
task's token limit (192) and stops at EOS or at a line that starts the next
example; naive ``generate`` gets the same stop strings.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch

from ttpkit.data import load_split
from ttpkit.device import model_dtype
from ttpkit.policy import SamplingConfig
from ttpkit.policy.local import LocalPolicy
from ttpkit.policy.spec import _place


def naive(policy: LocalPolicy, prompt: str, n: int, seed: int) -> list[list[int]]:
    tok, model, cfg = policy.tokenizer, policy.model, policy.config
    ids = tok(prompt, return_tensors="pt").input_ids.to(model.device)
    stop = policy._stop_mask.nonzero().squeeze(1).tolist()
    task = policy.prompt.task
    extra = {"stop_strings": [f"\n{task.source_label}:", f"\n{task.target_label}:"], "tokenizer": tok} if task.multiline else {}
    torch.manual_seed(seed)
    with torch.inference_mode():
        out = model.generate(
            ids, do_sample=True, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0, max_new_tokens=cfg.max_new_tokens,
            num_return_sequences=n, eos_token_id=stop, pad_token_id=tok.pad_token_id, **extra,
        )
    rows = []
    for r in out[:, ids.shape[1]:].tolist():
        cut = next((i for i, t in enumerate(r) if t in set(stop)), len(r))
        rows.append(r[:cut])
    return rows


def stats(rows: list[list[int]]) -> tuple[float, float, Counter]:
    lengths = [len(r) for r in rows]
    return sum(lengths) / len(lengths), sum(x == 0 for x in lengths) / len(lengths), Counter(r[0] for r in rows if r)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="../shared/data/git-commits")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4, help="queries per decode batch")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=None, help="default: the task's (32 one-line, 192 multi-line)")
    ap.add_argument("--skip-int8", action="store_true", help="do not measure the opt-in int8 model")
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="cuda: bfloat16 on the GPU, int8 skipped")
    args = ap.parse_args()
    args.skip_int8 = args.skip_int8 or args.device != "cpu"
    ds = load_split(args.data, args.split)
    policy = LocalPolicy.embedded(ds.task, SamplingConfig(seed=0, max_new_tokens=args.max_new_tokens or ds.task.max_new_tokens or 32))
    policy = _place(policy, args.device, model_dtype(args.device))
    prompts = [policy.prompt(q) for q in ds.queries[: args.queries]]
    lens = [policy.tokenizer(p, return_tensors="pt").input_ids.shape[1] for p in prompts]
    print(f"{len(prompts)} prompts, mean {sum(lens) / len(lens):.0f} tokens, N={args.n}, threads={torch.get_num_threads()}, "
          f"device {args.device} ({policy.model.dtype})")
    policy.complete(prompts[0], 2, 0)  # warm-up
    seeds = list(range(len(prompts)))

    def tokens(texts: list[str]) -> list[list[int]]:
        return [policy.tokenizer(" " + t, add_special_tokens=False).input_ids if t else [] for t in texts]

    def batched(pol: LocalPolicy, batch: int) -> tuple[float, list[list[int]]]:
        rows = []
        t0 = time.perf_counter()
        for i in range(0, len(prompts), batch):
            for texts in pol.complete_many(prompts[i : i + batch], args.n, seeds[i : i + batch]):
                rows += tokens(texts)
        return (time.perf_counter() - t0) / len(prompts), rows

    t_one, _ = batched(policy, 1)
    t_ours, ours_rows = batched(policy, args.batch)
    t0 = time.perf_counter()
    naive_rows = [r for i, p in enumerate(prompts) for r in naive(policy, p, args.n, seed=i)]
    t_naive = (time.perf_counter() - t0) / len(prompts)
    naive_rows2 = [r for i, p in enumerate(prompts) for r in naive(policy, p, args.n, seed=1000 + i)]  # noise floor
    print(f"naive generate(num_return_sequences={args.n}):        {t_naive:.2f} s/query")
    print(f"ttpkit, 1 query per batch (latency):           {t_one:.2f} s/query, {t_naive / t_one:.2f}x naive")
    print(f"ttpkit, {args.batch} queries per batch (LocalPolicy.sample): {t_ours:.2f} s/query, {t_naive / t_ours:.2f}x naive")
    if args.skip_int8:
        int8_rows = ours_rows
    else:
        int8 = LocalPolicy(policy.model, policy.tokenizer, ds.task, policy.config, policy.name).quantize_int8()
        int8.complete(prompts[0], 2, 0)
        t_int8, int8_rows = batched(int8, args.batch)
        print(f"ttpkit + int8 (opt-in, changes outputs), {args.batch} per batch: {t_int8:.2f} s/query, {t_naive / t_int8:.2f}x naive")

    def tv(a: Counter, b: Counter) -> float:
        na, nb = max(sum(a.values()), 1), max(sum(b.values()), 1)
        return 0.5 * sum(abs(a[k] / na - b[k] / nb) for k in set(a) | set(b))

    (la, ea, fa), (lb, eb, fb), (lc, ec, fc) = stats(ours_rows), stats(naive_rows), stats(int8_rows)
    (_, _, fd) = stats(naive_rows2)
    if args.skip_int8:
        print(f"mean tokens per candidate: ttpkit {la:.1f}, naive {lb:.1f}; empty: {ea:.1%}, {eb:.1%}")
        print(f"first-token total-variation distance to naive: ttpkit {tv(fa, fb):.3f}, "
              f"naive with other seeds {tv(fd, fb):.3f} (the noise floor; {len(ours_rows)} samples each)")
        return
    print(f"mean tokens per candidate: ttpkit {la:.1f}, naive {lb:.1f}, int8 {lc:.1f}; empty: {ea:.1%}, {eb:.1%}, {ec:.1%}")
    print(f"first-token total-variation distance to naive: ttpkit {tv(fa, fb):.3f}, int8 {tv(fc, fb):.3f}, "
          f"naive with other seeds {tv(fd, fb):.3f} (the noise floor; {len(ours_rows)} samples each)")


if __name__ == "__main__":
    main()
