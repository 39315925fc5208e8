"""What the encoder's depth costs at scoring time: 16 candidates of one query, and a whole test pool.

For each reward model given (``--rm``, repeatable: say the 2-layer and the
full-encoder one) and each encoder dtype, with the queries' inputs and
profiles embedded first (as a service that has seen the user has them):

- **one query**: score the 16 new candidates of each of ``--queries`` test
  queries, one query per call (what ``ttpkit personalize`` does after
  sampling); median and 90th percentile over the queries, in ms;
- **one query, new user**: the same for a user seen for the first time (an
  empty cache: the input and profile items are embedded too), median in ms;
- **the pool**: every candidate of the test pool in one call, in s and
  candidates/s.

Each timing is the fastest of ``--repeats`` runs (per query for the first
two), and the load average is printed before and after: on a shared machine
the times move with the load.

    python benchmarks/p3_depth.py --pool results/git-commits/test.parquet --data ../shared/data/git-commits \\
        --rm src/ttpkit/models/git-commits/user-pairwise --rm results/git-commits/rm/user-prob-L2
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from ttpkit.data import load_split
from ttpkit.pool import QUERY_ID, read_pool
from ttpkit.reward.encoder import Encoder
from ttpkit.reward.models import RewardModel


def _texts(queries) -> list[str]:
    return [q.source for q in queries] + [p.target for q in queries for p in q.profile]


def _encoder(model, dtype: str, layers: int | None, cache: dict | None = None) -> Encoder:
    """A new encoder over an already loaded model (a service has the weights loaded), holding a copy of ``cache``."""
    enc = Encoder(dtype=dtype, layers=layers)
    enc._model = model
    enc.cache = dict(cache or {})
    return enc


def _timed(rm: RewardModel, rows, by_id, enc: Encoder) -> tuple[float, float]:
    """(wall, CPU) seconds of scoring ``rows``; CPU time is this process's, all threads (less moved by other load)."""
    w0, c0 = time.perf_counter(), time.process_time()
    rm.score(rows, by_id, encoder=enc)
    return time.perf_counter() - w0, time.process_time() - c0


def _measure(rm: RewardModel, pool, by_id, qids, dtype: str, repeats: int) -> dict[str, np.ndarray]:
    """The three timings of one RM and dtype (see the module docstring), each the fastest of ``repeats`` runs.

    Returns:
        ``{"one", "cold"}``: (2, Q) wall and CPU seconds per query; ``"pool"``: (2,) wall and CPU seconds.
    """
    base = Encoder(dtype=dtype, layers=rm.config.encoder_layers)
    base.encode(["warm-up"])  # loads the model
    base.encode(_texts([by_id[q] for q in pool[QUERY_ID].unique()]))  # every input and profile: what a service has
    known = dict(base.cache)
    one, cold = np.full((repeats, 2, len(qids)), np.inf), np.full((repeats, 2, len(qids)), np.inf)
    whole = np.full((repeats, 2), np.inf)
    for r in range(repeats):
        warm = _encoder(base.model, base.dtype, base.layers, known)  # new candidates, known users
        for j, q in enumerate(qids):
            rows = pool[pool[QUERY_ID] == q]
            one[r, :, j] = _timed(rm, rows, by_id, warm)
            cold[r, :, j] = _timed(rm, rows, by_id, _encoder(base.model, base.dtype, base.layers))  # a new user
        whole[r] = _timed(rm, pool, by_id, _encoder(base.model, base.dtype, base.layers, known))
    return {"one": one.min(0), "cold": cold.min(0), "pool": whole.min(0)}  # per query, the fastest repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rm", action="append", required=True, help="reward model directory (repeatable)")
    ap.add_argument("--pool", required=True, help="test pool to score")
    ap.add_argument("--data", required=True, help="LaMP-layout data directory of the pool")
    ap.add_argument("--split", default="test")
    ap.add_argument("--dtypes", default="auto", help="encoder dtypes, comma-separated (auto: bf16 where native)")
    ap.add_argument("--queries", type=int, default=10, help="queries timed one at a time")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each timing; the fastest counts (a shared box)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    by_id = load_split(args.data, args.split).by_id()
    pool = read_pool(args.pool)
    qids = list(pool[QUERY_ID].unique()[: args.queries])
    m = int(pool.groupby(QUERY_ID).size().max())
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print(f"| RM | encoder layers | dtype | {m} candidates of one query: median (p90) wall, median CPU | "
          f"same, new user: wall, CPU | whole pool ({len(pool)} candidates): wall, CPU |")
    print("|---|---:|---|---:|---:|---:|")
    ms = lambda x: f"{1000 * x:.0f} ms"  # noqa: E731
    for path in args.rm:
        rm = RewardModel.load(path)
        for dtype in args.dtypes.split(","):
            r = _measure(rm, pool, by_id, qids, dtype, args.repeats)
            (w1, c1), (w2, c2), (w3, c3) = r["one"], r["cold"], r["pool"]
            print(f"| {path} | {rm.config.encoder_layers or 6} | {dtype} "
                  f"| {ms(np.median(w1))} ({ms(np.quantile(w1, 0.9))}), {ms(np.median(c1))} "
                  f"| {ms(np.median(w2))}, {ms(np.median(c2))} "
                  f"| {w3:.2f} s ({len(pool) / w3:.0f}/s), {c3:.2f} s ({len(pool) / c3:.0f}/CPU-s) |", flush=True)
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
