"""Where P3's scoring time goes, and what other encoder precisions would give.

Times ``RewardModel.score`` with profile and input embeddings cached (the P3
setting), then again with the candidates' embeddings cached too (features + RM
only), so the difference is the encoder. Then the encoder alone on the
candidates in float32, bf16 autocast, bf16 weights and int8 dynamic
quantization (per-tensor, per-channel), with each one's cosine to float32.

    python benchmarks/p3_encoder.py --rm results/git-commits/rm/user-prob \
        --pool results/git-commits/test.parquet --data ../shared/data/git-commits --split test
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import time
import warnings

import numpy as np
import torch

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
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    rm = RewardModel.load(args.rm)
    pool = read_pool(args.pool)
    queries = load_split(args.data, args.split).by_id()
    used = {queries[q] for q in pool["query_id"].unique()}
    enc = Encoder(batch_size=args.batch)
    enc.encode([q.source for q in used] + [p.target for q in used for p in q.profile])
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


if __name__ == "__main__":
    main()
