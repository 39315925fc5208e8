#!/usr/bin/env bash
# P4: wall time and peak RSS of `ttpkit demo` (GNU time). Pass --cold to use an empty model cache.
set -euo pipefail
out=$(mktemp -d)
if [ "${1:-}" = "--cold" ]; then export TTPKIT_CACHE_DIR="$out/cache"; fi
/usr/bin/time -v ttpkit demo --out "$out/demo" 2> "$out/time.txt" >/dev/null || { tail -20 "$out/time.txt"; exit 1; }
grep -E "Elapsed \(wall clock\)|Maximum resident set size" "$out/time.txt"
