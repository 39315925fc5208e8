"""A Python client (httpx) for every route of ``ttpkit serve``.

Example:
    >>> from ttpkit.client import Client  # doctest: +SKIP
    >>> c = Client("http://127.0.0.1:8000", api_key="...")  # doctest: +SKIP
    >>> c.add_items("alice", [{"text": "Fix the parser", "title": "parser: fix crash"}])  # doctest: +SKIP
    >>> c.personalize("Handle empty lines in the config reader", user_id="alice", n=8)["text"]  # doctest: +SKIP

A 4xx or 5xx answer raises :class:`ServiceError` with the status and the server's reason.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from ttpkit._args import INT, REAL, STR, TEXT, Allowed, checked, list_of, optional
from ttpkit.errors import ConfigError, TtpkitError
from ttpkit.text import find_bad_text

__all__ = ["Client", "ServiceError"]

_ITEMS = Allowed(lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, dict) for x in v) and find_bad_text(v) is None,
                 "a list of dicts of valid Unicode text")  # sent as JSON, which no lone surrogate survives


def _seg(text: str) -> str:
    """``text`` as one path segment (a user id may hold ``/``, ``?`` or a control character)."""
    return quote(text, safe="")


class ServiceError(TtpkitError):
    """The service answered with an error; ``status`` is the HTTP status and the message its reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"the service answered {status}: {reason}")
        self.status = status


class Client:
    """One connection to a ttpkit service.

    Args:
        base_url: The server, e.g. ``http://127.0.0.1:8000`` (without ``/v1``).
        api_key: The admin key or a user's key (sent as ``Authorization: Bearer``).
        timeout: Seconds per request.
        transport: An ``httpx`` transport (tests pass an ASGI one).
    """

    @checked(base_url=STR, api_key=optional(STR), timeout=REAL)
    def __init__(self, base_url: str, api_key: str | None = None, timeout: float = 120.0,
                 transport: httpx.BaseTransport | None = None) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"Client(): base_url {base_url!r} must start with http:// or https://, e.g. http://127.0.0.1:8000")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout, transport=transport)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self.http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http.request(method, path, **kw)
        except httpx.HTTPError as e:  # unreachable, a timeout, a URL httpx refuses: one ttpkit error naming the place
            raise TtpkitError(f"{self.http.base_url}{path}: the request failed ({type(e).__name__}: {e})") from None
        if r.status_code >= 400:
            try:
                reason = r.json().get("detail", r.text)
            except ValueError:
                reason = r.text
            raise ServiceError(r.status_code, reason if isinstance(reason, str) else str(reason))
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text

    # -- ops and OpenAI-compatible routes ----------------------------------------------
    def health(self) -> dict[str, str]:
        """``GET /health``."""
        return self._call("GET", "/health")

    def metrics(self) -> str:
        """``GET /metrics``: the Prometheus text."""
        return self._call("GET", "/metrics")

    def models(self) -> dict[str, Any]:
        """``GET /v1/models``."""
        return self._call("GET", "/v1/models")

    @checked(prompt=TEXT | list_of(TEXT, "a list of str"), n=INT, seed=INT)
    def complete(self, prompt: str | list[str], n: int = 1, seed: int = 0, **options: Any) -> dict[str, Any]:
        """``POST /v1/completions`` (``options``: temperature, top_p, max_tokens, stop)."""
        return self._call("POST", "/v1/completions", json={"prompt": prompt, "n": n, "seed": seed, **options})

    @checked(messages=_ITEMS, n=INT, seed=INT)
    def chat(self, messages: list[dict[str, str]], n: int = 1, seed: int = 0, **options: Any) -> dict[str, Any]:
        """``POST /v1/chat/completions``."""
        return self._call("POST", "/v1/chat/completions", json={"messages": messages, "n": n, "seed": seed, **options})

    # -- profiles and keys --------------------------------------------------------------
    @checked(user_id=TEXT, items=_ITEMS, task=TEXT)
    def add_items(self, user_id: str, items: list[dict[str, Any]], task: str = "git-commits") -> dict[str, Any]:
        """``POST /v1/users/{user_id}/items``: append items; returns ``{user_id, added, size}``."""
        return self._call("POST", f"/v1/users/{_seg(user_id)}/items", json={"task": task, "items": items})

    @checked(user_id=TEXT, offset=INT, limit=INT)
    def profile(self, user_id: str, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        """``GET /v1/users/{user_id}``: one page of the profile."""
        return self._call("GET", f"/v1/users/{_seg(user_id)}", params={"offset": offset, "limit": limit})

    @checked(user_id=TEXT)
    def forget(self, user_id: str) -> dict[str, Any]:
        """``DELETE /v1/users/{user_id}``: rows deleted per table."""
        return self._call("DELETE", f"/v1/users/{_seg(user_id)}")

    @checked(user_id=TEXT)
    def issue_key(self, user_id: str) -> dict[str, str]:
        """``POST /v1/users/{user_id}/keys`` (admin): ``{user_id, key_id, key}``; the key is shown only now."""
        return self._call("POST", f"/v1/users/{_seg(user_id)}/keys")

    @checked(user_id=TEXT)
    def keys(self, user_id: str) -> list[dict[str, Any]]:
        """``GET /v1/users/{user_id}/keys``: ids and dates, no secrets."""
        return self._call("GET", f"/v1/users/{_seg(user_id)}/keys")["keys"]

    @checked(user_id=TEXT, key_id=TEXT)
    def revoke_key(self, user_id: str, key_id: str) -> dict[str, Any]:
        """``DELETE /v1/users/{user_id}/keys/{key_id}``."""
        return self._call("DELETE", f"/v1/users/{_seg(user_id)}/keys/{_seg(key_id)}")

    # -- personalization and feedback --------------------------------------------------
    @checked(input=TEXT, user_id=optional(TEXT), profile=optional(_ITEMS), task=TEXT, n=INT, rule=TEXT, seed=INT)
    def personalize(self, input: str, user_id: str | None = None, profile: list[dict[str, Any]] | None = None,
                    task: str = "git-commits", n: int = 8, rule: str = "mean", seed: int = 0, **options: Any) -> dict[str, Any]:
        """``POST /v1/personalize`` (``options``: adaptive, max_n, round_size, min_round_gain)."""
        body = {"input": input, "user_id": user_id, "profile": profile, "task": task, "n": n, "rule": rule, "seed": seed}
        return self._call("POST", "/v1/personalize", json={**body, **options})

    @checked(request_id=TEXT, text=TEXT)
    def feedback(self, request_id: str, text: str) -> dict[str, Any]:
        """``POST /v1/feedback``: the text the user finally kept for a logged request."""
        return self._call("POST", "/v1/feedback", json={"request_id": request_id, "text": text})
