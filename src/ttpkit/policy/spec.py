"""Policy settings by name, and building a policy from one.

:class:`PolicySpec` is a policy setting (backend, model, decoding) as the CLI's
options and a study's ``policies`` entries give it; :func:`make_policy` builds
a backend by name, and :func:`lazy_policy` (a picklable :class:`LazyPolicy`)
defers the build until a sampling stage, or a Ray actor, has work left. What
differs between backends is a row of :data:`~ttpkit.policy.backends.BACKENDS`,
read here and never switched on by name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ttpkit.data import TaskSpec
from ttpkit.device import check_device, check_dtype, model_dtype, resolve_device, resolve_dtype
from ttpkit.errors import ConfigError
from ttpkit.policy._checks import check_base_url
from ttpkit.policy.backends import Backend, get_backend, names
from ttpkit.policy.base import Policy, SamplingConfig
from ttpkit.policy.local import LocalPolicy
from ttpkit.task import DEFAULT_MAX_NEW_TOKENS

__all__ = ["LazyPolicy", "PolicySpec", "check_backend_options", "lazy_policy", "make_policy"]


def check_backend_options(backend: str, model: str | Path | None, base_url: str | None) -> None:
    """Refuse a model or server the backend would ignore (forgetting ``--backend gguf`` would run Gemma instead).

    Raises:
        ConfigError: For an unknown backend, ``--model``/``--base-url`` with a backend that takes no model
            (``embedded``), or ``--base-url`` with a local one (``gguf``, ``hf``, ``vllm``).
    """
    b = get_backend(backend)
    if not b.takes_model and (model is not None or base_url is not None):
        given = " and ".join(f for f, v in (("--model", model), ("--base-url", base_url)) if v is not None)
        raise ConfigError(f"{given} given, but --backend is {b.name} ({b.about}), which "
                          "takes neither; add --backend gguf or hf for a model file, --backend openai for a server")
    if b.local and base_url is not None:
        raise ConfigError(f"--base-url given, but --backend {b.name} runs a local model; use --backend openai for a server")


def make_policy(
    backend: str,
    task: TaskSpec,
    config: SamplingConfig | None = None,
    model: str | Path | None = None,
    base_url: str | None = None,
    int8: bool = False,
    device: str = "cpu",
    dtype: str | None = None,
) -> Policy:
    """Build a policy by backend name (a row of :data:`~ttpkit.policy.backends.BACKENDS`).

    Args:
        backend: A name in :data:`~ttpkit.policy.backends.BACKENDS`.
        task: Task spec (prompt labels and fields).
        config: Decoding settings.
        model: GGUF path (``gguf``), model directory (``hf``) or served model
            name (``openai``); unused for ``embedded``; for ``vllm`` a model
            directory, a GGUF file, or ``embedded``/None (Gemma 3 270M).
        base_url: Server URL for ``openai`` (e.g. ``http://127.0.0.1:8000/v1``).
        int8: Torch backends only: int8 dynamic quantization of the linear
            layers (faster on CPU; changes the samples).
        device: Local backends only: ``cpu``, ``cuda`` or ``auto`` (:mod:`ttpkit.device`).
        dtype: Local backends: ``float32``, ``bfloat16``, ``auto``, or
            None for the device's default (:func:`ttpkit.device.resolve_dtype`).
    """
    b = get_backend(backend)
    check_backend_options(backend, model, base_url)
    device = resolve_device(device)
    _check_device(b, device, int8)
    dtype = _check_dtype(b, _resolve_dtype(b, dtype, device) if b.local else dtype, int8)
    _check_int8(b, int8)
    policy = b.build(None if model is None else str(model), base_url, task, config or SamplingConfig(), dtype)
    if b.torch:
        policy = _place(policy.quantize_int8() if int8 else policy, device, dtype)
    return policy


def _check_device(b: Backend, device: str, int8: bool) -> None:
    """Refuse a device (resolved) off the CPU for a server or with int8."""
    if device != "cpu" and (int8 or not b.local):
        raise ConfigError(f"--device {device} applies to local backends without --int8 (int8 quantization is CPU-only)")


def _check_int8(b: Backend, int8: bool) -> None:
    """Refuse int8 where the backend runs no torch model of its own."""
    if int8 and not b.torch:
        raise ConfigError(f"--int8 applies to the torch backends ({names(lambda x: x.torch)}), not to {b.name}")


def _resolve_dtype(b: Backend, dtype: str | None, device: str) -> str:
    """:func:`ttpkit.device.resolve_dtype` for ttpkit's own sampler; an unset dtype of another local backend (``vllm``)
    stays the device's :func:`~ttpkit.device.model_dtype`, since bf16 by default (on native-bf16 CPUs) was checked
    for ttpkit's sampler only."""
    return model_dtype(device) if dtype is None and not b.torch else resolve_dtype(dtype, device)


def _check_dtype(b: Backend, dtype: str | None, int8: bool) -> str | None:
    """``dtype`` (resolved) if backend ``b`` can run in it.

    Raises:
        ConfigError: For bfloat16 with int8 (the quantized layers take float32
            input) or with a server (it picks its own precision).
    """
    if dtype == "bfloat16" and int8:
        raise ConfigError("--dtype bfloat16 and --int8 exclude each other (int8 dynamic quantization runs on float32 layers)")
    if dtype == "bfloat16" and not b.local:
        raise ConfigError(f"--dtype applies to ttpkit's own backends ({names(lambda x: x.local)}), not to a server")
    return dtype


def _place(policy: LocalPolicy, device: str, dtype: str) -> LocalPolicy:
    """Move a local policy's model to ``device`` in ``dtype`` (both resolved); a CPU float32 model stays as loaded.

    On CUDA the forward passes, the KV cache and the nucleus draw live on the
    GPU; the uniform numbers of each draw still come from the query's CPU
    generator (:mod:`ttpkit.policy._sampling`), so a seed fixes the same
    procedure on either device.
    """
    import torch

    if device == "cpu" and dtype == "float32" and policy.model.dtype == torch.float32:
        return policy
    policy.model = policy.model.to(device, dtype=getattr(torch, dtype))
    return policy


@dataclass(frozen=True)
class PolicySpec:
    """A policy setting by name: backend, model and decoding (the CLI's options, a study's ``policies`` entry).

    Attributes:
        name: Label of the setting in study tables and plots.
        backend: A name in :data:`~ttpkit.policy.backends.BACKENDS`.
        model: GGUF file (``gguf``, ``pkg://`` paths allowed), model directory
            (``hf``) or served model name (``openai``); for ``vllm`` either of
            the first two, or None/``embedded`` for Gemma 3 270M.
        temperature: Softmax temperature (0: greedy decoding).
        top_p: Nucleus mass.
        max_new_tokens: Token limit per candidate.
        k: Retrieved profile items per prompt (0: zero-shot).
        int8: Opt-in int8 dynamic quantization of a local model.
        base_url: Server of the ``openai`` backend.
        device: Where a local model runs: ``cpu`` (default) or ``cuda``
            (resolve ``auto`` first with :func:`ttpkit.device.resolve_device`, so
            the manifest records the device used).
        dtype: Precision of a local (or ``vllm``) model: None (default:
            bfloat16 on CUDA and, for ttpkit's own sampler, on CPUs with
            native bf16; float32 on other CPUs and for ``vllm`` on any CPU;
            :func:`ttpkit.device.default_dtype`), ``float32``,
            ``bfloat16`` (matrix products in bf16, logits and sampling in
            float32; changes the samples) or ``auto`` (bfloat16 on CUDA and on
            CPUs with native bf16). :meth:`manifest_dtype` resolves it for the
            pool manifest.
    """

    name: str = "policy"
    backend: str = "embedded"
    model: str | None = None
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    k: int = 4
    int8: bool = False
    base_url: str | None = None
    device: str = "cpu"
    dtype: str | None = None
    greedy: bool = False  # also decode each query greedily, as one more candidate (SamplingConfig.greedy)

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
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        k: int = 4,
        int8: bool = False,
        device: str = "cpu",
        dtype: str | None = None,
        greedy: bool = False,
    ) -> PolicySpec:
        """A setting from command-line options, named by its backend's ``default_name`` (``gemma3-270m`` for ``embedded``).

        Raises:
            ConfigError: For an unknown backend or a decoding setting out of range.
        """
        if name is None:
            name = get_backend(backend).default_name
        return cls(name=name, backend=backend, model=model, temperature=temperature, top_p=top_p,
                   max_new_tokens=max_new_tokens, k=k, int8=int8, base_url=base_url, device=device, dtype=dtype,
                   greedy=greedy)

    def __post_init__(self) -> None:
        check_backend_options(self.backend, self.model, self.base_url)  # an unknown backend too
        if self.base_url is not None:
            check_base_url(self.base_url)
        self.sampling(0)  # range checks of the decoding settings
        check_device(self.device)
        if self.dtype is not None:
            check_dtype(self.dtype)
        if self.dtype not in (None, "auto"):
            _check_dtype(get_backend(self.backend), self.dtype, self.int8)

    def sampling(self, seed: int) -> SamplingConfig:
        """The decoding settings with a run seed."""
        return SamplingConfig(self.temperature, self.top_p, self.max_new_tokens, seed, self.k, greedy=self.greedy)

    def check(self, device_here: bool = True) -> None:
        """Check that the policy can be built, without loading it (model files, server URL; :mod:`ttpkit.policy._checks`).

        Args:
            device_here: Check ``cuda`` against this machine's torch. ``False`` when the
                model loads elsewhere (Ray actors on GPU workers, driven from a node
                without one): the actor's build checks it there.

        Raises:
            ConfigError: Naming the missing model or setting.
        """
        b = get_backend(self.backend)
        b.check(self.model, self.base_url)  # the GGUF's header, config.json parsed, the URL: before transformers reads a byte
        _check_int8(b, self.int8)
        if b.local or self.device != "cpu":
            # cuda without CUDA is refused here, before any model loads
            device = resolve_device(self.device) if device_here or self.device != "cuda" else "cuda"
            _check_device(b, device, self.int8)
            _check_dtype(b, _resolve_dtype(b, self.dtype, device), self.int8)

    def probe(self, task: TaskSpec, seed: int = 0) -> None:
        """Ask what only the policy's server can say (its backend's ``probe``: one request with this setting's
        token limit) before any model loads and any progress display starts; nothing for a local backend.

        Raises:
            TtpkitError: Naming the server and what it answered (HTML, ``choices`` that is no list, a refusal).
        """
        probe = get_backend(self.backend).probe
        if probe is not None:
            probe(self.model, self.base_url, task, self.sampling(seed))

    def manifest_dtype(self) -> str | None:
        """The dtype a pool manifest records: the resolved dtype where it differs from the device's default, else None.

        ``auto`` is resolved first (:func:`ttpkit.device.resolve_dtype`), so a
        manifest names the precision that ran, never ``auto``. Float32 on the CPU
        and bfloat16 on CUDA, what each device ran before ``--dtype`` existed,
        are not recorded, so pools sampled before the option still resume; a
        float32 pool resumed in bfloat16 (or the reverse) is refused. A server
        (``openai``) records none; a backend with ``records_dtype`` (``vllm``,
        which has no earlier pools) always records its dtype.
        """
        b = get_backend(self.backend)
        if not b.local:
            return None
        dtype = _resolve_dtype(b, self.dtype, resolve_device(self.device))
        if b.records_dtype:
            return dtype
        return None if dtype == model_dtype(resolve_device(self.device)) else dtype

    def identity(self) -> dict[str, str | None]:
        """The model behind this setting, for run manifests: backend, model and the SHA-256 of its file(s).

        A server's model (``openai``) is identified by its URL and served name only.
        """
        return {"backend": self.backend, **get_backend(self.backend).identity(self.model, self.base_url)}

    def build(self, task: TaskSpec, seed: int = 0) -> Policy:
        """Load the policy (seconds to a minute for a local model), once :meth:`check` has passed."""
        self.check()
        return make_policy(self.backend, task, self.sampling(seed), model=self.model, base_url=self.base_url, int8=self.int8,
                           device=self.device, dtype=self.dtype)


