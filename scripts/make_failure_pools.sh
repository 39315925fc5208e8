#!/usr/bin/env bash
# The large-N pools of docs/failures.md: M=64 candidates for the first 64 test queries (16 users)
# of each data set, embedded Gemma 3 270M, seed 0. Resumable: rerun to continue.
# Usage: bash scripts/make_failure_pools.sh [DATA_ROOT] [OUT_ROOT]
set -euo pipefail
data=${1:-../shared/data}
out=${2:-results/failures}
for ds in git-commits debian-synopsis; do
  ttpkit sample --data "$data/$ds" --split test --m 64 --limit 64 --out "$out/$ds/test64.parquet"
  ttpkit label --pool "$out/$ds/test64.parquet" --data "$data/$ds" --split test
done
