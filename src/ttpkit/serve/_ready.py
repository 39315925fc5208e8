"""``GET /ready``: readiness, beside ``GET /health`` (liveness); open like it, for load balancers and orchestrators.

``/health`` answers while the process runs; ``/ready`` answers 200 only while
the profile store answers a trivial query, and 503 with a short reason
otherwise. The reason names the kind of failure, never the driver's message
(which can quote a host, a socket path or a user name).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from ttpkit.serve._store import ProfileStore

__all__ = ["ready_router"]


def ready_router(store: ProfileStore) -> APIRouter:
    """``GET /ready`` over ``store`` (include it without the key check)."""
    router = APIRouter(tags=["ops"])

    @router.get("/ready", response_model=None)
    def ready() -> dict[str, str] | JSONResponse:
        try:
            store.ping()
        except Exception as e:  # noqa: BLE001 - any failure to answer is "not ready"; its text may name hosts
            reason = f"the profile store does not answer ({type(e).__name__})"
            return JSONResponse({"status": "unavailable", "detail": reason}, status_code=503)
        return {"status": "ready"}

    return router
