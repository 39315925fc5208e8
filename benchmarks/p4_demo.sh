#!/usr/bin/env bash
# P4: wall time and peak RSS of `ttpkit demo` (GNU time), then the demo's own output.
# Pass --cold to use an empty model cache (adds the one-time GGUF dequantization). Runs the ttpkit that
# `python -m ttpkit.cli` imports (set PYTHONPATH to measure a checkout other than the installed one).
# GNU time's "Maximum resident set size" is the largest single process (the GGUF conversion runs in a
# child); "tree peak RSS" is the largest sum over the demo's whole process group, sampled every 0.2 s.
set -euo pipefail
out=$(mktemp -d)
if [ "${1:-}" = "--cold" ]; then export TTPKIT_CACHE_DIR="$out/cache"; fi
setsid /usr/bin/time -v "${PYTHON:-python}" -m ttpkit.cli demo --out "$out/demo" 2> "$out/time.txt" > "$out/stdout.txt" &
pid=$!
peak=0
while kill -0 "$pid" 2>/dev/null; do
  now=$(ps -o rss= -g "$pid" 2>/dev/null | awk '{s += $1} END {print s + 0}')
  [ "$now" -gt "$peak" ] && peak=$now
  sleep 0.2
done
wait "$pid" || { tail -20 "$out/time.txt"; exit 1; }
grep -E "Elapsed \(wall clock\)|Maximum resident set size" "$out/time.txt"
echo "	tree peak RSS, whole process group (kbytes): $peak"
cat "$out/stdout.txt"
