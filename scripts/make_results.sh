#!/usr/bin/env bash
# Train and score every RM variant on one data set's pools, then diagnose; prints the tables of docs/results.md.
# Usage: bash scripts/make_results.sh DATASET [DATA_ROOT] [RUNS_ROOT]   (after scripts/make_pools.sh)
set -euo pipefail
ds=$1
data=${2:-../shared/data}/$ds
runs=${3:-runs}/$ds
dev=()
[ -f "$runs/dev.parquet" ] && dev=(--dev-pool "$runs/dev.parquet")
for v in global-mse user-mse user-pairwise user-prob; do
  ttpkit train-rm --pool "$runs/train.parquet" "${dev[@]}" --data "$data" --variant "$v" --out "$runs/rm/$v"
  ttpkit score --rm "$runs/rm/$v" --pool "$runs/test.parquet" --data "$data"
done
ttpkit train-rm --pool "$runs/train.parquet" "${dev[@]}" --data "$data" --variant user-prob --beta 0.5 --out "$runs/rm/user-prob-beta0.5"
ttpkit score --rm "$runs/rm/user-prob-beta0.5" --pool "$runs/test.parquet" --data "$data" --name user-prob-beta0.5
# user-prob on a 2-layer encoder: the RM of the P3 scoring benchmark (docs/performance.md)
ttpkit train-rm --pool "$runs/train.parquet" "${dev[@]}" --data "$data" --variant user-prob --encoder-layers 2 --out "$runs/rm/user-prob-L2"
scorers=random,style,global-mse,user-mse,user-pairwise,user-prob,user-prob@lcb:1,user-prob@ucb:1,user-prob@thompson,user-prob-beta0.5,oracle
ttpkit diagnose --pool "$runs/test.parquet" --scorers "$scorers" --data "$data" --out "$runs/report"
python scripts/results_table.py "$runs/test.parquet" "$runs/report/law.json" ${scorers//,/ }
