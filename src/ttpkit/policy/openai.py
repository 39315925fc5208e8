"""Backend for any OpenAI-compatible completions server (vLLM, llama.cpp server, ``ttpkit serve``).

Whatever a server answers becomes candidates or one :class:`~ttpkit.errors.TtpkitError`
naming the URL and what was wrong (:func:`parse_choices`): a status other than
200, a body that is not JSON (an HTML page from a proxy), no ``choices`` list,
a choice that is no object or has no string ``text`` (``null``), indices out of
order or repeated, or another number of choices than asked for.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Optional

from ttpkit.data import Query, TaskSpec
from ttpkit.errors import TtpkitError
from ttpkit.policy.base import GREEDY, Candidate, Completion, SamplingConfig, sample_queries
from ttpkit.policy.prompt import PromptBuilder, cut_completion

__all__ = ["OpenAIPolicy", "parse_choices"]

log = logging.getLogger(__name__)


def parse_choices(resp: Any, url: str) -> list[str]:
    """The texts of a completions response's ``choices``, in index order.

    Args:
        resp: The ``httpx.Response`` (status 200).
        url: The endpoint, for messages.

    Raises:
        TtpkitError: Naming ``url`` and what the body holds instead of a completions object.
    """
    ctype = resp.headers.get("content-type", "")
    try:
        body = resp.json()
    except ValueError:  # JSONDecodeError, or bytes that are no UTF-8
        shown = " ".join(resp.text[:120].split())
        raise TtpkitError(f"{url} answered 200 with a body that is not JSON ({ctype or 'no content-type'}: {shown!r}); "
                          "is --base-url the API's root, not a web page or a proxy's login?") from None
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        got = (f"a JSON {type(body).__name__}" if not isinstance(body, dict) else
               f"'choices': {json.dumps(body['choices'])[:40]}" if "choices" in body else "no 'choices'")
        raise TtpkitError(f"{url} answered 200 with JSON that is not a completions object ('choices' must be a list; got {got})")
    texts: dict[int, str] = {}
    for i, c in enumerate(body["choices"]):
        if not isinstance(c, dict):
            raise TtpkitError(f"{url}: choices[{i}] is {json.dumps(c)[:40]}, not an object with 'text'")
        index = c.get("index", i)
        if isinstance(index, bool) or not isinstance(index, int) or index in texts:
            raise TtpkitError(f"{url}: choices[{i}] has index {index!r} (indices must be distinct integers)")
        if "text" not in c:
            raise TtpkitError(f"{url}: choices[{i}] has no 'text' (a chat completion? ttpkit calls /completions)")
        if not isinstance(c["text"], str):
            raise TtpkitError(f"{url}: choices[{i}].text is {json.dumps(c['text'])[:40]}, not a string")
        texts[index] = c["text"]
    return [texts[k] for k in sorted(texts)]


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
            return [self._one(prompt, (seed + i) % (2**31)) for i in range(n)]
        texts = self._request(prompt, n, seed)
        if len(texts) == n:
            if n > 1:
                self.n_path = "n"
            return texts
        if len(texts) != 1 or self.n_path == "n":
            raise TtpkitError(f"{self.base_url}/completions: asked for {n} choices, got {len(texts)}")
        log.warning("%s ignores n (asked for %d choices, got 1): sending one request per sample, seeded seed + i",
                    self.base_url, n)
        self.n_path = "per-seed"
        return texts + [self._one(prompt, (seed + i) % (2**31)) for i in range(1, n)]

    def _one(self, prompt: str, seed: int) -> str:
        """The one choice of a request for ``n=1``."""
        texts = self._request(prompt, 1, seed)
        if len(texts) != 1:
            raise TtpkitError(f"{self.base_url}/completions: asked for 1 choice, got {len(texts)}")
        return texts[0]

    def complete_scored(self, prompts: list[str], n: int, seeds: list[int], greedy: bool = False) -> list[list[Completion]]:
        """``n`` completions of each prompt, then its greedy decode if ``greedy`` (a separate ``n=1``, ``temperature=0`` request).

        Servers do not report the untempered log-probability, so ``logp`` is NaN.
        """
        out = []
        for prompt, seed in zip(prompts, seeds):
            done = [Completion(t) for t in self.complete(prompt, n, seed % (2**31))]
            if greedy:
                texts = self._request(prompt, 1, 0, temperature=GREEDY)
                if len(texts) != 1:
                    raise TtpkitError(f"{self.base_url}/completions: asked for 1 greedy choice, got {len(texts)}")
                done.append(Completion(texts[0], greedy=True))
            out.append(done)
        return out

    def _request(self, prompt: str, n: int, seed: int, temperature: float | None = None) -> list[str]:
        """The choices of one completions request, in index order, cut to one completion each."""
        import httpx

        cfg = self.config
        body = {
            "model": self.model,
            "prompt": prompt,
            "n": n,
            "temperature": cfg.temperature if temperature is None else temperature,
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
            shown = " ".join(resp.text[:300].split())  # a server's JSON error spans lines; the message is one
            raise TtpkitError(f"{self.base_url}/completions answered {resp.status_code}: {shown}")
        return [cut_completion(t, self.prompt.task) for t in parse_choices(resp, f"{self.base_url}/completions")]

    def probe(self) -> None:
        """One request (``n=1``, the run's ``max_tokens``, temperature and top-p) before any progress display starts.

        What only the server can say is said here, in one line naming the URL, rather than after "sampling":
        it is unreachable, it answers HTML (a proxy's login page) or ``choices`` that is no list, or it
        refuses the request (a ``max_tokens`` above its context, a model name it does not serve).

        Raises:
            TtpkitError: Naming the URL, what it answered, and the request's ``max_tokens``.
        """
        try:
            self._request("Say hello.", 1, 0)
        except TtpkitError as e:
            raise TtpkitError(f"{e} (a probe request before sampling: n=1, max_tokens={self.config.max_new_tokens})") from None

    def sample(self, queries: list[Query], m: int) -> list[list[Candidate]]:
        """``m`` candidates per query, and the greedy one if configured (see :class:`ttpkit.policy.Policy`)."""
        return sample_queries(self, queries, m)
