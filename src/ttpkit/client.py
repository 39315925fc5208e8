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

import httpx

from ttpkit._args import INT, REAL, STR, checked, instance, list_of, optional
from ttpkit.errors import ConfigError, TtpkitError

__all__ = ["Client", "ServiceError"]

_ITEMS = list_of(instance(dict, says=""), "a list of dicts")


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
        r = self.http.request(method, path, **kw)
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

    @checked(prompt=STR | list_of(STR, "a list of str"), n=INT, seed=INT)
    def complete(self, prompt: str | list[str], n: int = 1, seed: int = 0, **options: Any) -> dict[str, Any]:
        """``POST /v1/completions`` (``options``: temperature, top_p, max_tokens, stop)."""
        return self._call("POST", "/v1/completions", json={"prompt": prompt, "n": n, "seed": seed, **options})

    @checked(messages=_ITEMS, n=INT, seed=INT)
    def chat(self, messages: list[dict[str, str]], n: int = 1, seed: int = 0, **options: Any) -> dict[str, Any]:
        """``POST /v1/chat/completions``."""
        return self._call("POST", "/v1/chat/completions", json={"messages": messages, "n": n, "seed": seed, **options})

    # -- profiles and keys --------------------------------------------------------------
    @checked(user_id=STR, items=_ITEMS, task=STR)
    def add_items(self, user_id: str, items: list[dict[str, Any]], task: str = "git-commits") -> dict[str, Any]:
        """``POST /v1/users/{user_id}/items``: append items; returns ``{user_id, added, size}``."""
        return self._call("POST", f"/v1/users/{user_id}/items", json={"task": task, "items": items})

    @checked(user_id=STR, offset=INT, limit=INT)
    def profile(self, user_id: str, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        """``GET /v1/users/{user_id}``: one page of the profile."""
        return self._call("GET", f"/v1/users/{user_id}", params={"offset": offset, "limit": limit})

    @checked(user_id=STR)
    def forget(self, user_id: str) -> dict[str, Any]:
        """``DELETE /v1/users/{user_id}``: rows deleted per table."""
        return self._call("DELETE", f"/v1/users/{user_id}")

    @checked(user_id=STR)
    def issue_key(self, user_id: str) -> dict[str, str]:
        """``POST /v1/users/{user_id}/keys`` (admin): ``{user_id, key_id, key}``; the key is shown only now."""
        return self._call("POST", f"/v1/users/{user_id}/keys")

    @checked(user_id=STR)
    def keys(self, user_id: str) -> list[dict[str, Any]]:
        """``GET /v1/users/{user_id}/keys``: ids and dates, no secrets."""
        return self._call("GET", f"/v1/users/{user_id}/keys")["keys"]

    @checked(user_id=STR, key_id=STR)
    def revoke_key(self, user_id: str, key_id: str) -> dict[str, Any]:
        """``DELETE /v1/users/{user_id}/keys/{key_id}``."""
        return self._call("DELETE", f"/v1/users/{user_id}/keys/{key_id}")

    # -- personalization and feedback --------------------------------------------------
    @checked(input=STR, user_id=optional(STR), profile=optional(_ITEMS), task=STR, n=INT, rule=STR, seed=INT)
    def personalize(self, input: str, user_id: str | None = None, profile: list[dict[str, Any]] | None = None,
                    task: str = "git-commits", n: int = 8, rule: str = "mean", seed: int = 0, **options: Any) -> dict[str, Any]:
        """``POST /v1/personalize`` (``options``: adaptive, max_n, round_size, min_round_gain)."""
        body = {"input": input, "user_id": user_id, "profile": profile, "task": task, "n": n, "rule": rule, "seed": seed}
        return self._call("POST", "/v1/personalize", json={**body, **options})

    @checked(request_id=STR, text=STR)
    def feedback(self, request_id: str, text: str) -> dict[str, Any]:
        """``POST /v1/feedback``: the text the user finally kept for a logged request."""
        return self._call("POST", "/v1/feedback", json={"request_id": request_id, "text": text})
