"""The HTTP edge, before any route runs: the body limit on what is received, and no credentials in URLs.

- :class:`BodyLimit`: a body over the limit is a 413, whether its
  ``Content-Length`` declares it or it arrives chunked (or with a
  ``Content-Length`` that lies): the bytes received are counted, and reading
  stops at the limit.
- :class:`NoCredentialsInURL`: a query parameter that looks like a credential
  (``key``, ``api_key``, ``token``...) is a 401 telling the client to use the
  ``Authorization`` header. Its value is replaced by ``[redacted]`` in the
  request's scope first, so the access log (uvicorn logs the path with its
  query from the scope) never holds it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, quote

from ttpkit import jsonio

__all__ = ["CREDENTIAL_PARAMS", "BodyLimit", "NoCredentialsInURL"]

CREDENTIAL_PARAMS = frozenset({"key", "api_key", "apikey", "api-key", "x-api-key", "access_token", "token", "auth",
                               "authorization", "bearer", "password", "secret", "client_secret"})


async def _refuse(send: Any, status: int, reason: str, headers: tuple = ()) -> None:
    kind = "invalid_request_error"
    body = jsonio.dumps({"detail": reason, "error": {"message": reason, "type": kind, "param": None, "code": status}})
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), *headers]})
    await send({"type": "http.response.body", "body": body.encode()})


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes, declared or received, is a 413 with the reason.

    The body is read here (at most ``limit`` bytes are kept) and handed to the app
    whole; later ``receive`` calls (a client's disconnect) go to the server as before.
    """

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    def _too_large(self, size: str) -> str:
        return f"request body of {size} exceeds the {self.limit}-byte limit"

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length", b"0")
        if length.isdigit() and int(length) > self.limit:
            return await _refuse(send, 413, self._too_large(f"{int(length)} bytes"), ((b"connection", b"close"),))
        chunks, total, last = [], 0, None
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left mid-body: the app sees it leave
                last = message
                break
            total += len(message.get("body", b""))
            if total > self.limit:
                return await _refuse(send, 413, self._too_large(f"more than {self.limit} bytes"), ((b"connection", b"close"),))
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        pending = [last or {"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> dict:
            return pending.pop() if pending else await receive()

        await self.app(scope, replay, send)


class NoCredentialsInURL:
    """ASGI middleware: a credential-like query parameter is redacted from the scope and answered with a 401."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        raw = (scope.get("query_string") or b"") if scope["type"] == "http" else b""
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True) if raw else []
        found = sorted({k for k, _ in pairs if k.lower() in CREDENTIAL_PARAMS})
        if not found:
            return await self.app(scope, receive, send)
        shown = "&".join(f"{quote(k, safe='')}={'[redacted]' if k in found else quote(v, safe='')}" for k, v in pairs)
        scope["query_string"] = shown.encode("latin-1")  # uvicorn's access log reads the query from this scope
        reason = (f"credentials go in the 'Authorization: Bearer <key>' header, never in the URL (query parameter "
                  f"{', '.join(repr(k[:40]) for k in found[:4])}); URLs are logged by proxies: revoke a key sent this way")
        await _refuse(send, 401, reason, ((b"www-authenticate", b"Bearer"),))
