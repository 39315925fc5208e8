"""A client that goes away while its request waits for the model is dropped, never decoded (real uvicorn, loopback).

The served policy is a slow :class:`FakeLM`: each decode batch takes a moment,
so a second request waits behind the first; its client then closes the
connection. The recorded decode batches never hold its prompt, and the server
goes on serving.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid

import httpx
import pytest
from conftest import FakeEncoder, FakeLM, items_of, live

from ttpkit.serve import create_app, create_service

DECODE_S = 0.6  # each decode batch of the slow policy


class SlowLM(FakeLM):
    """FakeLM whose decode batches take ``DECODE_S`` and are recorded prompt by prompt."""

    def __init__(self) -> None:
        super().__init__()
        self.decoded: list[list[str]] = []
        self.started = threading.Event()

    def complete_many(self, prompts, n, seeds):
        self.decoded.append(list(prompts))
        self.started.set()
        time.sleep(DECODE_S)
        return super().complete_many(prompts, n, seeds)


def _send_and_hang_up(root: str, path: str, body: dict, pending, deadline_s: float = 10.0) -> None:
    """POST ``body`` on a raw socket, wait until the batcher holds it, then close the connection without reading."""
    port = int(root.rsplit(":", 1)[1])
    data = json.dumps(body).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", port), timeout=deadline_s) as s:
        s.sendall(head + data)
        end = time.monotonic() + deadline_s
        while not pending() and time.monotonic() < end:
            time.sleep(0.01)
        assert pending(), "the request never reached the batcher"


def _waiting(app):
    """Whether a request waits in the app's batcher (queued, not decoding)."""
    return lambda: any(not job.future.done() for job in app.state.batcher._pending)


def _busy(root: str, path: str, body: dict, out: list) -> threading.Thread:
    """A request that holds the model (its reply appended to ``out``), started in a thread."""
    thread = threading.Thread(target=lambda: out.append(httpx.post(f"{root}{path}", json=body, timeout=30)))
    thread.start()
    return thread


def test_a_completions_client_that_hangs_up_while_waiting_is_not_decoded():
    policy = SlowLM()
    app = create_app(policy, batch_window_ms=0, max_batch=1)
    gone = f"gone {uuid.uuid4().hex}"
    with live(app) as root:
        first: list = []
        busy = _busy(root, "/v1/completions", {"prompt": "first prompt here", "n": 2}, first)
        assert policy.started.wait(30)  # the model is busy with the first request
        _send_and_hang_up(root, "/v1/completions", {"prompt": gone, "n": 2}, _waiting(app))
        busy.join(30)
        after = httpx.post(f"{root}/v1/completions", json={"prompt": "after prompt here", "n": 2}, timeout=30)
        metrics = httpx.get(f"{root}/metrics", timeout=10).text
    assert first[0].status_code == 200 and after.status_code == 200
    assert [p for batch in policy.decoded for p in batch] == ["first prompt here", "after prompt here"]
    assert 'status="499"' in metrics  # the dropped request is counted as closed by its client


def test_a_personalize_client_that_hangs_up_while_waiting_is_not_decoded(tmp_path, sample):
    policy = SlowLM()
    app = create_service(policy, f"sqlite:///{tmp_path / 'p.db'}", admin_key="", rm="default:user-prob",
                         encoder=FakeEncoder(), batch_window_ms=0, max_batch=1)
    q = sample.queries[0]
    gone = f"hung up {uuid.uuid4().hex}"
    with live(app) as root:
        httpx.post(f"{root}/v1/users/{q.user_id}/items", json={"items": items_of(q)}, timeout=30).raise_for_status()
        body = {"user_id": q.user_id, "task": "git-commits", "n": 2}
        httpx.post(f"{root}/v1/personalize", json={**body, "input": q.input}, timeout=60).raise_for_status()  # loads the RM
        policy.started.clear()
        policy.decoded.clear()
        first: list = []
        busy = _busy(root, "/v1/personalize", {**body, "input": q.input}, first)
        assert policy.started.wait(30)
        _send_and_hang_up(root, "/v1/personalize", {**body, "input": gone}, _waiting(app))
        busy.join(30)
        after = httpx.post(f"{root}/v1/personalize", json={**body, "input": q.input, "seed": 1}, timeout=30)
    assert first[0].status_code == 200 and after.status_code == 200, (first[0].text, after.text)
    decoded = [p for batch in policy.decoded for p in batch]
    assert len(decoded) == 2 and not any(gone in p for p in decoded)  # the first and the last, never the hung-up one


