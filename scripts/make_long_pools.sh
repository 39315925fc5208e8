#!/usr/bin/env bash
# Sample and label the debian-description pools behind docs/results.md's long-form section
# (embedded Gemma 3 270M, 4-shot, seed 0, the task's 192-token limit). Resumable: rerun to continue.
# Batched decoding of a 270M model gains little from a second thread, so two one-thread processes
# share the 2 cores. What was run: test (100 x 16) beside train queries 0-199 (x 8); then dev (32 x 8);
# then train queries from 200 and from 250 in two processes, stopped at the time budget (see the
# train row of docs/results.md for how many each reached); the three train files were merged.
# Usage: bash scripts/make_long_pools.sh [DATA_ROOT] [OUT_ROOT] [TRAIN_B] [TRAIN_C]
set -euo pipefail
data=${1:-../shared/data}/debian-description
out=${2:-results}/debian-description
b=${3:-50} c=${4:-50}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
ttpkit sample --data "$data" --split test --m 16 --limit 100 --out "$out/test.parquet" &
ttpkit sample --data "$data" --split train --m 8 --limit 200 --out "$out/train.parquet"
wait
ttpkit sample --data "$data" --split dev --m 8 --limit 32 --out "$out/dev.parquet"
ttpkit sample --data "$data" --split train --m 8 --offset 200 --limit "$b" --out "$out/train-b.parquet" &
ttpkit sample --data "$data" --split train --m 8 --offset 250 --limit "$c" --out "$out/train-c.parquet"
wait
python - "$out" <<'PY'
import sys
import pandas as pd
from ttpkit.pool import read_pool, write_pool, pool_manifest
out = sys.argv[1]
parts = [read_pool(f"{out}/{name}.parquet") for name in ("train", "train-b", "train-c")]
merged = pd.concat(parts, ignore_index=True).drop_duplicates(["query_id", "idx"])
write_pool(merged, f"{out}/train.parquet", next((pool_manifest(p) for p in parts if pool_manifest(p)), None))
PY
for split in train dev test; do
  ttpkit label --pool "$out/$split.parquet" --data "$data" --split "$split"
done
