#!/usr/bin/env bash
# Do the multi-line features help? user-pairwise and user-mse trained with and without RMConfig.long_form
# on the debian-description train pool (early stopping on dev), scored on a copy of the test pool.
# Usage: bash scripts/long_form_ablation.sh [DATA_ROOT]   (writes results/long-form/ablation/)
set -euo pipefail
data=${1:-../shared/data}/debian-description
pools=results/debian-description
out=results/long-form/ablation
mkdir -p "$out"
cp "$pools/test.parquet" "$out/test.parquet"
for variant in user-pairwise user-mse; do
  for lf in long-form no-long-form; do
    ttpkit train-rm --pool "$pools/train.parquet" --dev-pool "$pools/dev.parquet" --data "$data" \
      --variant "$variant" --"$lf" --out "$out/$variant-$lf"
    ttpkit score --rm "$out/$variant-$lf" --pool "$out/test.parquet" --data "$data" --name "$variant-$lf"
  done
done
ttpkit curves --pool "$out/test.parquet" --ns 1,2,4,8,16 --format markdown \
  --scorers oracle,random,user-pairwise-long-form,user-pairwise-no-long-form,user-mse-long-form,user-mse-no-long-form \
  | tee "$out/curves.md"
python - "$out/test.parquet" <<'PY'
import sys
import numpy as np
import pandas as pd
from ttpkit.scaling import curves
pool = pd.read_parquet(sys.argv[1])
c = curves(pool, ["oracle"] + [f"{v}-{lf}" for v in ("user-pairwise", "user-mse") for lf in ("long-form", "no-long-form")], "rougeL", [1, 16])
o = c["oracle"].per_query
rng = np.random.default_rng(0)
for v in ("user-pairwise", "user-mse"):
    a, b = c[f"{v}-long-form"].per_query[:, -1], c[f"{v}-no-long-form"].per_query[:, -1]
    boot = []
    for _ in range(2000):
        i = rng.integers(0, len(a), len(a))
        boot.append((a[i].mean() - b[i].mean()) / (o[i, -1].mean() - o[i, 0].mean()))
    gain = o[:, -1].mean() - o[:, 0].mean()
    print(f"{v}: share {(a.mean() - o[:, 0].mean()) / gain:.0%} with the multi-line features, "
          f"{(b.mean() - o[:, 0].mean()) / gain:.0%} without; difference {(a.mean() - b.mean()) / gain:+.3f} "
          f"[{np.percentile(boot, 2.5):+.3f}, {np.percentile(boot, 97.5):+.3f}]")
PY
