#!/usr/bin/env bash
# The pools and tables of docs/results.md, "Against greedy" (2 CPU cores; about 2 h quiet, far more under load).
# Every pool is resumable: rerun after an interruption. Nothing is chosen on test.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}
O=results/greedy
export HF_HUB_OFFLINE=1
for t in git-commits debian-synopsis; do
  # 1. dev: 64 queries x 16 samples + the greedy row, at four temperatures (top-p 0.95)
  for T in 0.3 0.5 0.7 1.0; do
    p=$O/$t/dev_T$T.parquet
    ttpkit sample --data $D/$t --split dev --limit 64 --m 16 --temperature $T --greedy --out $p
    ttpkit label --pool $p --data $D/$t --split dev
    ttpkit score --pool $p --data $D/$t --split dev --rm default
  done
  # 2. the default (temperature and scorer) chosen by CV over the dev users; the stacked ranker saved with the bundled models
  python scripts/against_greedy.py dev --task $t --pools $O/$t/dev_T*.parquet --save src/ttpkit/models/$t/stacked
done
# 3. test: the greedy decodes beside the committed T=1 pools (M=16), and every committed scorer against them
for t in git-commits debian-synopsis debian-description; do
  n=$([ $t = git-commits ] && echo 112 || echo 100)
  g=$O/$t/test_greedy.parquet
  ttpkit sample --data $D/$t --split test --limit $n --m 1 --temperature 0 --out $g
  ttpkit label --pool $g --data $D/$t --split test
  ttpkit curves --pool results/$t/test.parquet --greedy $g --scorers oracle,random,style,$(python -c "
import pandas as pd; print(','.join(c[6:] for c in pd.read_parquet('results/$t/test.parquet').columns if c.startswith('score_') and c != 'score_style'))") \
    --format markdown > $O/$t/test_T1.0_vs_greedy.md
done
