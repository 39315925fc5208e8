#!/usr/bin/env bash
# Every performance benchmark, back to back (run nothing else meanwhile). About 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== P1"; python benchmarks/p1_sampling.py --queries 4 --n 16
echo "== P2"; python benchmarks/p2_curves.py
for rm in user-prob-L2 user-prob; do  # the 2-layer-encoder RM, then the full-encoder one
  echo "== P3 ($rm)"; python benchmarks/p3_scoring.py --rm results/git-commits/rm/$rm --pool results/git-commits/test.parquet \
      --data ../shared/data/git-commits --split test
done
echo "== P4"; bash benchmarks/p4_demo.sh
echo "== end"
