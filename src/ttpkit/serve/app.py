"""The FastAPI apps: :func:`create_app` (OpenAI-compatible routes over a batched local policy, metrics) and
:func:`create_service`, the whole service's composition root (the app with the profile store, keys and personalize).

``ttpkit serve`` runs it with uvicorn; the ``openai`` policy backend (and any
OpenAI client) can then sample from it, so one machine can serve many workers.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from fastapi import APIRouter, Depends, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, Response
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from ttpkit import __version__
from ttpkit.errors import StorageError
from ttpkit.policy.base import Completer
from ttpkit.reward.models import RewardModel
from ttpkit.serve._auth import check_open, key_check
from ttpkit.serve._batch import Batcher
from ttpkit.serve._edge import BodyLimit, NoCredentialsInURL
from ttpkit.serve._errors import (
    FiniteJSON,
    RequestIds,
    on_http_error,
    on_invalid,
    on_storage_error,
)
from ttpkit.serve._gone import DisconnectWatch
from ttpkit.serve._metrics import Metrics, MetricsMiddleware
from ttpkit.serve._openai import openai_router
from ttpkit.serve._personalize import Personalizer, personalize_router
from ttpkit.serve._ready import ready_router
from ttpkit.serve._store import ProfileStore
from ttpkit.serve._users import Limits, Profiles, users_router

__all__ = ["MAX_BODY_BYTES", "create_app", "create_service", "on_storage_error"]

log = logging.getLogger("ttpkit.serve")

MAX_BODY_BYTES = 4 << 20  # a larger request body is a 413


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
    app = FastAPI(title="ttpkit", version=__version__, default_response_class=FiniteJSON, openapi_url=None,
                  docs_url=None, redoc_url=None,  # served below, behind the key like every route but /health
                  description="Test-time personalization: OpenAI-compatible sampling and personalized best-of-n.")
    app.state.batcher, app.state.metrics, app.state.policy = batcher, metrics, policy
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StorageError, on_storage_error)

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        return {"status": "ok"}

    guarded = APIRouter(dependencies=list(dependencies))

    @guarded.get("/metrics", tags=["ops"], response_class=Response)
    def prometheus() -> Response:
        body, kind = metrics.render()
        return Response(body, media_type=kind)

    _docs_routes(app, guarded)
    app.include_router(guarded)
    app.include_router(openai_router(policy, batcher, model_name, on_samples=metrics.samples.inc),
                       dependencies=list(dependencies))
    for router in extra_routers:
        app.include_router(router, dependencies=list(dependencies))
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # the last added runs first
    app.add_middleware(DisconnectWatch)  # a request whose client went away is dropped before its decode
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(NoCredentialsInURL)
    app.add_middleware(RequestIds)
    return app


def _docs_routes(app: FastAPI, router: APIRouter) -> None:
    """``/openapi.json``, ``/docs`` (Swagger UI) and ``/redoc`` on ``router`` (so behind its key check)."""

    @router.get("/openapi.json", include_in_schema=False)
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs", include_in_schema=False)
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - Swagger UI")

    @router.get("/redoc", include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")


def create_service(
    policy: Completer, store: ProfileStore | str = "sqlite:///profiles.db", *, rm: str | Path | RewardModel = "default",
    encoder: Any = None, admin_key: str | None = None, log_requests: bool = False, limits: Limits = Limits(),
    model_name: str = "ttpkit", batch_window_ms: float = 5.0, max_batch: int = 16, allow_open: bool = False,
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
        allow_open: Serve without an admin key over a store that holds issued keys (``ttpkit serve --open``).

    Raises:
        ConfigError: Without an admin key over a store that holds issued keys, unless ``allow_open``
            (without one over a store without keys, it logs once that every route is open).
    """
    store = ProfileStore(store) if isinstance(store, str) else store
    if (open_warning := check_open(store, admin_key, allow_open)) is not None:
        log.warning(open_warning)
    profiles = Profiles(store, [encoder] if encoder is not None else [])
    service = Personalizer(profiles, rm, encoder, limits, log_requests)
    app = create_app(policy, model_name, extra_routers=[users_router(profiles, limits), personalize_router(service)],
                     dependencies=[Depends(key_check(store, admin_key))], batch_window_ms=batch_window_ms, max_batch=max_batch)
    app.include_router(ready_router(store))  # GET /ready: open, as /health is
    app.state.store, app.state.personalizer = store, service
    app.add_exception_handler(OperationalError, on_storage_error)  # the store's disk is full or read-only: 507
    return app