# -- announced requests: those that arrive together decode together -----------------------------------
def test_a_forming_batch_waits_for_announced_requests_and_not_for_one_that_failed():
    import asyncio

    from ttpkit.serve import Batcher

    policy = FakeLM()
    batcher = Batcher(policy, window_ms=1, max_batch=16, join_ms=20_000)
    cfg = policy.config

    async def announced(prompt: str, seed: int, fail: bool = False):
        with batcher.expect():
            await asyncio.sleep(0.1)  # its retrieval, far longer than the window
            if fail:
                raise ValueError("no such user")
            return await batcher.complete([prompt], 2, [seed], cfg)

    async def main():
        jobs = [batcher.complete(["right away"], 2, [0], cfg), announced("later one", 1), announced("later two", 2)]
        out = await asyncio.wait_for(asyncio.gather(*jobs), 10)
        failed = asyncio.ensure_future(announced("never", 3, fail=True))
        alone = await asyncio.wait_for(batcher.complete(["alone"], 2, [4], cfg), 10)  # not held for the failed one
        with pytest.raises(ValueError):
            await failed
        return out, alone

    out, alone = asyncio.run(main())
    assert policy.batches == [3, 1]  # the three in one batch; then the lone request, never waiting 20 s
    solo = FakeLM()
    assert out == [solo.complete_many([p], 2, [s]) for p, s in [("right away", 0), ("later one", 1), ("later two", 2)]]
    assert alone == solo.complete_many(["alone"], 2, [4])  # each prompt's samples are its own seed's


def test_concurrent_personalize_requests_share_one_decode_batch(tmp_path, sample):
    policy = FakeLM()
    app = create_service(policy, f"sqlite:///{tmp_path / 'p.db'}", admin_key="", rm="default:user-prob",
                         encoder=FakeEncoder())
    app.state.batcher.join = 20.0  # generous: the test box is shared; they arrive well within it
    queries = sample.queries[:6]
    with live(app) as root:
        for q in {q.user_id: q for q in queries}.values():
            httpx.post(f"{root}/v1/users/{q.user_id}/items", json={"items": items_of(q)}, timeout=30).raise_for_status()
        bodies = [{"user_id": q.user_id, "task": "git-commits", "n": 3, "input": q.input, "seed": i} for i, q in enumerate(queries)]
        httpx.post(f"{root}/v1/personalize", json=bodies[0], timeout=60).raise_for_status()  # loads the RM
        policy.batches.clear()
        replies: list = [None] * len(bodies)
        service, answer = app.state.personalizer, app.state.personalizer.answer
        arrived = threading.Barrier(len(bodies), timeout=30)  # all six are at the server before any retrieves

        def gated(*args):
            arrived.wait()
            return answer(*args)

        service.answer = gated

        def ask(i: int) -> None:
            replies[i] = httpx.post(f"{root}/v1/personalize", json=bodies[i], timeout=60)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        service.answer = answer
        solo = [httpx.post(f"{root}/v1/personalize", json=b, timeout=60).json() for b in bodies]
    assert all(r is not None and r.status_code == 200 for r in replies)
    assert policy.batches[0] == len(bodies)  # one decode batch for the six (then the six solo requests)
    assert [r.json()["candidates"] for r in replies] == [s["candidates"] for s in solo]  # batch-mates change nothing


def test_a_burst_of_arrivals_longer_than_the_window_decodes_as_one_batch():
    import asyncio

    from ttpkit.serve import Batcher

    policy = FakeLM()
    batcher = Batcher(policy, window_ms=300, max_batch=16, join_ms=20_000)  # each gap is far shorter than the window

    async def main():
        jobs = []
        for i in range(8):  # 8 arrivals 50 ms apart: 350 ms from the first to the last, more than one window
            jobs.append(asyncio.ensure_future(batcher.complete([f"prompt {i}"], 2, [i], policy.config)))
            await asyncio.sleep(0.05)
        return await asyncio.wait_for(asyncio.gather(*jobs), 20)

    out = asyncio.run(main())
    assert policy.batches == [8]
    assert out == [FakeLM().complete_many([f"prompt {i}"], 2, [i]) for i in range(8)]  # each its own seed's
