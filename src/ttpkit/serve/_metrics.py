"""Prometheus metrics of one app, in its own ``CollectorRegistry`` (several apps in a process never collide).

- ``ttpkit_requests_total{route, method, status}``: requests answered; ``route``
  is the matched path template (``/v1/users/{user_id}``), ``unmatched`` for a 404;
  ``method`` is one of :data:`METHODS` or ``other``. Every label comes from a
  closed set, so no client can add series, whatever method or path it sends;
- ``ttpkit_request_seconds{route}``: latency histogram;
- ``ttpkit_samples_total``: completions generated;
- ``ttpkit_batch_requests`` / ``ttpkit_batch_prompts``: histograms of decode batch sizes,
  ``ttpkit_batch_seconds``: time per decode batch;
- ``ttpkit_score_requests`` / ``ttpkit_score_rows``: histograms of personalize requests and
  candidates per shared RM pass (one pass per decode batch, :mod:`ttpkit.serve._scoring`).
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["METHODS", "Metrics", "MetricsMiddleware"]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})  # the method label's values, and "other"

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_SIZES = (1, 2, 4, 8, 16, 32, 64)
_ROWS = (1, 4, 16, 64, 256, 1024)


class Metrics:
    """The app's counters and histograms (:class:`MetricsMiddleware` fills the request ones)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("ttpkit_requests", "Requests answered.", ["route", "method", "status"], registry=r)
        self.latency = Histogram("ttpkit_request_seconds", "Request latency.", ["route"], buckets=_LATENCY, registry=r)
        self.samples = Counter("ttpkit_samples", "Completions generated.", registry=r)
        self.batch_requests = Histogram("ttpkit_batch_requests", "Requests per decode batch.", buckets=_SIZES, registry=r)
        self.batch_prompts = Histogram("ttpkit_batch_prompts", "Prompts per decode batch.", buckets=_SIZES, registry=r)
        self.batch_seconds = Histogram("ttpkit_batch_seconds", "Seconds per decode batch.", buckets=_LATENCY, registry=r)
        self.score_requests = Histogram("ttpkit_score_requests", "Personalize requests per RM pass.", buckets=_SIZES,
                                        registry=r)
        self.score_rows = Histogram("ttpkit_score_rows", "Candidates per RM pass.", buckets=_ROWS, registry=r)

    def on_batch(self, requests: int, prompts: int, seconds: float) -> None:
        """Record one decode batch (the batcher's callback)."""
        self.batch_requests.observe(requests)
        self.batch_prompts.observe(prompts)
        self.batch_seconds.observe(seconds)

    def on_score(self, requests: int, rows: int, seconds: float) -> None:
        """Record one shared RM pass (the score group's callback)."""
        self.score_requests.observe(requests)
        self.score_rows.observe(rows)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """ASGI middleware: each HTTP request is counted and timed under its route template."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), [500]  # no response started: the server answers 500

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"  # the router sets scope["route"]
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.requests.labels(route, method, str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
