"""P7: Ray scaling on one machine: the same queries sampled by 1 actor and by 2 actors (wall time, queries/s, speed-up).

    PYTHONPATH=src python benchmarks/p7_ray_scaling.py            # embedded Gemma 3 270M, 8 bundled queries, M=8
    PYTHONPATH=src python benchmarks/p7_ray_scaling.py --quick    # a CPU-bound fake policy (seconds; checks the wiring)

The default runs the embedded model through the default :class:`ttpkit.policy.PolicySpec`
(8 git-commits queries of the bundled sample, M=8); ``--quick`` runs a fake
policy that burns a fixed amount of pure-Python CPU per query instead (not a
sleep: sleeping actors would "scale" on any number of cores). Both
configurations get the whole machine: 1 actor reserving every CPU (torch then
runs that many intra-op threads), and 2 actors reserving half each. Each job
starts its own actors, so the wall time includes every actor's model load (4-5 s
for the embedded model, in parallel across actors). The two pools are checked to be
equal: seeds are per query, not per actor.

What 2 cores can and cannot show (read this before quoting the speed-up):

* ``--quick``'s fake is one Python thread: one actor uses one core whatever it
  reserves, so on a quiet 2-core machine 2 actors should approach 2x. That
  checks that Ray spreads the batches and the driver keeps up, nothing more.
  On a loaded machine (say 2 cores shared with other jobs) the second core is
  not free and the speed-up falls to about 1x or below: the second actor's
  start is then pure cost.
* With the real model, one actor with 2 torch threads already uses both cores for the matrix
  products of a decode step. A second actor does not add cores; it trades
  intra-op parallelism (2 threads on one batch) for inter-process parallelism
  (1 thread on each of two batches). The speed-up measured here is therefore
  how much better 2x1 uses the same 2 cores than 1x2 (small batches scale
  poorly across threads, so 2x1 can win by a little), plus the cost of a
  second model load (2.8 GB more memory, its load time). It is not the
  speed-up of adding a machine.
* With 8 queries and 4 queries per decode batch there are only 2 batches: the
  2-actor run has no slack if one batch is slower, and fixed costs (Ray
  startup is excluded; actor start and model load are included) weigh heavily.
* On a machine shared with other work, both figures move with its load; run it
  on a quiet machine and more than once. The honest measure of scale-out is the
  same script on a cluster, where each actor gets cores of its own: there the
  ideal is N actors ~ N x one actor's queries/s, minus the driver's writes
  (part files, milliseconds per query) and the per-actor model load.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from ttpkit import stages
from ttpkit.data import bundled_sample_dir, load_split
from ttpkit.engine import Engine
from ttpkit.policy import PolicySpec, lazy_policy
from ttpkit.policy.base import Candidate, query_seed
from ttpkit.pool import IDX, QUERY_ID, read_pool


class BusyPolicy:
    """A fake policy (``--quick``): ``work`` rounds of pure-Python arithmetic per query, candidates from the query's seed."""

    name = "busy"
    batch_queries = 1

    def __init__(self, work: int, seed: int = 0) -> None:
        self.work, self.seed = work, seed

    def sample(self, queries, m):
        out = []
        for q in queries:
            x = query_seed(self.seed, q.id)
            for _ in range(self.work):
                x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
            out.append([Candidate(q.id, q.user_id, i, f"candidate {i} of {q.id}: {(x >> i) % 9973}", self.name, self.seed)
                        for i in range(m)])
        return out


class Clock:
    """A :class:`ttpkit.stages.Progress` that records when each query's candidates reached the driver."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def start(self, label: str, total: int, done: int = 0) -> None:  # noqa: D102
        pass

    def advance(self, steps: int = 1) -> None:  # noqa: D102
        self.times.append(time.perf_counter())

    def note(self, message: str) -> None:  # noqa: D102
        pass


def run(queries, m: int, policy, actors: int, cpus: float, out: Path) -> tuple[float, float]:
    """Wall seconds to sample ``queries`` into ``out`` on ``actors`` Ray actors of ``cpus`` CPUs each, and the
    seconds until the first query came back (actor start and model load, plus one batch)."""
    clock = Clock()
    t0 = time.perf_counter()
    stages.sample_pool(queries, out, m, policy, clock, engine=Engine("ray", num_actors=actors, num_cpus=cpus))
    return time.perf_counter() - t0, clock.times[0] - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a CPU-bound fake policy instead of the embedded model")
    ap.add_argument("--queries", type=int, default=None, help="bundled queries (default: 8; 16 with --quick)")
    ap.add_argument("--m", type=int, default=8, help="candidates per query")
    ap.add_argument("--cpus", type=int, default=os.cpu_count() or 2, help="CPUs Ray may use (split between the actors)")
    ap.add_argument("--work", type=int, default=1_000_000, help="--quick: arithmetic rounds per query")
    args = ap.parse_args()

    import ray

    os.environ["HF_HUB_OFFLINE"] = "1"  # the model comes from an installed package; never the network
    data = load_split(bundled_sample_dir(), "dev")
    queries = data.queries[: args.queries or (16 if args.quick else 8)]
    if args.quick:
        policy, what = BusyPolicy(args.work), f"fake CPU-bound policy ({args.work:,} rounds per query)"
    else:
        spec = PolicySpec.from_options("embedded", max_new_tokens=data.task.max_new_tokens or 32)
        policy, what = lazy_policy(spec, data.task, seed=0), "embedded Gemma 3 270M (default PolicySpec)"
    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pools = []
        for actors in (1, 2):
            out = Path(tmp) / f"pool-{actors}"
            seconds, first = run(queries, args.m, policy, actors, args.cpus / actors, out)
            pools.append(read_pool(out).sort_values([QUERY_ID, IDX]).reset_index(drop=True))
            rows.append((actors, args.cpus / actors, seconds, first, len(queries) / seconds))
        same = pools[0].equals(pools[1])
    ray.shutdown()
    print(f"P7 Ray scaling: {what}; {len(queries)} queries x M={args.m}; {args.cpus} CPUs for Ray; model load included")
    print(f"{'actors':>6} {'CPUs each':>9} {'wall s':>8} {'first s':>8} {'queries/s':>9} {'speed-up':>8}")
    for actors, cpus, seconds, first, qps in rows:
        print(f"{actors:>6} {cpus:>9g} {seconds:>8.2f} {first:>8.2f} {qps:>9.3f} {rows[0][2] / seconds:>7.2f}x")
    print("first s: until the first query came back (actor start, model load, one batch); speed-up: of wall time")
    print(f"pools equal (per-query seeds): {same}")
    if not same:
        raise SystemExit("the 1-actor and 2-actor pools differ")


if __name__ == "__main__":
    main()