class LazyPolicy:
    """Builds ``spec``'s policy on its first call and returns the same object afterwards (see :func:`lazy_policy`).

    Picklable for the Ray engine (:mod:`ttpkit.engine`): a pickled copy carries
    the setting, the task and the seed, but neither the load hook nor a policy
    already built, so each actor loads its own model once.

    Args:
        spec: The policy setting.
        task: Task spec for prompts.
        seed: Run seed.
        on_load: Called with a message just before the model loads.
    """

    def __init__(self, spec: PolicySpec, task: TaskSpec, seed: int = 0, on_load: Callable[[str], None] | None = None) -> None:
        self.spec, self.task, self.seed, self.on_load = spec, task, seed, on_load
        self._built: Policy | None = None

    def __call__(self) -> Policy:
        if self._built is None:
            if self.on_load is not None:
                self.on_load(f"loading policy {self.spec.name} ({self.spec.backend}) ...")
            self._built = self.spec.build(self.task, self.seed)
        return self._built

    def __getstate__(self) -> dict:
        return {"spec": self.spec, "task": self.task, "seed": self.seed, "on_load": None, "_built": None}


def lazy_policy(spec: PolicySpec, task: TaskSpec, seed: int = 0, on_load: Callable[[str], None] | None = None) -> LazyPolicy:
    """A function that builds ``spec``'s policy on its first call and returns the same object afterwards.

    Sampling stages take it instead of a policy so that a model loads only
    when some query still needs samples (a resumed or cached run loads none).
    It pickles without its hook or model (:class:`LazyPolicy`), so the Ray
    engine sends it to actors as it is.

    Args:
        spec: The policy setting.
        task: Task spec for prompts.
        seed: Run seed.
        on_load: Called with a message just before the model loads.
    """
    return LazyPolicy(spec, task, seed, on_load)
