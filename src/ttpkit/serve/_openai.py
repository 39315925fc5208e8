"""The OpenAI-compatible routes: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``.

Requests are Pydantic models that forbid unknown fields; a field ttpkit cannot
honour (``echo``, ``logprobs``, ``best_of``, ``suffix``, ``stream``, penalties,
``logit_bias``) is a 422 naming it rather than being silently ignored. ``stop``
is honoured by cutting each completion at the first stop string.

``usage`` counts each prompt's tokens once, however large ``n`` is, and sums the
completion tokens, with the policy's tokenizer when it has one (a policy
without one may offer ``count_tokens(text)``; else words are counted).
``finish_reason`` is ``"length"`` when a completion used all of ``max_tokens``
(re-tokenized, so a completion cut at exactly that many tokens by a stop token
also reads ``"length"``) and ``"stop"`` otherwise.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from typing import Any, Literal, Optional, Union

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ttpkit.policy.base import MAX_SEED, MAX_TEMPERATURE, Completer
from ttpkit.serve._batch import Batcher
from ttpkit.serve._text import TextRequest

__all__ = ["MAX_PROMPTS", "MAX_PROMPT_CHARS", "MAX_SAMPLES", "ChatCompletionRequest", "ChatMessage",
           "CompletionRequest", "count_tokens", "openai_router"]

MAX_PROMPTS = 64  # prompts per request
MAX_SAMPLES = 512  # n x prompts per request: one request may not hold the model for everyone else
MAX_PROMPT_CHARS = 32_000  # per prompt (or per chat, all messages together); more is a 413


def _unsupported(name: str, why: str = "") -> None:
    raise ValueError(f"{name} is not supported by ttpkit serve{': ' + why if why else ''}")


class _Decoding(TextRequest):
    """Fields shared by completions and chat completions."""

    model_config = ConfigDict(extra="forbid")

    model: str = "default"
    n: int = Field(1, ge=1, le=256, description="Completions per prompt.")
    temperature: Optional[float] = Field(None, ge=0, le=MAX_TEMPERATURE,
                                         description="Softmax temperature; 0 is greedy decoding (argmax).")
    top_p: Optional[float] = Field(None, gt=0, le=1)
    max_tokens: Optional[int] = Field(None, ge=1, le=1024)
    seed: int = Field(0, ge=0, le=MAX_SEED, description="Seed of each prompt's generator; same seed, same samples.")
    stop: Optional[Union[str, list[str]]] = Field(None, description="Up to 4 strings; a completion ends before the first.")
    user: Optional[str] = Field(None, description="Accepted and ignored (an end-user id in the OpenAI API).")
    stream: Optional[bool] = None
    logprobs: Optional[Any] = None
    presence_penalty: Optional[float] = None
    frequency_penalty: Optional[float] = None
    logit_bias: Optional[dict[str, float]] = None

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: Any) -> Any:
        stops = [v] if isinstance(v, str) else v or []
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop: give at most 4 non-empty strings")
        return v

    @field_validator("stream", "logprobs", "presence_penalty", "frequency_penalty", "logit_bias")
    @classmethod
    def _off(cls, v: Any, info: Any) -> Any:
        if v:  # None, False, 0 and {} mean "off", which is what ttpkit does
            _unsupported(info.field_name)
        return v

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class CompletionRequest(_Decoding):
    """An OpenAI completions request (the fields ttpkit honours; others are a 422)."""

    prompt: Union[str, list[str]] = Field(..., description=f"One prompt, or up to {MAX_PROMPTS} decoded in one batch.")
    echo: Optional[bool] = None
    best_of: Optional[int] = None
    suffix: Optional[str] = None

    @field_validator("echo", "suffix")
    @classmethod
    def _off_too(cls, v: Any, info: Any) -> Any:
        if v:
            _unsupported(info.field_name)
        return v

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, v: Optional[int]) -> Optional[int]:
        if v is not None and v != 1:
            _unsupported("best_of", "ask for n completions and choose with /v1/personalize or your own scorer")
        return v

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class ChatMessage(TextRequest):
    """One chat turn."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str
    name: Optional[str] = None


class ChatCompletionRequest(_Decoding):
    """An OpenAI chat completions request (the fields ttpkit honours; others are a 422)."""

    messages: list[ChatMessage] = Field(..., min_length=1)


def count_tokens(policy: Completer, text: str, prompt: bool = False) -> int:
    """Tokens of ``text`` by the policy's tokenizer (a prompt with its special tokens), or its ``count_tokens``, or words."""
    tok = getattr(policy, "tokenizer", None)
    if tok is not None:
        return len(tok(text, add_special_tokens=prompt).input_ids)
    if hasattr(policy, "count_tokens"):
        return int(policy.count_tokens(text))
    return len(text.split())


