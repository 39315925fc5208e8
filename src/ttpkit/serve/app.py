"""HTTP service: an OpenAI-compatible ``/v1/completions`` endpoint over a local policy.

``ttpkit serve`` runs it with uvicorn; the ``openai`` policy backend (and any
OpenAI client) can then sample from it, so one machine can serve many workers.
"""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from typing import Any, Optional, Union

from pydantic import BaseModel, Field

from ttpkit import __version__
from ttpkit.policy.base import Completer

__all__ = ["MAX_PROMPTS", "CompletionRequest", "create_app"]

MAX_PROMPTS = 64  # prompts per request


class CompletionRequest(BaseModel):
    """The subset of the OpenAI completions request that ttpkit honours."""

    model: str = "default"
    prompt: Union[str, list[str]] = Field(..., description="One prompt, or up to 64 decoded in one batch.")
    n: int = Field(1, ge=1, le=256)
    temperature: Optional[float] = Field(None, gt=0)
    top_p: Optional[float] = Field(None, gt=0, le=1)
    max_tokens: Optional[int] = Field(None, ge=1, le=1024)
    seed: int = 0
    stop: Optional[Any] = None


def _decoding(base: Any, req: CompletionRequest) -> Any:
    """The policy's decoding settings with the request's overrides (a bad value is an HTTP 422)."""
    from fastapi import HTTPException

    try:
        return dataclasses.replace(
            base,
            temperature=req.temperature if req.temperature is not None else base.temperature,
            top_p=req.top_p if req.top_p is not None else base.top_p,
            max_new_tokens=req.max_tokens or base.max_new_tokens,
        )
    except ValueError as e:
        raise HTTPException(status_code=422, detail=str(e)) from None


def _complete(policy: Completer, cfg: Any, prompts: list[str], n: int, seed: int) -> list[str]:
    """``n`` completions of each prompt under ``cfg``, prompt-major (the caller holds the model's lock)."""
    saved, policy.config = policy.config, cfg
    try:
        if len(prompts) > 1 and hasattr(policy, "complete_many"):  # one decode batch for all prompts
            return [t for ts in policy.complete_many(prompts, n, [seed] * len(prompts)) for t in ts]
        return [t for p in prompts for t in policy.complete(p, n, seed)]
    finally:
        policy.config = saved


def create_app(policy: Completer, model_name: str = "ttpkit") -> Any:
    """Build the FastAPI app.

    Args:
        policy: A :class:`~ttpkit.policy.Completer` (``complete(prompt, n,
            seed) -> list[str]`` and a ``config``), such as
            :class:`ttpkit.policy.local.LocalPolicy`; if it also has
            ``complete_many(prompts, n, seeds)``, a request with a list of
            prompts decodes them in one batch (each seeded with ``seed``).
        model_name: Name reported by ``/v1/models``.
    """
    from fastapi import FastAPI, HTTPException

    app = FastAPI(title="ttpkit", version=__version__)
    lock = threading.Lock()  # one model, one decode at a time

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "ttpkit"}]}

    @app.post("/v1/completions")
    def completions(req: CompletionRequest) -> dict[str, Any]:
        cfg = _decoding(policy.config, req)
        prompts = [req.prompt] if isinstance(req.prompt, str) else list(req.prompt)
        if not 1 <= len(prompts) <= MAX_PROMPTS:
            raise HTTPException(status_code=422, detail=f"prompt: give 1 to {MAX_PROMPTS} prompts, got {len(prompts)}")
        with lock:
            texts = _complete(policy, cfg, prompts, req.n, req.seed)
        return {
            "id": f"cmpl-{uuid.uuid4().hex[:12]}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": model_name,
            # as in the OpenAI API: choice k is completion k % n of prompt k // n
            "choices": [{"index": i, "text": t, "finish_reason": "stop", "logprobs": None} for i, t in enumerate(texts)],
        }

    return app
