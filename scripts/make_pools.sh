#!/usr/bin/env bash
# Sample and label the candidate pools behind docs/results.md (embedded Gemma 3 270M, seed 0).
# Resumable: rerun to continue an interrupted run. Usage: bash scripts/make_pools.sh [DATA_ROOT] [OUT_ROOT]
set -euo pipefail
data=${1:-../shared/data}
out=${2:-runs}
pool() {  # dataset split m [limit]
  local ds=$1 split=$2 m=$3 limit=${4:-}
  ttpkit sample --data "$data/$ds" --split "$split" --m "$m" --out "$out/$ds/$split.parquet" ${limit:+--limit $limit}
  ttpkit label --pool "$out/$ds/$split.parquet" --data "$data/$ds" --split "$split"
}
pool git-commits test 16
pool git-commits train 8
pool git-commits dev 8 48
pool debian-synopsis test 16 100
pool debian-synopsis train 8 300
pool debian-synopsis dev 8 48
