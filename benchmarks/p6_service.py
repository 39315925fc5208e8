"""P6: ``ttpkit serve`` under load on loopback, the embedded Gemma 3 270M, completions with n=8.

Starts the app (cross-request batching on) under uvicorn in a child process on
a free 127.0.0.1 port, then sends 4-shot git-commits prompts from the bundled
sample (about 600 tokens, n=8, at most 32 new tokens) and prints, for 1, 8 and
50 concurrent clients, p50/p95 latency and throughput (requests and samples per
second), and the server's decode batch sizes (/metrics). With ``--requests 8``
the 1-client level is 8 requests one at a time and the 8-client level 8 at
once; their throughput ratio is printed (target >= 1.4x on 2 cores).

    python benchmarks/p6_service.py [--clients 1,8,50] [--requests 8] [--window-ms 5] [--max-batch 16]
    python benchmarks/p6_service.py --route personalize    # /v1/personalize, N=8: store, retrieval, sampling, the bundled RM

``--requests`` is each level's total request count (50 clients send at least
one each). ``--no-batch`` (max_batch 1) serves one request at a time, the
baseline without cross-request batching.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket
import statistics
import subprocess
import sys
import time

import httpx

from ttpkit.data import bundled_sample_dir, load_split
from ttpkit.policy.prompt import PromptBuilder


def serve(port: int, window_ms: float, max_batch: int, db: str | None) -> None:
    import uvicorn

    from ttpkit.data import get_task
    from ttpkit.policy import SamplingConfig
    from ttpkit.policy.local import LocalPolicy
    from ttpkit.serve import create_app, create_service

    policy = LocalPolicy.embedded(get_task("git-commits"), SamplingConfig(max_new_tokens=32))
    if db:  # the whole service: the store, the bundled RM, /v1/personalize
        app = create_service(policy, db, rm="default", model_name=policy.name, batch_window_ms=window_ms, max_batch=max_batch)
    else:
        app = create_app(policy, policy.name, batch_window_ms=window_ms, max_batch=max_batch)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


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


async def level(root: str, texts: list, clients: int, total: int, n: int) -> tuple[list[float], float]:
    """``total`` requests from ``clients`` concurrent clients; (latencies, wall seconds).

    ``texts`` are prompts (``/v1/completions``) or personalize bodies (``/v1/personalize``).
    """
    queue = list(range(total))
    latencies: list[float] = []

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            i = queue.pop()
            start = time.perf_counter()
            item = texts[i % len(texts)]
            if isinstance(item, dict):
                r = await http.post(f"{root}/v1/personalize", json={**item, "seed": i})
            else:
                r = await http.post(f"{root}/v1/completions", json={"prompt": item, "n": n, "seed": i})
            r.raise_for_status()
            latencies.append(time.perf_counter() - start)

    limits = httpx.Limits(max_connections=clients + 1)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        return latencies, time.perf_counter() - start


def report(name: str, latencies: list[float], wall: float, n: int) -> float:
    q = statistics.quantiles(latencies, n=20, method="inclusive") if len(latencies) > 1 else latencies * 19
    rps = len(latencies) / wall
    print(f"{name:>24}: {len(latencies):3d} req  p50 {statistics.median(latencies):6.2f} s  p95 {q[18]:6.2f} s  "
          f"{rps:5.2f} req/s  {rps * n:6.1f} samples/s  wall {wall:6.1f} s", flush=True)
    return rps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", default="1,8,50", help="Comma-separated concurrency levels.")
    ap.add_argument("--requests", type=int, default=8, help="Requests per level (50 clients send at least 50).")
    ap.add_argument("--n", type=int, default=8, help="Samples per request.")
    ap.add_argument("--window-ms", type=float, default=5.0, help="Batching window.")
    ap.add_argument("--max-batch", type=int, default=16, help="Most prompts per decode batch.")
    ap.add_argument("--no-batch", action="store_true", help="max_batch 1: one request per decode.")
    ap.add_argument("--route", choices=["completions", "personalize"], default="completions",
                    help="personalize: the whole service (profile store, bundled RM), N=--n per request.")
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)  # the child process
    ap.add_argument("--db", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        return serve(args.serve, args.window_ms, 1 if args.no_batch else args.max_batch, args.db)
    import tempfile

    db = f"sqlite:///{tempfile.mkdtemp(prefix='p6-')}/profiles.db" if args.route == "personalize" else None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # a timeout still stops the server (finally below)
    child = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--window-ms", str(args.window_ms),
                              "--max-batch", str(args.max_batch)] + (["--no-batch"] if args.no_batch else [])
                             + (["--db", db] if db else []))
    root = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{root}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        texts = personalize_bodies(root, args.n) if db else prompts()
        asyncio.run(level(root, texts, 1, 1, args.n))  # warm-up
        print(f"{args.route}: embedded model, n={args.n}, window {args.window_ms} ms, max_batch {1 if args.no_batch else args.max_batch}")
        rps = {}
        for clients in [int(c) for c in args.clients.split(",")]:
            total = max(args.requests, clients)
            rps[clients] = report(f"{clients} concurrent", *asyncio.run(level(root, texts, clients, total, args.n)), args.n)
        if 1 in rps and 8 in rps and args.requests == 8:
            print(f"8 at once / 8 one at a time: {rps[8] / rps[1]:.2f}x throughput")
        metrics = httpx.get(f"{root}/metrics").text.splitlines()
        print("\n".join(m for m in metrics if m.startswith(("ttpkit_batch_prompts_sum", "ttpkit_batch_prompts_count"))))
    finally:
        child.terminate()
        child.wait(30)


if __name__ == "__main__":
    main()
