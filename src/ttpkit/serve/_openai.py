"""The OpenAI-compatible routes: ``/v1/models``, ``/v1/completions``, ``/v1/chat/completions``.

The request bodies and their limits are in :mod:`ttpkit.serve._openai_requests`.
``stop`` is honoured by cutting each completion at the first stop string.

``model`` may be the served name (``GET /v1/models``), ``"default"`` (what the
``openai`` policy backend sends without ``--model``) or omitted (as vLLM allows);
any other name is a 404 with OpenAI's ``model_not_found`` error.

``seed`` seeds each prompt's generator: the same seed gives the same samples.
A request without one gets a fresh seed drawn with :mod:`secrets` (below
:data:`SEED_BOUND`, so every server and a JavaScript number can take it back);
every answer carries the seed it used as a top-level ``seed``, an extension
(the OpenAI API and vLLM do not echo it), so any answer can be reproduced.

``stream: true`` answers as server-sent events (``data: {chunk}`` ... ``data:
[DONE]``): ``text_completion`` chunks, one per choice with its text and
``finish_reason``; or ``chat.completion.chunk`` chunks, per choice the role, the
content and then the ``finish_reason`` as ``delta``\\ s. The model decodes a batch
at once, so the events are sent together once the batch has decoded. With
``stream_options: {"include_usage": true}`` every chunk has ``usage: null`` and a
last chunk with no choices has the request's ``usage``.

``usage`` counts each prompt's tokens once, however large ``n`` is, and sums the
completion tokens, with the policy's tokenizer when it has one (a policy
without one may offer ``count_tokens(text)``; else words are counted).
``finish_reason`` is ``"length"`` when a completion used all of ``max_tokens``
(re-tokenized, so a completion cut at exactly that many tokens by a stop token
also reads ``"length"``) and ``"stop"`` otherwise.
"""

from __future__ import annotations

import dataclasses
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, StreamingResponse

from ttpkit import jsonio
from ttpkit.policy.base import Completer
from ttpkit.serve._batch import Batcher
from ttpkit.serve._openai_requests import (
    MAX_N,
    MAX_PROMPT_CHARS,
    MAX_PROMPTS,
    MAX_REQUEST_TOKENS,
    MAX_SAMPLES,
    MAX_TOKENS,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    Refusal,
    check_size,
)

__all__ = ["MAX_N", "MAX_PROMPTS", "MAX_PROMPT_CHARS", "MAX_REQUEST_TOKENS", "MAX_SAMPLES", "MAX_TOKENS", "SEED_BOUND",
           "ChatCompletionRequest", "ChatMessage", "CompletionRequest", "chat_prompt", "count_tokens", "draw_seed",
           "openai_router"]

SEED_BOUND = 2**31  # a drawn seed is below it: a 32-bit signed integer, exact in a JavaScript number

_Reply = dict[str, Any] | JSONResponse | StreamingResponse


def draw_seed() -> int:
    """A fresh seed for a request that gave none (from the OS's randomness, not the process's generators)."""
    return secrets.randbelow(SEED_BOUND)


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
    turns = [{"role": m.template_role(), "content": m.content} for m in messages]
    if tok is not None and getattr(tok, "chat_template", None):
        text = tok.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        bos = getattr(tok, "bos_token", None)
        return text[len(bos):] if bos and text.startswith(bos) else text  # the tokenizer adds BOS itself
    lines = [f"{t['role'].capitalize()}: {t['content']}" for t in turns]
    return "\n".join(lines + ["Assistant:"])


def _decoding(base: Any, req: Any) -> Any:
    """The policy's decoding settings with the request's overrides (a bad value is a 422)."""
    try:
        return dataclasses.replace(
            base,
            temperature=req.temperature if req.temperature is not None else base.temperature,
            top_p=req.top_p if req.top_p is not None else base.top_p,
            max_new_tokens=req.tokens() or base.max_new_tokens,
        )
    except ValueError as e:
        raise Refusal(422, str(e)) from None


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

    def __init__(self, policy: Completer, prompts: list[str], texts: list[list[str]], stops: list[str], cfg: Any,
                 seed: int) -> None:
        self.seed = seed
        done = [_finish(policy, t, stops, cfg.max_new_tokens) for ts in texts for t in ts]
        self.texts = [d[0] for d in done]
        self.reasons = [d[1] for d in done]
        completion = sum(d[2] for d in done)
        prompt = sum(count_tokens(policy, p, prompt=True) for p in prompts)  # once per prompt, not per sample
        self.usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion_choices(out: _Sampled) -> list[dict[str, Any]]:
    return [{"index": i, "text": t, "finish_reason": r, "logprobs": None}
            for i, (t, r) in enumerate(zip(out.texts, out.reasons))]


