#!/usr/bin/env bash
# The pools and tables of docs/results.md, "Against greedy" (2 CPU cores: about 1 h 30 min quiet, more under load).
# Every pool is resumable: rerun after an interruption. Nothing is chosen on test.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DATA:-../shared/data}
O=results/greedy
export HF_HUB_OFFLINE=1
post() {  # label, and score with the RM behind the default (the stacked ranker reads its column)
  ttpkit label --pool "$3" --data "$D/$1" --split "$2"
  ttpkit score --pool "$3" --data "$D/$1" --split "$2" --rm default:user-prob
}
for t in git-commits debian-synopsis; do
  # 1. dev: 64 queries x 16 samples + the greedy row, per temperature (top-p 0.95)
  for T in 0.7 1.0; do
    p=$O/$t/dev_T$T.parquet
    ttpkit sample --data "$D/$t" --split dev --limit 64 --m 16 --temperature $T --greedy --out "$p"
    post $t dev "$p"
  done
  # 2. the temperature table and the CV over dev users (dev.md, dev.json)
  python scripts/against_greedy.py dev --task $t --pools $O/$t/dev_T0.7.parquet $O/$t/dev_T1.0.parquet
  # 3. test pools with the chosen sampler; the chosen ranker refitted on its dev pool and shipped with its card
  n=$([ $t = git-commits ] && echo 112 || echo 100)
  ttpkit sample --data "$D/$t" --split test --limit $n --m 16 --temperature 0.7 --greedy --out $O/$t/test_T0.7.parquet
  post $t test $O/$t/test_T0.7.parquet
  python scripts/against_greedy.py ship --task $t --pools $O/$t/dev_T0.7.parquet $O/$t/dev_T1.0.parquet \
    --test-pool $O/$t/test_T0.7.parquet
  python scripts/against_greedy.py test --task $t --pool $O/$t/test_T0.7.parquet --model src/ttpkit/models/$t/stacked
done
# 4. the committed T=1 test pools against the greedy decodes of the same prompts, every committed scorer
for t in git-commits debian-synopsis debian-description; do
  n=$([ $t = git-commits ] && echo 112 || echo 100)
  g=$O/$t/test_greedy.parquet
  ttpkit sample --data "$D/$t" --split test --limit $n --m 1 --temperature 0 --out $g
  ttpkit label --pool $g --data "$D/$t" --split test
  cols=$(python -c "import pandas as pd; print(','.join(c[6:] for c in pd.read_parquet('results/$t/test.parquet').columns if c.startswith('score_') and c != 'score_style'))")
  ttpkit curves --pool results/$t/test.parquet --greedy $g --scorers oracle,random,style${cols:+,$cols} --ns 1,2,4,8,16 \
    --format markdown > $O/$t/test_T1.0_vs_greedy.md
done
# 5. the implicit reward on git-commits dev (T=0.7), then the CV again with it as a candidate signal
python scripts/implicit_terms.py --pool $O/git-commits/dev_T0.7.parquet --data "$D/git-commits" --split dev --terms user,zero
python scripts/against_greedy.py dev --task git-commits --pools $O/git-commits/dev_T0.7.parquet --out /tmp/implicit-cv
