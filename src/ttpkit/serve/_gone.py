"""Clients that went away: a request whose client disconnected is dropped before its decode.

:class:`DisconnectWatch` (ASGI middleware) gives each HTTP request a
:class:`Client` in a context variable; the request's handler, the worker
thread of a personalize request and the batcher calls it makes (the context
follows ``run_in_threadpool`` and ``anyio.from_thread.run``) all see it.
:meth:`Client.unless_gone` awaits a batcher job and, if the connection closes
first, cancels the job (the :class:`~ttpkit.serve.Batcher` never decodes a
cancelled job) and raises :class:`ClientGone`, a 499 (nginx's "client closed
request") that nobody receives but ``ttpkit_requests_total`` counts.

The connection is watched through ASGI ``receive``: once the request body has
been read, the server's next message is ``http.disconnect``, sent when the
connection closes, so a watcher waits without polling. A request whose
decode has begun finishes it (its batch-mates' rows are in the same pass).
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, TypeVar

from starlette.exceptions import HTTPException

__all__ = ["CLOSED_STATUS", "Client", "ClientGone", "DisconnectWatch", "current_client", "unless_gone"]

CLOSED_STATUS = 499  # nginx's "client closed request": counted in the metrics, never received
T = TypeVar("T")

_CLIENT: contextvars.ContextVar[Client | None] = contextvars.ContextVar("ttpkit_client", default=None)


class ClientGone(HTTPException):
    """The client closed its connection before its request was decoded; the request was dropped."""

    def __init__(self) -> None:
        super().__init__(CLOSED_STATUS, detail="the client closed the connection before its request was decoded; dropped")


class Client:
    """One HTTP request's connection, as seen through its ASGI ``receive`` (call only after the body is read)."""

    def __init__(self, receive: Any) -> None:
        self._receive = receive
        self.gone = False

    async def wait_gone(self) -> None:
        """Return when the connection has closed (``http.disconnect``)."""
        while not self.gone:
            message = await self._receive()
            if message.get("type") == "http.disconnect":
                self.gone = True
            else:  # a server that sends more than ASGI promises after the body: do not spin
                await asyncio.sleep(0.05)

    async def unless_gone(self, future: asyncio.Future[T]) -> T:
        """``future``'s result; if the connection closes first, ``future`` is cancelled and :class:`ClientGone` raised."""
        if self.gone:
            future.cancel()
            raise ClientGone()
        watcher = asyncio.ensure_future(self.wait_gone())
        try:
            await asyncio.wait({future, watcher}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watcher.cancel()
            if not future.done():  # the client went away, or the waiting task itself was cancelled
                future.cancel()
        if future.cancelled():
            raise ClientGone()
        return future.result()


def current_client() -> Client | None:
    """The :class:`Client` of the HTTP request being served in this context, or None (a call outside a request)."""
    return _CLIENT.get()


async def unless_gone(future: asyncio.Future[T]) -> T:
    """``future``'s result, dropped early (:class:`ClientGone`) if the current request's client goes away."""
    client = current_client()
    return await (future if client is None else client.unless_gone(future))


class DisconnectWatch:
    """ASGI middleware: each HTTP request's :class:`Client` is :func:`current_client` while it is served."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        token = _CLIENT.set(Client(receive))
        try:
            await self.app(scope, receive, send)
        finally:
            _CLIENT.reset(token)
