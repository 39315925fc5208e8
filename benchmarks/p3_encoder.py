"""Where P3's scoring time goes, and what other encoder precisions would give.

Times ``RewardModel.score`` with profile and input embeddings cached (the P3
setting), then again with the candidates' embeddings cached too (features + RM
only), so the difference is the encoder. Then the encoder alone on the
candidates in float32, bf16 autocast, bf16 weights and int8 dynamic
quantization (per-tensor, per-channel), with each one's cosine to float32
(``--compile`` adds ``torch.compile`` of float32 and bf16 weights; the
compiling happens in the untimed warm-up call). Last, the ceiling: the rate of bare matrix products of
the encoder's shapes on this machine, and the candidates/s it would allow if
the linear layers were all the encoder did.

    python benchmarks/p3_encoder.py --rm results/git-commits/rm/user-prob \
        --pool results/git-commits/test.parquet --data ../shared/data/git-commits --split test
"""

from __future__ import annotations

import contextlib
import copy
import time
import warnings

import numpy as np
import torch

from _p3 import load, parser  # benchmarks/_p3.py
from ttpkit.reward.features import Encoder


def main() -> None:
    ap = parser(__doc__)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile variants")
    setup = load(ap)
    args, rm, pool, queries = setup.args, setup.rm, setup.pool, setup.queries
    warnings.filterwarnings("ignore")
    enc = Encoder(batch_size=args.batch, layers=rm.config.encoder_layers)
    enc.encode(setup.cached)
    t0 = time.perf_counter()
    rm.score(pool, queries, encoder=enc)
    total = time.perf_counter() - t0
    t0 = time.perf_counter()
    rm.score(pool, queries, encoder=enc)  # candidates now cached too
    rest = time.perf_counter() - t0
    print(f"score, float32, batch {args.batch}: {total:.2f} s; encoder {total - rest:.2f} s ({(total - rest) / total:.0%}), "
          f"features + RM {rest:.2f} s")
    texts = pool["text"].fillna("").astype(str).tolist()
    lens = np.array([len(ids) for ids in enc.model.tokenizer(texts)["input_ids"]])
    print(f"candidate tokens: mean {lens.mean():.1f}, 90th percentile {np.percentile(lens, 90):.0f}, max {lens.max()}")
    model = enc.model
    ref = None
    variants = [
        ("float32", model, None),
        ("bf16 autocast", model, torch.bfloat16),
        ("bf16 weights", copy.deepcopy(model).to(torch.bfloat16), None),
        ("int8 per-tensor", torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8), None),
        ("int8 per-channel", torch.ao.quantization.quantize_dynamic(
            model, {torch.nn.Linear: torch.ao.quantization.per_channel_dynamic_qconfig}, dtype=torch.qint8), None),
    ]
    if args.compile:
        import torch._inductor.config as inductor

        inductor.freezing = True  # fold the weights into the graph, as for inference
        for name, dtype in (("compiled float32", None), ("compiled bf16 weights", torch.bfloat16)):
            m = copy.deepcopy(model).to(dtype) if dtype else copy.deepcopy(model)
            bert = m[0].auto_model
            bert.forward = torch.compile(bert.forward, dynamic=True)
            variants.append((name, m, None))
    for name, m, autocast in variants:
        ctx = torch.autocast("cpu", dtype=autocast) if autocast else contextlib.nullcontext()
        with ctx:
            m.encode(texts[:64], batch_size=args.batch)
            t0 = time.perf_counter()
            v = m.encode(texts, batch_size=args.batch, convert_to_tensor=True).float().numpy()
            dt = time.perf_counter() - t0
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        ref = v if ref is None else ref
        cos = (v * ref).sum(1)
        print(f"encoder alone, {name:>16}: {len(texts) / dt:.0f} texts/s; cosine to float32 mean {cos.mean():.5f}, min {cos.min():.5f}")
    cfg = model[0].auto_model.config
    h, f = cfg.hidden_size, cfg.intermediate_size
    flop_per_token = 2 * cfg.num_hidden_layers * (4 * h * h + 2 * h * f)  # Q, K, V, output; FFN in and out
    rows = args.batch * int(round(lens.mean()))
    for dtype in (torch.float32, torch.bfloat16):
        rates = []
        for k, n in ((h, h), (h, f), (f, h)):
            x, w, b = torch.randn(rows, k, dtype=dtype), torch.randn(n, k, dtype=dtype), torch.randn(n, dtype=dtype)
            for _ in range(3):
                torch.nn.functional.linear(x, w, b)
            t0 = time.perf_counter()
            for _ in range(20):
                torch.nn.functional.linear(x, w, b)
            rates.append(2 * rows * k * n * 20 / (time.perf_counter() - t0))
        rate = min(rates), max(rates)
        print(f"ceiling, {str(dtype)[6:]:>8}: products of ({rows} x {h}/{f}) run at {rate[0] / 1e9:.0f}-{rate[1] / 1e9:.0f} GFLOP/s; "
              f"{flop_per_token / 1e6:.1f} MFLOP per token x {lens.mean():.1f} tokens allow at most "
              f"{rate[0] / flop_per_token / lens.mean():.0f}-{rate[1] / flop_per_token / lens.mean():.0f} candidates/s")


if __name__ == "__main__":
    main()
