"""Backend for any OpenAI-compatible completions server (vLLM, llama.cpp server, ``ttpkit serve``)."""

from __future__ import annotations

from typing import Any

from ttpkit.data import Query, TaskSpec
from ttpkit.errors import TtpkitError
from ttpkit.policy.base import Candidate, SamplingConfig, query_seed
from ttpkit.policy.prompt import PromptBuilder, cut_completion

__all__ = ["OpenAIPolicy"]


class OpenAIPolicy:
    """Samples through ``POST {base_url}/completions`` with ``n`` choices per prompt.

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

    def complete(self, prompt: str, n: int, seed: int) -> list[str]:
        """``n`` one-line completions of a raw prompt."""
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
        choices = sorted(resp.json().get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != n:
            raise TtpkitError(f"{self.base_url}: asked for {n} choices, got {len(choices)}")
        return [cut_completion(c.get("text", ""), self.prompt.task) for c in choices]

    def sample(self, queries: list[Query], m: int) -> list[list[Candidate]]:
        """``m`` candidates per query (see :class:`ttpkit.policy.Policy`)."""
        out = []
        for q in queries:
            texts = self.complete(self.prompt(q), m, query_seed(self.config.seed, q.id) % (2**31))
            out.append([Candidate(q.id, q.user_id, i, t, self.name, self.config.seed) for i, t in enumerate(texts)])
        return out
