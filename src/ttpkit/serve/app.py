"""The FastAPI apps: :func:`create_app` (OpenAI-compatible routes over a batched local policy, metrics) and
:func:`create_service`, the whole service's composition root (the app with the profile store, keys and personalize).

``ttpkit serve`` runs it with uvicorn; the ``openai`` policy backend (and any
OpenAI client) can then sample from it, so one machine can serve many workers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from ttpkit import __version__, jsonio
from ttpkit.errors import StorageError
from ttpkit.policy.base import Completer
from ttpkit.reward.models import RewardModel
from ttpkit.serve._auth import key_check
from ttpkit.serve._batch import Batcher
from ttpkit.serve._gone import DisconnectWatch
from ttpkit.serve._metrics import Metrics, MetricsMiddleware
from ttpkit.serve._openai import openai_router
from ttpkit.serve._personalize import Personalizer, personalize_router
from ttpkit.serve._store import ProfileStore
from ttpkit.serve._users import Limits, Profiles, users_router

__all__ = ["MAX_BODY_BYTES", "create_app", "create_service", "on_storage_error"]

MAX_BODY_BYTES = 4 << 20  # a larger request body is a 413


class _BodyLimit:
    """ASGI middleware: a request whose declared ``Content-Length`` exceeds the limit gets a 413 with the reason."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            length = dict(scope.get("headers") or []).get(b"content-length", b"0")
            if length.isdigit() and int(length) > self.limit:
                reason = f"request body of {int(length)} bytes exceeds the {self.limit}-byte limit"
                body = jsonio.dumps({"detail": reason, "error": {"message": reason, "type": "invalid_request_error",
                                                               "param": None, "code": 413}})
                await send({"type": "http.response.start", "status": 413,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body.encode()})
                return
        await self.app(scope, receive, send)


class _FiniteJSON(JSONResponse):
    """Every response body: NaN and inf become ``null`` (starlette's own ``allow_nan=False`` would make them a 500).

    A string UTF-8 cannot encode (a 422 quoting a request's lone surrogate) is written as a JSON escape, not a 500.
    """

    def render(self, content: Any) -> bytes:
        try:
            return super().render(jsonio.finite(content))
        except UnicodeEncodeError:
            return jsonio.dumps(content, separators=(",", ":")).encode("ascii")


