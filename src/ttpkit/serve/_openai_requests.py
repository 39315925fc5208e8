"""The OpenAI routes' request bodies, their size limits, and :class:`Refusal`, a 4xx in OpenAI's error shape.

Requests are Pydantic models that forbid unknown fields; a field ttpkit cannot
honour (``echo``, ``logprobs``, ``best_of``, ``suffix``, penalties,
``logit_bias``, tools) is a 422 naming it rather than being silently ignored.

One request may not hold the model for everyone else: at most
:data:`MAX_PROMPTS` prompts, ``n`` up to :data:`MAX_N`, ``max_tokens`` up to
:data:`MAX_TOKENS`, prompts × ``n`` up to :data:`MAX_SAMPLES`, and prompts ×
``n`` × ``max_tokens`` (the policy's own ``max_new_tokens`` when unset) up to
:data:`MAX_REQUEST_TOKENS`. :func:`check_size` refuses more with a 422 naming
the limit and the amount asked for.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ttpkit.policy.base import MAX_SEED, MAX_TEMPERATURE
from ttpkit.serve._text import TextRequest

__all__ = ["MAX_N", "MAX_PROMPTS", "MAX_PROMPT_CHARS", "MAX_REQUEST_TOKENS", "MAX_SAMPLES", "MAX_TOKENS",
           "ChatCompletionRequest", "ChatMessage", "CompletionRequest", "Refusal", "StreamOptions", "check_size"]

MAX_PROMPTS = 64  # prompts per request
MAX_N = 256  # completions per prompt
MAX_TOKENS = 1024  # max_tokens (max_completion_tokens)
MAX_SAMPLES = 512  # prompts x n
MAX_REQUEST_TOKENS = 16_384  # prompts x n x max_tokens: the decode one request may ask for
MAX_PROMPT_CHARS = 32_000  # per prompt (or per chat, all messages together); more is a 413


class Refusal(Exception):
    """A request the routes refuse: its status, message, the parameter at fault and OpenAI's ``code``."""

    def __init__(self, status: int, message: str, param: str | None = None, code: Any = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param = status, message, param
        self.code = status if code is None else code

    def response(self) -> JSONResponse:
        """``{"detail": message, "error": {message, type, param, code}}``, as the app's other errors."""
        error = {"message": self.message, "type": "invalid_request_error", "param": self.param, "code": self.code}
        return JSONResponse({"detail": self.message, "error": error}, status_code=self.status)


def check_size(prompts: list[str], n: int, max_tokens: int) -> None:
    """Refuse (422, or 413 for a long prompt) a request over any of the module's limits, naming it and the amount."""
    k = len(prompts)
    if not prompts:
        raise Refusal(422, f"prompt: give 1 to {MAX_PROMPTS} prompts, got none", "prompt")
    bounds = [("prompt", "prompts", "", k, MAX_PROMPTS), ("n", "n", "", n, MAX_N),
              ("max_tokens", "max_tokens", "", max_tokens, MAX_TOKENS),
              ("n", "prompts x n", f"{k} x {n} = ", k * n, MAX_SAMPLES),
              ("max_tokens", "prompts x n x max_tokens", f"{k} x {n} x {max_tokens} = ", k * n * max_tokens,
               MAX_REQUEST_TOKENS)]
    for param, what, product, asked, limit in bounds:
        if asked > limit:
            raise Refusal(422, f"{what} = {product}{asked} is more than the {limit} one request may ask for "
                               "(the limits: docs/service.md)", param)
    for i, p in enumerate(prompts):
        if len(p) > MAX_PROMPT_CHARS:
            raise Refusal(413, f"prompt {i} has {len(p)} characters, more than {MAX_PROMPT_CHARS}", "prompt")


def _unsupported(name: str, why: str = "") -> None:
    raise ValueError(f"{name} is not supported by ttpkit serve{': ' + why if why else ''}")


class StreamOptions(BaseModel):
    """``stream_options``: ``include_usage`` adds a last chunk with no choices and the request's ``usage``."""

    model_config = ConfigDict(extra="forbid")

    include_usage: bool | None = None


class _Decoding(TextRequest):
    """Fields shared by completions and chat completions."""

    model_config = ConfigDict(extra="forbid")

    model: str | None = Field(None, description="The served model (GET /v1/models) or 'default'; omitted: the served one.")
    n: int = Field(1, ge=1, description=f"Completions per prompt (at most {MAX_N}).")
    temperature: float | None = Field(None, ge=0, le=MAX_TEMPERATURE,
                                         description="Softmax temperature; 0 is greedy decoding (argmax).")
    top_p: float | None = Field(None, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, description=f"Tokens per completion (at most {MAX_TOKENS}).")
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="Seed of each prompt's generator; same seed, "
                                "same samples. Omitted: a fresh one, returned as the response's seed.")
    stop: str | list[str] | None = Field(None, description="Up to 4 strings; a completion ends before the first.")
    user: str | None = Field(None, description="Accepted and ignored (an end-user id in the OpenAI API).")
    stream: bool | None = Field(None, description="Answer as server-sent events (sent once the batch has decoded).")
    stream_options: StreamOptions | None = None
    logprobs: Any | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    logit_bias: dict[str, float] | None = None

    @field_validator("n", mode="before")
    @classmethod
    def _n(cls, v: Any) -> Any:
        return 1 if v is None else v  # null is OpenAI's default, as for every optional field

    @field_validator("stop")
    @classmethod
    def _stop(cls, v: Any) -> Any:
        stops = [v] if isinstance(v, str) else v or []
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("stop: give at most 4 non-empty strings")
        return v

    @field_validator("logprobs", "presence_penalty", "frequency_penalty", "logit_bias")
    @classmethod
    def _off(cls, v: Any, info: Any) -> Any:
        if v:  # None, False, 0 and {} mean "off", which is what ttpkit does
            _unsupported(info.field_name)
        return v

    @model_validator(mode="after")
    def _stream_options(self) -> _Decoding:
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options: only allowed with stream: true")
        return self

    def stops(self) -> list[str]:
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])

    def tokens(self) -> int | None:
        """The asked ``max_tokens`` (None: the policy's own)."""
        return self.max_tokens


