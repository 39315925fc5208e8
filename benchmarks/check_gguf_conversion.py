"""Check ttpkit's tensor-by-tensor GGUF conversion against ``transformers``' route, tensor by tensor, bit for bit.

Converts the GGUF with :func:`ttpkit.policy._gguf.convert_gguf` (weights and
config) into a temporary folder, in a child process whose peak RSS
(``ru_maxrss``) and wall time are reported, then compares every tensor with
a reference directory made by ``transformers``' route: the same names, shapes,
dtypes and bytes, and the same shard files. The reference is the cached
converted directory (``--reference``, by default ttpkit's cache entry for the
file, which ``transformers`` made before this converter existed), or, with
``--reference transformers``, a fresh conversion through ``transformers`` in
another child process (its peak RSS is reported too). ``config.json`` is
compared key by key; only ``transformers_version`` may differ.

    python benchmarks/check_gguf_conversion.py [--gguf FILE] [--reference DIR|transformers]

Exit status 0 when every tensor is bit-identical, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import resource, sys, time
from pathlib import Path
t = time.time()
gguf, out, route = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
if route == "ttpkit":
    from ttpkit.policy._gguf import convert_gguf
    assert convert_gguf(gguf, out), "not covered"
else:
    from ttpkit.policy._load import _convert_with_transformers
    _convert_with_transformers(gguf, out)
print(f"{route}: {time.time() - t:.1f} s, peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")
"""


def _convert(gguf: Path, out: Path, route: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-c", CHILD, str(gguf), str(out), route], capture_output=True, text=True)
    if r.returncode:
        sys.exit(f"{route} conversion failed:\n{r.stderr[-3000:]}")
    print(r.stdout.strip())


def _tensors(d: Path) -> dict[str, str]:
    """Tensor name -> shard file of a converted directory."""
    index = d / "model.safetensors.index.json"
    if index.exists():
        return json.loads(index.read_text())["weight_map"]
    from safetensors import safe_open

    with safe_open(str(d / "model.safetensors"), "pt") as f:
        return {k: "model.safetensors" for k in f.keys()}


def compare(ours: Path, ref: Path) -> int:
    """Print the differences between two converted directories; return how many tensors differ."""
    from safetensors import safe_open

    a, b = _tensors(ours), _tensors(ref)
    bad = same = 0
    if set(a) != set(b):
        print(f"names differ: only ours {sorted(set(a) - set(b))[:5]}, only reference {sorted(set(b) - set(a))[:5]}")
        bad += len(set(a) ^ set(b))
    if a != {k: b[k] for k in a if k in b}:
        print("the shard files differ (the tensors may still be equal)")
    for name in sorted(set(a) & set(b)):
        with safe_open(str(ours / a[name]), "pt") as fa, safe_open(str(ref / b[name]), "pt") as fb:
            x, y = fa.get_tensor(name), fb.get_tensor(name)
        if x.dtype != y.dtype or x.shape != y.shape or x.numpy().tobytes() != y.numpy().tobytes():
            print(f"DIFFERS: {name} {x.dtype} {tuple(x.shape)} vs {y.dtype} {tuple(y.shape)}")
            bad += 1
        else:
            same += 1
    print(f"{same} of {len(b)} tensors bit-identical")
    ca, cb = json.loads((ours / "config.json").read_text()), json.loads((ref / "config.json").read_text())
    for k in sorted(set(ca) | set(cb)):
        if ca.get(k) != cb.get(k) and k != "transformers_version":
            print(f"config.json {k}: ours {ca.get(k)!r}, reference {cb.get(k)!r}")
    return bad


def main() -> None:
    from ttpkit.policy._load import converted_dir, embedded_gguf_path

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, default=None, help="GGUF file (default: the embedded Gemma 3 270M)")
    ap.add_argument("--reference", default=None, help="converted directory to compare with, or 'transformers'")
    args = ap.parse_args()
    gguf = args.gguf or embedded_gguf_path()
    t = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        ours = Path(tmp) / "ours"
        _convert(gguf, ours, "ttpkit")
        if args.reference == "transformers":
            ref = Path(tmp) / "reference"
            _convert(gguf, ref, "transformers")
        else:
            ref = Path(args.reference) if args.reference else converted_dir(gguf)
        print(f"reference: {ref}")
        bad = compare(ours, ref)
    print(f"{'OK' if not bad else 'FAILED'} in {time.time() - t:.0f} s (this process: peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB)")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
