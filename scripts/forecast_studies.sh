#!/usr/bin/env bash
# The forecasting protocol on the curves of the failure and long-form studies (docs/results.md, issue 23).
# Runs copies of studies/failures.yaml and studies/long-form.yaml with forecast_boot: 40 and without the LLM judge
# and the cross-encoder (those need about 40 minutes more on 2 cores), then gathers every regime's
# forecast/<regime>.csv into results/forecast/studies/. Regimes finished before an interruption are kept;
# rerun to continue (the study cache holds the trained RMs and scored pools).
# Usage: bash scripts/forecast_studies.sh [WORK_DIR] [OUT_DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-/tmp/forecast-studies}
out=${2:-$root/results/forecast/studies}
mkdir -p "$work" "$out"
for f in failures long-form; do
  sed -e "s#\.\./\.\./shared/#$root/../shared/#g" -e "s#: \.\./results/#: $root/results/#g" \
      -e 's/, judge: true//; s/, cross: true//' -e "s/^name: .*/name: $f-forecast/" \
      -e 's/^members: 5.*/members: 5\nforecast_boot: 40/' "$root/studies/$f.yaml" > "$work/$f.yaml"
  ttpkit bench "$work/$f.yaml" --out "$work/$f-out" || echo "$f: interrupted; the regimes it finished are kept"
done
python - "$work" "$out" <<'PY'
import glob, sys
import pandas as pd
work, out = sys.argv[1:]
files = sorted(glob.glob(f"{work}/*-out/forecast/*.csv"))
pd.concat([pd.read_csv(f) for f in files], ignore_index=True).to_csv(f"{out}/forecast.csv", index=False)
print(f"{len(files)} regimes")
PY
python "$root/scripts/forecast_law.py" --render --out "$out"
