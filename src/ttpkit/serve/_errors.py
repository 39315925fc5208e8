"""Every error the service answers: JSON with the reason, bounded in size, never a traceback or a server detail.

- :class:`RequestIds` (the outermost middleware) gives every request an id,
  sent back as the ``X-Request-ID`` header of every response; an exception no
  handler maps becomes a JSON 500 that names the id, and the traceback goes to
  the server log (logger ``ttpkit.serve``) under that id, never to the client.
- A 422 echoes at most :data:`MAX_ERRORS` errors, each ``input`` cut to
  :data:`MAX_ECHO_CHARS` characters (with a marker saying how long it was; an
  object or array to a few entries, two levels, and 1,000 characters of JSON), and
  every answer's reason is cut to :data:`MAX_REASON_CHARS`.
- A store the server cannot reach or write is a 503 or 507 with a generic
  reason and the request id; the driver's message (socket paths, host names)
  goes to the log only.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ttpkit import jsonio

__all__ = ["MAX_ECHO_CHARS", "MAX_ERRORS", "MAX_REASON_CHARS", "REQUEST_ID_HEADER", "FiniteJSON", "RequestIds",
           "error", "on_http_error", "on_invalid", "on_storage_error", "request_id"]

log = logging.getLogger("ttpkit.serve")

REQUEST_ID_HEADER = "X-Request-ID"
MAX_ECHO_CHARS = 200  # of one echoed value of a 422 (a string, or the JSON of an object)
MAX_ERRORS = 10  # validation errors one 422 lists
MAX_REASON_CHARS = 2_000  # of one answer's reason
_MAX_ITEMS = 8  # entries of an echoed object or array
_MAX_LOC = 8  # parts of an error's location
_MAX_ECHO_JSON = 1_000  # characters of an echoed object's JSON; a longer one is echoed as its cut JSON text


class FiniteJSON(JSONResponse):
    """Every response body: NaN and inf become ``null`` (starlette's own ``allow_nan=False`` would make them a 500).

    A string UTF-8 cannot encode (a 422 quoting a request's lone surrogate) is written as a JSON escape, not a 500.
    """

    def render(self, content: Any) -> bytes:
        try:
            return super().render(jsonio.finite(content))
        except UnicodeEncodeError:
            return jsonio.dumps(content, separators=(",", ":")).encode("ascii")


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else f"{text[:most]}... [cut: {len(text)} characters]"


def _clip(value: Any, depth: int = 0) -> Any:
    """``value`` bounded for an echo: strings cut, objects and arrays shortened and made shallow."""
    if isinstance(value, str):
        return _cut(value, MAX_ECHO_CHARS)
    if value is None or isinstance(value, (bool, int, float)):
        return value if not isinstance(value, int) or abs(value) < 10**18 else _cut(str(value), 40)
    if isinstance(value, dict):
        if depth >= 2:
            return f"[an object of {len(value)} keys]"
        shown = {_cut(str(k), 40): _clip(v, depth + 1) for k, v in list(value.items())[:_MAX_ITEMS]}
        return {**shown, "...": f"{len(value) - _MAX_ITEMS} more keys"} if len(value) > _MAX_ITEMS else shown
    if isinstance(value, (list, tuple)):
        if depth >= 2:
            return f"[an array of {len(value)} values]"
        shown = [_clip(v, depth + 1) for v in value[:_MAX_ITEMS]]
        return shown + [f"... {len(value) - _MAX_ITEMS} more values"] if len(value) > _MAX_ITEMS else shown
    return _cut(str(value), MAX_ECHO_CHARS)


def request_id(request: Request) -> str:
    """The id :class:`RequestIds` gave the request (``-`` outside it)."""
    return getattr(request.state, "request_id", "-")


def error(status: int, detail: Any, message: str, headers: Any = None, rid: str | None = None) -> JSONResponse:
    """FastAPI's ``detail`` plus OpenAI's ``error`` object, so OpenAI clients show the reason too (``rid``: a 5xx's id)."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    detail = _cut(detail, MAX_REASON_CHARS) if isinstance(detail, str) else detail
    body: dict[str, Any] = {"detail": detail, "error": {"message": _cut(message, MAX_REASON_CHARS), "type": kind,
                                                        "param": None, "code": status}}
    if rid is not None:
        body["request_id"] = rid
    return FiniteJSON(body, status_code=status, headers=headers)


async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """An ``HTTPException``: its status and reason (a body that is not UTF-8, too deep or with too long a number: 422)."""
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, UnicodeDecodeError):  # FastAPI's "error parsing the body"
        reason = (f"body: not valid UTF-8 text (byte 0x{cause.object[cause.start]:02x} at offset {cause.start}); "
                  "send UTF-8 JSON")
        return error(422, reason, reason)  # as for a body that is not JSON
    if exc.status_code == 400 and isinstance(cause, RecursionError):  # JSON nested past what the parser recurses to
        reason = "body: JSON nested too deeply to parse; a request body nests at most a few levels"
        return error(422, reason, reason)
    if exc.status_code == 400 and isinstance(cause, ValueError):  # an integer of more than 4,300 digits
        reason = f"body: not JSON this server can read ({_cut(str(cause), 200)})"
        return error(422, reason, reason)
    return error(exc.status_code, exc.detail, str(exc.detail), getattr(exc, "headers", None))


def _bounded(e: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": e.get("type"), "loc": [_clip(p, 2) for p in list(e.get("loc", ()))[:_MAX_LOC]],
                           "msg": _cut(str(e.get("msg")), MAX_REASON_CHARS // MAX_ERRORS)}
    if "input" in e:
        shown = _clip(e["input"])
        text = jsonio.dumps(shown)
        out["input"] = shown if len(text) <= _MAX_ECHO_JSON else _cut(text, MAX_ECHO_CHARS)
    if isinstance(e.get("ctx"), dict):
        out["ctx"] = {str(k): _clip(v if isinstance(v, (str, int, float, bool)) else str(v), 2) for k, v in e["ctx"].items()}
    return out


async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request that fails validation: a 422 listing the first :data:`MAX_ERRORS` errors, each echo cut short."""
    errors = list(exc.errors())
    shown = [_bounded(e) for e in errors[:MAX_ERRORS]]
    message = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in shown)
    if len(errors) > MAX_ERRORS:
        message += f"; and {len(errors) - MAX_ERRORS} more errors"
    return error(422, shown, message)


async def on_storage_error(request: Request, exc: Exception) -> JSONResponse:
    """A write the server could not make (its disk full or read-only; a store it cannot reach): 507 or 503.

    Not the request's fault, so not a 4xx; never a bare 500. The store's transaction is rolled back: nothing of
    the request is kept. The driver's message goes to the log under the request id; the answer says only which
    of a closed set of causes it was.
    """
    rid = request_id(request)
    reason = " ".join(str(getattr(exc, "orig", None) or exc).split()).lower()
    log.error("request %s: the profile store failed: %s: %s", rid, type(exc).__name__, reason)
    if isinstance(exc, OSError) or any(w in reason for w in ("full", "readonly", "read-only", "disk")):
        cause = "database or disk is full" if "full" in reason else "the store is read-only or its disk failed"
        message = f"the server cannot store it ({cause}); nothing of the request was kept (request id {rid})"
        return error(507, message, message, rid=rid)
    message = f"the profile store is unavailable; nothing of the request was kept (request id {rid})"
    return error(503, message, message, rid=rid)


class RequestIds:
    """ASGI middleware: an id per request, in the ``X-Request-ID`` header of every response; unmapped errors: JSON 500."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid  # request.state.request_id
        started = False

        async def send_with_id(message: dict) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # the one place that turns any bug into a 500 with an id
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            log.exception("request %s (%s): unexpected error; answered 500", rid, route)
            if not started:  # else the client sees the connection end, as with any broken response
                message = f"internal server error; the server log has it under request id {rid}"
                response = error(500, message, message, rid=rid)
                await response(scope, receive, send_with_id)