def _error(status: int, detail: Any, message: str, headers: Any = None) -> JSONResponse:
    """FastAPI's ``detail`` plus OpenAI's ``error`` object, so OpenAI clients show the reason too."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"detail": detail, "error": {"message": message, "type": kind, "param": None, "code": status}}
    return _FiniteJSON(body, status_code=status, headers=headers)


async def _on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):  # FastAPI's "error parsing the body"
        reason = (f"body: not valid UTF-8 text (byte 0x{cause.object[cause.start]:02x} at offset {cause.start}); "
                  "send UTF-8 JSON")
        return _error(422, reason, reason)  # as for a body that is not JSON
    return _error(exc.status_code, exc.detail, str(exc.detail), getattr(exc, "headers", None))


async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = jsonable_encoder(exc.errors())
    message = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg')}" for e in errors)
    return _error(422, errors, message)


async def on_storage_error(request: Request, exc: Exception) -> JSONResponse:
    """A write the server could not make (its disk full or read-only; a store it cannot reach): 507 or 503 with the reason.

    Not the request's fault, so not a 4xx; never a bare 500. The store's transaction is rolled back: nothing of
    the request is kept.
    """
    reason = " ".join(str(getattr(exc, "orig", None) or exc).split())
    full = isinstance(exc, OSError) or any(w in reason.lower() for w in ("full", "readonly", "read-only", "disk"))
    status, what = (507, "the server cannot store it") if full else (503, "the profile store is unavailable")
    message = f"{what} ({reason}); nothing of the request was kept"
    return _error(status, message, message)


def create_app(policy: Completer, model_name: str = "ttpkit", *, extra_routers: Sequence[APIRouter] = (),
               dependencies: Sequence[Any] = (), batch_window_ms: float = 5.0, max_batch: int = 16) -> FastAPI:
    """Build the FastAPI app.

    Args:
        policy: A :class:`~ttpkit.policy.Completer` (``complete(prompt, n,
            seed) -> list[str]`` and a ``config``), such as
            :class:`ttpkit.policy.local.LocalPolicy`; with
            ``complete_many(prompts, n, seeds)``, concurrent requests decode
            in one batch (see :class:`~ttpkit.serve.Batcher`).
        model_name: Name reported by ``/v1/models`` and in responses.
        extra_routers: More routes (the profile store, ``/v1/personalize``).
        dependencies: FastAPI ``Depends`` objects applied to every route
            except ``GET /health`` (an API-key check).
        batch_window_ms: How long a request waits for batch-mates.
        max_batch: Most prompts per decode batch.

    The app's state holds ``batcher`` (``await app.state.batcher.complete(
    prompts, n, seeds, cfg) -> list[list[str]]``), ``metrics`` (a
    :class:`~ttpkit.serve.Metrics`) and ``policy``.
    """
    metrics = Metrics()
    batcher = Batcher(policy, window_ms=batch_window_ms, max_batch=max_batch, on_batch=metrics.on_batch,
                      on_score=metrics.on_score)
    app = FastAPI(title="ttpkit", version=__version__, default_response_class=_FiniteJSON,
                  description="Test-time personalization: OpenAI-compatible sampling and personalized best-of-n.")
    app.state.batcher, app.state.metrics, app.state.policy = batcher, metrics, policy
    app.add_exception_handler(HTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_invalid)
    app.add_exception_handler(StorageError, on_storage_error)

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    guarded = APIRouter(dependencies=list(dependencies))

    @guarded.get("/metrics", tags=["ops"], response_class=Response)
    def prometheus() -> Response:
        body, kind = metrics.render()
        return Response(body, media_type=kind)

    app.include_router(guarded)
    app.include_router(openai_router(policy, batcher, model_name, on_samples=metrics.samples.inc),
                       dependencies=list(dependencies))
    for router in extra_routers:
        app.include_router(router, dependencies=list(dependencies))
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(DisconnectWatch)  # a request whose client went away is dropped before its decode
    app.add_middleware(_BodyLimit, limit=MAX_BODY_BYTES)
    return app


def create_service(
    policy: Completer, store: ProfileStore | str = "sqlite:///profiles.db", *, rm: str | Path | RewardModel = "default",
    encoder: Any = None, admin_key: str | None = None, log_requests: bool = False, limits: Limits = Limits(),
    model_name: str = "ttpkit", batch_window_ms: float = 5.0, max_batch: int = 16,
) -> FastAPI:
    """The whole service: the OpenAI routes of :func:`~ttpkit.serve.create_app`, the profile store, keys, personalize.

    Args:
        policy: The served local policy (a :class:`~ttpkit.policy.Completer`).
        store: A :class:`ProfileStore` or its database URL.
        rm: The reward model (see :class:`Personalizer`).
        encoder: Sentence encoder for the RM (default: the RM's own, cached on disk).
        admin_key: The admin key (default: the ``TTPKIT_API_KEY`` environment variable; unset or empty: no keys).
        log_requests: Keep each personalize answer for ``/v1/feedback`` and ``ttpkit export-pool``.
        limits: Request limits.
        model_name, batch_window_ms, max_batch: Passed to :func:`~ttpkit.serve.create_app`.
    """
    store = ProfileStore(store) if isinstance(store, str) else store
    profiles = Profiles(store, [encoder] if encoder is not None else [])
    service = Personalizer(profiles, rm, encoder, limits, log_requests)
    app = create_app(policy, model_name, extra_routers=[users_router(profiles, limits), personalize_router(service)],
                     dependencies=[Depends(key_check(store, admin_key))], batch_window_ms=batch_window_ms, max_batch=max_batch)
    app.state.store, app.state.personalizer = store, service
    app.add_exception_handler(OperationalError, on_storage_error)  # the store's disk is full or read-only: 507
    return app
