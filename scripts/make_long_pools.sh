#!/usr/bin/env bash
# Sample and label the debian-description pools behind docs/results.md's long-form tables
# (embedded Gemma 3 270M, 4-shot, seed 0, the task's 192-token limit). Resumable: rerun to continue.
# Two processes of one thread each use 2 cores better than one of two threads (batched decoding of a
# 270M model does not scale to two threads). Usage: bash scripts/make_long_pools.sh [DATA_ROOT] [OUT_ROOT]
set -euo pipefail
data=${1:-../shared/data}/debian-description
out=${2:-results}/debian-description
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
ttpkit sample --data "$data" --split test --m 16 --limit 100 --out "$out/test.parquet" &
ttpkit sample --data "$data" --split train --m 8 --limit 300 --out "$out/train.parquet"
wait
ttpkit sample --data "$data" --split dev --m 8 --limit 32 --out "$out/dev.parquet"
for split in train dev test; do
  ttpkit label --pool "$out/$split.parquet" --data "$data" --split "$split"
done
