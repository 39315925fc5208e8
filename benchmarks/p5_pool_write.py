"""P5: the time to write a 100,000-row pool, one query at a time: a pool file (journal + fold) against part files.

The same rows (6,250 queries x 16 candidates of about 60 characters, no model)
go through the two writers exactly as ``ttpkit sample`` feeds them: one
``add`` per finished query, then a final ``fold``.

* ``file``: :class:`ttpkit.pool.PoolWriter` on ``pool.parquet`` with ``fold_every=8``
  (today's single-file pool): every query is journaled (fsync), and every 8th
  query the whole Parquet file is read and rewritten, so the total work grows
  with the square of the pool's size.
* ``parts``: :class:`ttpkit.pool.PartWriter` on ``pool/`` with ``flush_every=8``:
  every 8th query becomes one new part file (fsync, rename); nothing is rewritten.

Both end with one :func:`ttpkit.pool.read_pool`, timed apart, and the script
checks that the two pools hold the same rows.

    PYTHONPATH=src python benchmarks/p5_pool_write.py            # 6,250 x 16
    PYTHONPATH=src python benchmarks/p5_pool_write.py --queries 1000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd

from ttpkit.policy.base import Candidate
from ttpkit.pool import IDX, QUERY_ID, PartWriter, PoolWriter, read_pool


def candidates(queries: int, m: int) -> list[list[Candidate]]:
    """Deterministic candidates, ``m`` per query, of commit-subject length."""
    return [[Candidate(f"q{q:06d}", f"u{q // 4:05d}", i, f"subsystem-{q % 97}: fix the handling of case {i} in module {q * 31 % 1009}",
                       "gemma3-270m", 0) for i in range(m)] for q in range(queries)]


def timed_write(writer: PoolWriter | PartWriter, pool: list[list[Candidate]], checkpoints: set[int]) -> tuple[float, dict[int, float]]:
    """Total seconds to add every query then fold, and the elapsed time at each checkpoint (queries done)."""
    t0, at = time.perf_counter(), {}
    for q, cands in enumerate(pool, 1):
        writer.add(cands)
        if q in checkpoints:
            at[q] = time.perf_counter() - t0
    writer.fold()
    return time.perf_counter() - t0, at


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--queries", type=int, default=6250)
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--every", type=int, default=8, help="fold_every of the file writer, flush_every of the part writer")
    args = ap.parse_args()
    pool = candidates(args.queries, args.m)
    checkpoints = {args.queries // 4, args.queries // 2, args.queries}
    rows: list[tuple] = []
    with tempfile.TemporaryDirectory() as tmp:
        frames = {}
        for name, writer in (("parts", PartWriter(Path(tmp) / "pool", flush_every=args.every)),
                             ("file", PoolWriter(Path(tmp) / "pool.parquet", fold_every=args.every))):
            total, at = timed_write(writer, pool, checkpoints)
            t0 = time.perf_counter()
            frames[name] = read_pool(writer.path)
            rows.append((name, total, *(at[c] for c in sorted(checkpoints)), time.perf_counter() - t0,
                         len(list(Path(tmp).glob("pool/part-*"))) if name == "parts" else 1))
        key = [QUERY_ID, IDX]
        same = frames["file"].sort_values(key).reset_index(drop=True).equals(frames["parts"].sort_values(key).reset_index(drop=True))
    n = args.queries * args.m
    marks = " ".join(f"{f'at {c:,} q':>11}" for c in sorted(checkpoints))
    print(f"{n:,} rows ({args.queries:,} queries x {args.m}), flush/fold every {args.every} queries; same rows: {same}")
    print(f"{'writer':<7} {'total s':>8} {marks} {'read s':>7} {'files':>6}")
    for name, total, *rest in rows:
        *ats, read, files = rest
        print(f"{name:<7} {total:8.1f} " + " ".join(f"{a:11.1f}" for a in ats) + f" {read:7.2f} {files:6d}")
    if not same:
        raise SystemExit("the two pools differ")


if __name__ == "__main__":
    pd.set_option("display.width", 120)
    main()
