"""P6: ``ttpkit serve`` under load on loopback against ttpkit's own sampler, the embedded Gemma 3 270M, N=8.

One run measures both sides on the same prompts, N and sampler settings (the
shipped ones, :data:`ttpkit.policy.SHIPPED`: temperature 0.7, top-p 0.95, the
greedy decode as one of a personalize request's N; at most 32 new tokens):

1. **the library**, in a child process: :meth:`LocalPolicy.sample` over the
   bundled sample's 16 git-commits dev queries (4-shot prompts of about 600
   tokens), ``batch_queries`` (4) queries per call, as ``ttpkit sample`` runs
   it; N candidates per query (N-1 samples and the greedy row);
2. **the service**, in another child process: the whole service (SQLite store,
   the bundled RM) under uvicorn on a free 127.0.0.1 port, the dev users'
   profiles written to it, then for each route (``/v1/completions`` with the
   same prompts and ``n=N``; ``/v1/personalize`` with the dev inputs and
   ``n=N``) and each client count (1, 8, 50): p50/p95 latency, requests and
   samples per second, the decode worker's busy share and mean prompts per
   decode batch (from ``/metrics``).

The library runs once before the service and once after it; per route, the
service's samples/s at the largest client count is divided by the mean of the
two (target >= 0.8). Each step prints the load average (the box is shared:
compare only numbers of one run).

    python benchmarks/p6_service.py [--clients 1,8,50] [--requests 8] [--n 8] [--routes completions,personalize]

``--requests`` is the request count of each level below 50 clients; a level
sends at least one request per client. ``--no-batch`` (max_batch 1) serves one
request at a time, the baseline without cross-request batching.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import httpx

from ttpkit.data import bundled_sample_dir, load_split
from ttpkit.policy.prompt import PromptBuilder

MAX_NEW_TOKENS = 32


def _policy():
    from ttpkit.data import get_task
    from ttpkit.policy import SHIPPED, SamplingConfig
    from ttpkit.policy.local import LocalPolicy

    cfg = SamplingConfig(temperature=SHIPPED.temperature, top_p=SHIPPED.top_p, max_new_tokens=MAX_NEW_TOKENS)
    return LocalPolicy.embedded(get_task("git-commits"), cfg)  # what `ttpkit serve` loads (float32 on the CPU)


def serve(port: int, window_ms: float, max_batch: int, db: str) -> None:
    import uvicorn

    from ttpkit.serve import create_service

    policy = _policy()
    app = create_service(policy, db, rm="default", model_name=policy.name, batch_window_ms=window_ms, max_batch=max_batch)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def library(n: int) -> None:
    """``ttpkit sample``'s sampler on the dev queries: prints one JSON line (samples, seconds, queries)."""
    import dataclasses

    from ttpkit.policy import SHIPPED

    policy = _policy()
    policy.config = dataclasses.replace(policy.config, greedy=SHIPPED.greedy)
    queries = load_split(bundled_sample_dir(), "dev").queries
    m = n - SHIPPED.greedy  # N candidates per query, the greedy one included, as personalize's N
    policy.sample(queries[:1], m)  # warm-up
    b, samples, start, cpu = policy.batch_queries, 0, time.perf_counter(), time.process_time()
    for i in range(0, len(queries), b):
        samples += sum(len(c) for c in policy.sample(queries[i : i + b], m))
    print(json.dumps({"samples": samples, "seconds": time.perf_counter() - start, "queries": len(queries),
                      "batch_queries": b, "cpu": time.process_time() - cpu}), flush=True)


def personalize_bodies(root: str, n: int) -> list[dict]:
    """Writes the bundled dev users' profiles into the store; one personalize body per dev query."""
    data = load_split(bundled_sample_dir(), "dev")
    bodies, written = [], set()
    for q in data.queries:
        if q.user_id not in written:
            items = [{"id": p.id, "text": p.source, "title": p.target} for p in q.profile]
            httpx.post(f"{root}/v1/users/{q.user_id}/items", json={"items": items}, timeout=60).raise_for_status()
            written.add(q.user_id)
        bodies.append({"user_id": q.user_id, "input": q.input, "task": data.task.name, "n": n})
    return bodies


def prompts() -> list[str]:
    data = load_split(bundled_sample_dir(), "dev")
    build = PromptBuilder(data.task, k=4)
    return [build(q) for q in data.queries]


