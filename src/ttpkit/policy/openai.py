"""Backend for any OpenAI-compatible completions server (vLLM, llama.cpp server, ``ttpkit serve``)."""

from __future__ import annotations

import logging
from typing import Any, Optional

from ttpkit.data import Query, TaskSpec
from ttpkit.errors import TtpkitError
from ttpkit.policy.base import Candidate, SamplingConfig, query_seed
from ttpkit.policy.prompt import PromptBuilder, cut_completion

__all__ = ["OpenAIPolicy"]

log = logging.getLogger(__name__)


class OpenAIPolicy:
    """Samples through ``POST {base_url}/completions`` with ``n`` choices per prompt.

    Some servers (llama-cpp-python, several vendors) ignore ``n`` and answer
    one choice. The first time that happens the policy warns once and falls
    back to one request per sample, sample ``i`` seeded ``seed + i``, for the
    rest of its life; :attr:`n_path` records which path ran (``"n"``,
    ``"per-seed"``, or ``None`` before any request asked for ``n > 1``);
    ``ttpkit sample`` stamps it into the pool's manifest
    (:func:`ttpkit.stages.record_n_path`).

    Args:
        base_url: Server root including ``/v1`` (``http://127.0.0.1:8000/v1``).
        model: Served model name.
        task: Task spec for prompts.
        config: Decoding settings; the per-query seed is sent as ``seed``.
        client: An ``httpx.Client`` to use (tests pass an in-process client).
        timeout: Seconds per request.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        task: TaskSpec,
        config: SamplingConfig | None = None,
        client: Any = None,
        timeout: float = 300.0,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        self.model = model
        self.config = config or SamplingConfig()
        self.prompt = PromptBuilder(task, k=self.config.k)
        labels = (task.source_label, task.target_label)  # a multi-line text ends where the next example starts
        self._stop = [f"\n{label}:" for label in labels] if task.multiline else ["\n"]
        self.name = f"openai:{model}"
        self.batch_queries = 1  # one request per query
        self.client = client or httpx.Client(timeout=timeout)
        self.n_path: Optional[str] = None

    def complete(self, prompt: str, n: int, seed: int) -> list[str]:
        """``n`` one-line completions of a raw prompt (one request, or ``n`` where the server ignores ``n``)."""
        if self.n_path == "per-seed":
            return [self._request(prompt, 1, (seed + i) % (2**31))[0] for i in range(n)]
        texts = self._request(prompt, n, seed)
        if len(texts) == n:
            if n > 1:
                self.n_path = "n"
            return texts
        if len(texts) != 1 or self.n_path == "n":
            raise TtpkitError(f"{self.base_url}: asked for {n} choices, got {len(texts)}")
        log.warning("%s ignores n (asked for %d choices, got 1): sending one request per sample, seeded seed + i",
                    self.base_url, n)
        self.n_path = "per-seed"
        return texts + [self._request(prompt, 1, (seed + i) % (2**31))[0] for i in range(1, n)]

    def _request(self, prompt: str, n: int, seed: int) -> list[str]:
        """The choices of one completions request, in index order, cut to one completion each."""
        import httpx

        cfg = self.config
        body = {
            "model": self.model,
            "prompt": prompt,
            "n": n,
            "temperature": cfg.temperature,
            "top_p": cfg.top_p,
            "max_tokens": cfg.max_new_tokens,
            "stop": self._stop,
            "seed": seed,
        }
        try:
            resp = self.client.post(f"{self.base_url}/completions", json=body)
        except httpx.HTTPError as e:
            raise TtpkitError(f"{self.base_url}: request failed ({e})") from None
        if resp.status_code != 200:
            raise TtpkitError(f"{self.base_url}/completions answered {resp.status_code}: {resp.text[:300]}")
        try:
            choices = sorted(resp.json().get("choices", []), key=lambda c: c.get("index", 0))
        except (ValueError, AttributeError, TypeError):
            raise TtpkitError(f"{self.base_url}/completions answered something other than a completions object: "
                              f"{resp.text[:300]}") from None
        return [cut_completion(c.get("text", ""), self.prompt.task) for c in choices]

    def sample(self, queries: list[Query], m: int) -> list[list[Candidate]]:
        """``m`` candidates per query (see :class:`ttpkit.policy.Policy`)."""
        out = []
        for q in queries:
            texts = self.complete(self.prompt(q), m, query_seed(self.config.seed, q.id) % (2**31))
            out.append([Candidate(q.id, q.user_id, i, t, self.name, self.config.seed) for i, t in enumerate(texts)])
        return out
