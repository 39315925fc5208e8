"""Policy backends: ``embedded`` (Gemma 3 270M), ``gguf``, ``hf`` and ``openai``.

Every backend implements :class:`Policy`: ``sample(queries, n)`` returns ``n``
:class:`Candidate` objects per query.
"""

from __future__ import annotations

from pathlib import Path

from ttpkit.data import TaskSpec
from ttpkit.errors import TtpkitError
from ttpkit.policy.base import Candidate, Policy, SamplingConfig, query_seed
from ttpkit.policy.prompt import PromptBuilder

__all__ = ["BACKENDS", "Candidate", "Policy", "PromptBuilder", "SamplingConfig", "make_policy", "query_seed"]

BACKENDS = ("embedded", "gguf", "hf", "openai")


def make_policy(
    backend: str,
    task: TaskSpec,
    config: SamplingConfig | None = None,
    model: str | Path | None = None,
    base_url: str | None = None,
) -> Policy:
    """Build a policy by backend name.

    Args:
        backend: One of :data:`BACKENDS`.
        task: Task spec (prompt labels and fields).
        config: Decoding settings.
        model: GGUF path (``gguf``), model directory (``hf``) or served model
            name (``openai``); unused for ``embedded``.
        base_url: Server URL for ``openai`` (e.g. ``http://127.0.0.1:8000/v1``).
    """
    config = config or SamplingConfig()
    if backend == "embedded":
        from ttpkit.policy.local import LocalPolicy

        return LocalPolicy.embedded(task, config)
    if backend in ("gguf", "hf"):
        if model is None:
            raise TtpkitError(f"backend {backend!r} needs a model path (--model)")
        from ttpkit.policy.local import LocalPolicy

        return LocalPolicy.from_gguf(model, task, config) if backend == "gguf" else LocalPolicy.from_hf(model, task, config)
    if backend == "openai":
        if base_url is None:
            raise TtpkitError("backend 'openai' needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        from ttpkit.policy.openai import OpenAIPolicy

        return OpenAIPolicy(base_url, str(model or "default"), task, config)
    raise TtpkitError(f"unknown policy backend {backend!r}; known backends: {', '.join(BACKENDS)}")