async def level(root: str, texts: list, clients: int, total: int, n: int) -> tuple[list[float], int, float, dict]:
    """``total`` requests from ``clients`` concurrent clients; (latencies, samples, wall seconds, mean timings).

    ``texts`` are prompts (``/v1/completions``) or personalize bodies (``/v1/personalize``,
    whose answers' ``timings`` are averaged).
    """
    queue = list(range(total))
    latencies: list[float] = []
    samples = [0]
    timings: dict[str, list[float]] = {}

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            start = time.perf_counter()
            item = texts[i % len(texts)]
            if isinstance(item, dict):
                r = await http.post(f"{root}/v1/personalize", json={**item, "seed": i})
                r.raise_for_status()
                samples[0] += len(r.json()["candidates"])
                for k, v in r.json()["timings"].items():
                    timings.setdefault(k, []).append(v)
            else:
                r = await http.post(f"{root}/v1/completions", json={"prompt": item, "n": n, "seed": i})
                r.raise_for_status()
                samples[0] += len(r.json()["choices"])
            latencies.append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(timeout=1800, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return latencies, samples[0], time.perf_counter() - start, {k: statistics.mean(v) for k, v in timings.items()}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_metrics(root: str, pid: int) -> dict[str, float]:
    """The decode batches' counters (seconds, prompts, batches) and the server's CPU seconds so far."""
    want = {"ttpkit_batch_seconds_sum": "seconds", "ttpkit_batch_prompts_sum": "prompts", "ttpkit_batch_prompts_count": "batches"}
    out = {"cpu": cpu_seconds(pid)}
    for line in httpx.get(f"{root}/metrics", timeout=60).text.splitlines():
        name, _, value = line.partition(" ")
        if name in want:
            out[want[name]] = float(value)
    return out


def report(route: str, clients: int, latencies: list[float], samples: int, wall: float, timings: dict, before: dict,
           after: dict) -> float:
    q = statistics.quantiles(latencies, n=20, method="inclusive") if len(latencies) > 1 else latencies * 19
    sps = samples / wall
    batches = after["batches"] - before["batches"]
    busy = (after["seconds"] - before["seconds"]) / wall
    per_batch = (after["prompts"] - before["prompts"]) / batches if batches else 0.0
    cpu = (after["cpu"] - before["cpu"]) / wall
    print(f"| {route} | {clients} | {len(latencies)} | {statistics.median(latencies):.2f} s | {q[18]:.2f} s | "
          f"{len(latencies) / wall:.3f} | {sps:.2f} | {busy:.0%} | {per_batch:.1f} | {cpu:.0%} | {uptime()[13:]} | {wall:.1f} s | "
          + (" / ".join(f"{timings[k]:.2f}" for k in ("retrieval", "sampling", "scoring")) if timings else "–") + " |",
          flush=True)
    return sps


def uptime() -> str:
    with open("/proc/loadavg") as f:
        return "load average " + ", ".join(f.read().split()[:3])


def run_library(n: int) -> dict:
    """The library child's measurement, printed as it comes."""
    out = subprocess.run([sys.executable, __file__, "--library", "--n", str(n)], check=True, capture_output=True, text=True)
    lib = json.loads(out.stdout.strip().splitlines()[-1])
    lib["sps"] = lib["samples"] / lib["seconds"]
    print(f"library (LocalPolicy.sample, {lib['batch_queries']} queries per call): {lib['samples']} samples of "
          f"{lib['queries']} queries in {lib['seconds']:.1f} s = {lib['sps']:.2f} samples/s, CPU {lib['cpu'] / lib['seconds']:.0%}; "
          f"{uptime()}", flush=True)
    return lib


def wait_healthy(root: str, child: subprocess.Popen) -> None:
    for _ in range(1200):
        if child.poll() is not None:
            raise SystemExit(f"the server exited ({child.returncode})")
        try:
            if httpx.get(f"{root}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit("the server did not answer /health in 10 minutes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="1,8,50", help="Comma-separated concurrency levels.")
    ap.add_argument("--requests", type=int, default=8, help="Requests per level (a level sends at least one per client).")
    ap.add_argument("--n", type=int, default=8, help="Samples per request (candidates per query for the library).")
    ap.add_argument("--routes", default="completions,personalize", help="Comma-separated: completions, personalize.")
    ap.add_argument("--window-ms", type=float, default=5.0, help="Batching window.")
    ap.add_argument("--max-batch", type=int, default=16, help="Most prompts per decode batch.")
    ap.add_argument("--no-batch", action="store_true", help="max_batch 1: one request per decode.")
    ap.add_argument("--skip-library", action="store_true", help="Measure the service only (no ratio).")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the server child
    ap.add_argument("--db", help=argparse.SUPPRESS)
    ap.add_argument("--library", action="store_true", help=argparse.SUPPRESS)  # the library child
    args = ap.parse_args()
    max_batch = 1 if args.no_batch else args.max_batch
    if args.serve:
        return serve(args.serve, args.window_ms, max_batch, args.db)
    if args.library:
        return library(args.n)
    print(f"P6: embedded model, N={args.n}, shipped sampler, at most {MAX_NEW_TOKENS} new tokens; "
          f"window {args.window_ms} ms, max_batch {max_batch}; {time.strftime('%Y-%m-%d %H:%M')}, {uptime()}", flush=True)
    libs = [] if args.skip_library else [run_library(args.n)]
    db = f"sqlite:///{tempfile.mkdtemp(prefix='p6-')}/profiles.db"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a timeout still stops the server (finally below)
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--window-ms", str(args.window_ms),
                              "--max-batch", str(args.max_batch), "--db", db] + (["--no-batch"] if args.no_batch else []))
    root = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(root, child)
        bodies = personalize_bodies(root, args.n)
        texts = {"completions": prompts(), "personalize": bodies}
        print("\n| route | clients | requests | p50 | p95 | req/s | samples/s | decode busy | prompts/batch | server CPU "
              "| load after | wall | retrieval / sampling / scoring s per request |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---|", flush=True)
        top: dict[str, float] = {}
        clients = 0
        for route in args.routes.split(","):
            asyncio.run(level(root, texts[route], 1, 1, args.n))  # warm-up (the RM loads on its first personalize)
            for clients in [int(c) for c in args.clients.split(",")]:
                before = batch_metrics(root, child.pid)
                out = asyncio.run(level(root, texts[route], clients, max(args.requests, clients), args.n))
                top[route] = report(route, clients, *out, before, batch_metrics(root, child.pid))
        print(f"\nafter the service: {uptime()}")
    finally:
        child.terminate()
        child.wait(30)
    if libs:  # once more after the service, so that a change in the box's load shows
        libs.append(run_library(args.n))
        mean = statistics.mean(lib["sps"] for lib in libs)
        for route, sps in top.items():
            print(f"{route}: service {sps:.2f} samples/s at {clients} clients / library {mean:.2f} (mean of before and "
                  f"after) = {sps / mean:.2f} (target >= 0.80)", flush=True)


if __name__ == "__main__":
    main()
