"""HTTP service: an OpenAI-compatible ``/v1/completions`` endpoint over a local policy.

``ttpkit serve`` runs it with uvicorn; the ``openai`` policy backend (and any
OpenAI client) can then sample from it, so one machine can serve many workers.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Optional

from pydantic import BaseModel, Field

__all__ = ["CompletionRequest", "create_app"]


class CompletionRequest(BaseModel):
    """The subset of the OpenAI completions request that ttpkit honours."""

    model: str = "default"
    prompt: str
    n: int = Field(1, ge=1, le=256)
    temperature: Optional[float] = Field(None, gt=0)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    max_tokens: Optional[int] = Field(None, ge=1, le=1024)
    seed: int = 0
    stop: Optional[Any] = None


def create_app(policy: Any, model_name: str = "ttpkit") -> Any:
    """Build the FastAPI app.

    Args:
        policy: An object with ``complete(prompt, n, seed) -> list[str]`` and a
            ``config`` (:class:`ttpkit.policy.SamplingConfig`), such as
            :class:`ttpkit.policy.local.LocalPolicy`.
        model_name: Name reported by ``/v1/models``.
    """
    import dataclasses
    import threading

    from fastapi import FastAPI, HTTPException

    app = FastAPI(title="ttpkit", version="0.1.0")
    lock = threading.Lock()  # one model, one decode at a time

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "ttpkit"}]}

    @app.post("/v1/completions")
    def completions(req: CompletionRequest) -> dict[str, Any]:
        base = policy.config
        try:
            cfg = dataclasses.replace(
                base,
                temperature=req.temperature if req.temperature is not None else base.temperature,
                top_p=req.top_p if req.top_p is not None else base.top_p,
                max_new_tokens=req.max_tokens or base.max_new_tokens,
            )
        except ValueError as e:
            raise HTTPException(status_code=422, detail=str(e)) from None
        with lock:
            saved, policy.config = policy.config, cfg
            try:
                texts = policy.complete(req.prompt, req.n, req.seed)
            finally:
                policy.config = saved
        return {
            "id": f"cmpl-{uuid.uuid4().hex[:12]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model_name,
            "choices": [{"index": i, "text": t, "finish_reason": "stop", "logprobs": None} for i, t in enumerate(texts)],
        }

    return app
