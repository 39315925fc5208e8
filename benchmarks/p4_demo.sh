#!/usr/bin/env bash
# P4: wall time and peak RSS of `ttpkit demo` (GNU time), then the demo's own output.
# Pass --cold to use an empty model cache (adds the one-time GGUF dequantization). Runs the ttpkit that
# `python -m ttpkit.cli` imports (set PYTHONPATH to measure a checkout other than the installed one).
set -euo pipefail
out=$(mktemp -d)
if [ "${1:-}" = "--cold" ]; then export TTPKIT_CACHE_DIR="$out/cache"; fi
/usr/bin/time -v "${PYTHON:-python}" -m ttpkit.cli demo --out "$out/demo" 2> "$out/time.txt" > "$out/stdout.txt" || { tail -20 "$out/time.txt"; exit 1; }
grep -E "Elapsed \(wall clock\)|Maximum resident set size" "$out/time.txt"
cat "$out/stdout.txt"