def chat_prompt(policy: Completer, messages: list[ChatMessage]) -> str:
    """The model's chat template applied to ``messages``, or a plain role-prefixed prompt when it has none."""
    tok = getattr(policy, "tokenizer", None)
    turns = [{"role": m.role, "content": m.content} for m in messages]
    if tok is not None and getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        bos = getattr(tok, "bos_token", None)
        return text[len(bos):] if bos and text.startswith(bos) else text  # the tokenizer adds BOS itself
    lines = [f"{t['role'].capitalize()}: {t['content']}" for t in turns]
    return "\n".join(lines + ["Assistant:"])


def _decoding(base: Any, req: _Decoding) -> Any:
    """The policy's decoding settings with the request's overrides (a bad value is a 422)."""
    try:
        return dataclasses.replace(
            base,
            temperature=req.temperature if req.temperature is not None else base.temperature,
            top_p=req.top_p if req.top_p is not None else base.top_p,
            max_new_tokens=req.max_tokens or base.max_new_tokens,
        )
    except ValueError as e:
        raise HTTPException(status_code=422, detail=str(e)) from None


def _check_size(prompts: list[str], n: int) -> None:
    if not 1 <= len(prompts) <= MAX_PROMPTS:
        raise HTTPException(status_code=422, detail=f"prompt: give 1 to {MAX_PROMPTS} prompts, got {len(prompts)}")
    if n * len(prompts) > MAX_SAMPLES:
        raise HTTPException(status_code=422, detail=f"n x prompts = {n} x {len(prompts)} = {n * len(prompts)}, "
                                                    f"more than the {MAX_SAMPLES} samples one request may ask for")
    for i, p in enumerate(prompts):
        if len(p) > MAX_PROMPT_CHARS:
            raise HTTPException(status_code=413, detail=f"prompt {i} has {len(p)} characters, more than {MAX_PROMPT_CHARS}")


def _finish(policy: Completer, text: str, stops: list[str], max_tokens: int) -> tuple[str, str, int]:
    """(text cut at its first stop string, finish_reason, completion tokens)."""
    cuts = [text.find(s) for s in stops if s in text]
    if cuts:
        text = text[: min(cuts)]
        return text, "stop", count_tokens(policy, text)
    used = count_tokens(policy, text)
    return text, "length" if used >= max_tokens else "stop", used


class _Sampled:
    """One request's completions, cut and counted: choice k is completion k % n of prompt k // n."""

    def __init__(self, policy: Completer, prompts: list[str], texts: list[list[str]], stops: list[str], cfg: Any) -> None:
        done = [_finish(policy, t, stops, cfg.max_new_tokens) for ts in texts for t in ts]
        self.texts = [d[0] for d in done]
        self.reasons = [d[1] for d in done]
        completion = sum(d[2] for d in done)
        prompt = sum(count_tokens(policy, p, prompt=True) for p in prompts)  # once per prompt, not per sample
        self.usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def openai_router(policy: Completer, batcher: Batcher, model_name: str, on_samples: Any = None) -> APIRouter:
    """The OpenAI-compatible routes over ``batcher``; ``on_samples(k)`` is told of each k completions made."""
    router = APIRouter(tags=["openai"])

    async def sample(prompts: list[str], req: _Decoding) -> _Sampled:
        _check_size(prompts, req.n)
        cfg = _decoding(policy.config, req)
        texts = await batcher.complete(prompts, req.n, [req.seed] * len(prompts), cfg)
        if on_samples is not None:
            on_samples(sum(len(ts) for ts in texts))
        return _Sampled(policy, prompts, texts, req.stops(), cfg)

    def head(kind: str, prefix: str) -> dict[str, Any]:
        return {"id": f"{prefix}-{uuid.uuid4().hex[:12]}", "object": kind, "created": int(time.time()), "model": model_name}

    @router.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "ttpkit"}]}

    @router.post("/v1/completions")
    async def completions(req: CompletionRequest) -> dict[str, Any]:
        out = await sample(req.prompts(), req)
        choices = [{"index": i, "text": t, "finish_reason": r, "logprobs": None}
                   for i, (t, r) in enumerate(zip(out.texts, out.reasons))]
        return {**head("text_completion", "cmpl"), "choices": choices, "usage": out.usage}

    @router.post("/v1/chat/completions")
    async def chat_completions(req: ChatCompletionRequest) -> dict[str, Any]:
        out = await sample([chat_prompt(policy, req.messages)], req)
        choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": r, "logprobs": None}
                   for i, (t, r) in enumerate(zip(out.texts, out.reasons))]
        return {**head("chat.completion", "chatcmpl"), "choices": choices, "usage": out.usage}

    return router
