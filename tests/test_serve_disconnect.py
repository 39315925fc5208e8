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
