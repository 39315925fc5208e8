#!/usr/bin/env bash
# The GPU benchmarks of issue 22, back to back, in under 10 minutes on one GPU:
#   P1 sampling: ttpkit float32 vs bfloat16 on CUDA (p1_dtype.py), then ttpkit vs naive generate (p1_sampling.py),
#     then ttpkit's half of the side-by-side with vLLM (peer_vllm.sh, issue 30: same prompts, batched and one prompt,
#     both dtypes; vLLM's half only if this python imports a CUDA vllm, else skipped);
#   P3 RM scoring: encoder + RM throughput on CUDA (p3_scoring.py, the 2-layer and full-encoder RMs);
#   RM training: `ttpkit train-rm --device cuda` (the encoder on the GPU), wall time.
#
#   bash benchmarks/gpu_all.sh [RESULTS_DIR]      # default: $OUT if set, else results/gpu
#   DATA=/path/to/data bash benchmarks/gpu_all.sh  # LaMP-layout data sets (default: ../shared/data, or shared/data here)
#
# Each step has its own time limit (they add up to 9.5 minutes) and a failed or timed-out step does not stop
# the others. Without the git-commits data set, P1 runs on the bundled sample and the P3/training steps are
# skipped. The GPU's name, torch and CUDA versions go to RESULTS_DIR/gpu.txt, each step's output to
# RESULTS_DIR/<step>.txt; the numbers for docs/performance.md are in those files.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-results/gpu}}"
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="${PWD}/src:${PWD}/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
data="${DATA:-../shared/data}"
[ -d "$data/git-commits" ] || data="shared/data"

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available(),
    torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"; } | tee "$out/gpu.txt"

step() {  # step NAME SECONDS COMMAND...
  local name=$1 limit=$2; shift 2
  echo "== $name (limit ${limit} s)"
  local t0=$SECONDS
  timeout "$limit" "$@" > "$out/$name.txt" 2>&1
  local rc=$?
  echo "rc=$rc wall=$((SECONDS - t0))s" >> "$out/$name.txt"
  tail -n 12 "$out/$name.txt"
}

if [ -d "$data/git-commits" ]; then
  gc="$data/git-commits"
else
  gc="$(python -c 'from ttpkit.data import bundled_sample_dir; print(bundled_sample_dir())')"
  echo "no git-commits data under $data: P1 on the bundled sample ($gc), P3 and training skipped"
fi

step p1_dtype 120 python benchmarks/p1_dtype.py --data "$gc" --device cuda --queries 8 --n 16 --batch 4 --json "$out/p1_dtype.json"
step p1_sampling 100 python benchmarks/p1_sampling.py --data "$gc" --device cuda --queries 4 --n 16 --batch 4
step peer_vllm 80 env DEVICE=cuda DATA="$gc" REPS=1 bash benchmarks/peer_vllm.sh "$out/peer_vllm"
if [ "$gc" = "$data/git-commits" ]; then
  for rm in user-prob-L2 user-prob; do
    step "p3_scoring_$rm" 60 python benchmarks/p3_scoring.py --rm "results/git-commits/rm/$rm" \
        --pool results/git-commits/test.parquet --data "$gc" --split test --device cuda --dtypes bfloat16 --batch 64,256
  done
  step train_rm 150 python -m ttpkit.cli train-rm --pool results/git-commits/train.parquet --dev-pool results/git-commits/dev.parquet \
      --data "$gc" --out "$out/rm-user-prob" --variant user-prob --device cuda
fi
echo "== done: $out"