class CompletionRequest(_Decoding):
    """An OpenAI completions request (the fields ttpkit honours; others are a 422)."""

    prompt: str | list[str] = Field(..., description=f"One prompt, or up to {MAX_PROMPTS} decoded in one batch.")
    echo: bool | None = None
    best_of: int | None = None
    suffix: str | None = None

    @field_validator("echo", "suffix")
    @classmethod
    def _off_too(cls, v: Any, info: Any) -> Any:
        if v:
            _unsupported(info.field_name)
        return v

    @field_validator("best_of")
    @classmethod
    def _best_of(cls, v: int | None) -> int | None:
        if v is not None and v != 1:
            _unsupported("best_of", "ask for n completions and choose with /v1/personalize or your own scorer")
        return v

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)


class ChatMessage(TextRequest):
    """One chat turn; ``developer`` is read as ``system``, text content parts are joined with newlines."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] = Field(..., description="A string, or text parts (joined with newlines).")
    name: str | None = None

    @field_validator("content")
    @classmethod
    def _text_parts(cls, v: Any) -> Any:
        if isinstance(v, str):
            return v
        for i, part in enumerate(v):
            kind = part.get("type")
            if kind != "text":
                raise ValueError(f"content[{i}] has type {str(kind)[:40]!r}: ttpkit serves a text model, "
                                 "so only {\"type\": \"text\", \"text\": ...} parts are accepted")
            if set(part) != {"type", "text"} or not isinstance(part["text"], str):
                raise ValueError(f"content[{i}]: a text part is {{\"type\": \"text\", \"text\": <string>}}, "
                                 f"got the keys {[k[:40] for k in sorted(part)][:6]}")
        return "\n".join(part["text"] for part in v)

    def template_role(self) -> str:
        """The role a chat template knows: ``developer`` (OpenAI's newer name) is ``system``."""
        return "system" if self.role == "developer" else self.role


class ChatCompletionRequest(_Decoding):
    """An OpenAI chat completions request (the fields ttpkit honours; others are a 422)."""

    messages: list[ChatMessage] = Field(..., min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="OpenAI's newer name for max_tokens.")

    @model_validator(mode="after")
    def _one_token_limit(self) -> ChatCompletionRequest:
        a, b = self.max_tokens, self.max_completion_tokens
        if a is not None and b is not None and a != b:
            raise ValueError(f"max_tokens ({a}) and max_completion_tokens ({b}) differ: give one of them")
        return self

    def tokens(self) -> int | None:
        return self.max_tokens if self.max_tokens is not None else self.max_completion_tokens