def _chat_deltas(out: _Sampled) -> Iterator[dict[str, Any]]:
    """Per choice: its role, its content (unless empty), then its finish_reason, as OpenAI streams them."""
    for i, (text, reason) in enumerate(zip(out.texts, out.reasons)):
        yield {"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None, "logprobs": None}
        if text:
            yield {"index": i, "delta": {"content": text}, "finish_reason": None, "logprobs": None}
        yield {"index": i, "delta": {}, "finish_reason": reason, "logprobs": None}


def _events(head: dict[str, Any], choices: Iterator[dict[str, Any]], usage: Any) -> StreamingResponse:
    """Server-sent events: one chunk per choice delta, the usage chunk if asked for (``usage`` not None), ``[DONE]``."""
    extra = {} if usage is None else {"usage": None}
    chunks = [{**head, "choices": [c], **extra} for c in choices]
    if usage is not None:
        chunks.append({**head, "choices": [], "usage": usage})
    body = "".join(f"data: {jsonio.dumps(c, separators=(',', ':'))}\n\n" for c in chunks) + "data: [DONE]\n\n"
    return StreamingResponse(iter([body.encode()]), media_type="text/event-stream",
                             headers={"cache-control": "no-cache", "x-accel-buffering": "no"})


def _check_model(req: Any, model_name: str) -> None:
    """Refuse (404 ``model_not_found``) a model name other than the served one or ``"default"``; none is fine."""
    if req.model is not None and req.model not in (model_name, "default"):
        raise Refusal(404, f"The model {req.model[:100]!r} does not exist: this server serves {model_name!r} "
                           "(GET /v1/models)", "model", "model_not_found")


def _usage_asked(req: Any, out: _Sampled) -> Any:
    """The usage for a stream's last chunk if ``stream_options.include_usage`` asks for it, else None."""
    return out.usage if req.stream_options is not None and req.stream_options.include_usage else None


def openai_router(policy: Completer, batcher: Batcher, model_name: str, on_samples: Any = None) -> APIRouter:
    """The OpenAI-compatible routes over ``batcher``; ``on_samples(k)`` is told of each k completions made."""
    router = APIRouter(tags=["openai"])

    async def sample(prompts: list[str], req: Any) -> _Sampled:
        check_size(prompts, req.n, req.tokens() or policy.config.max_new_tokens)
        cfg = _decoding(policy.config, req)
        seed = draw_seed() if req.seed is None else req.seed
        texts = await batcher.complete(prompts, req.n, [seed] * len(prompts), cfg)
        if on_samples is not None:
            on_samples(sum(len(ts) for ts in texts))
        return _Sampled(policy, prompts, texts, req.stops(), cfg, seed)

    def head(kind: str, prefix: str, out: _Sampled) -> dict[str, Any]:
        return {"id": f"{prefix}-{uuid.uuid4().hex[:12]}", "object": kind, "created": int(time.time()),
                "model": model_name, "seed": out.seed}

    @router.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": model_name, "object": "model", "owned_by": "ttpkit"}]}

    @router.post("/v1/completions", response_model=None)
    async def completions(req: CompletionRequest) -> _Reply:
        try:
            _check_model(req, model_name)
            out = await sample(req.prompts(), req)
        except Refusal as e:
            return e.response()
        if req.stream:
            return _events(head("text_completion", "cmpl", out), iter(_completion_choices(out)), _usage_asked(req, out))
        return {**head("text_completion", "cmpl", out), "choices": _completion_choices(out), "usage": out.usage}

    @router.post("/v1/chat/completions", response_model=None)
    async def chat_completions(req: ChatCompletionRequest) -> _Reply:
        try:
            _check_model(req, model_name)
            out = await sample([chat_prompt(policy, req.messages)], req)
        except Refusal as e:
            return e.response()
        if req.stream:
            return _events(head("chat.completion.chunk", "chatcmpl", out), _chat_deltas(out), _usage_asked(req, out))
        choices = [{"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": r, "logprobs": None}
                   for i, (t, r) in enumerate(zip(out.texts, out.reasons))]
        return {**head("chat.completion", "chatcmpl", out), "choices": choices, "usage": out.usage}

    return router
