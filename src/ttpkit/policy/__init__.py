"""Policy backends: ``embedded`` (Gemma 3 270M), ``gguf``, ``hf``, ``openai`` and ``vllm``.

Every backend implements :class:`Policy`: ``sample(queries, m)`` returns ``m``
:class:`Candidate` objects per query.

| module       | holds                                                                            |
|--------------|----------------------------------------------------------------------------------|
| ``base``     | the interface: :class:`Policy`, :class:`Completer`, :class:`Candidate`,          |
|              | :class:`SamplingConfig`, :func:`query_seed`                                      |
| ``backends`` | :data:`BACKENDS`, one :class:`~ttpkit.policy.backends.Backend` row per backend:  |
|              | how it is checked, built and named; :func:`resolve_model`, :data:`EMBEDDED_NAME` |
| ``spec``     | :class:`PolicySpec` (a setting by name), :func:`make_policy`, :func:`lazy_policy`,|
|              | :class:`LazyPolicy` (picklable, for Ray actors)                                  |
| ``prompt``   | :class:`PromptBuilder` (few-shot prompts from retrieved profile items)           |
| ``local``    | :class:`~ttpkit.policy.local.LocalPolicy` (``embedded``, ``gguf``, ``hf``)       |
| ``openai``   | :class:`~ttpkit.policy.openai.OpenAIPolicy` (an OpenAI-compatible server)        |
| ``vllm``     | :class:`~ttpkit.policy.vllm.VLLMPolicy` (vLLM in process; optional extra)         |
| ``_sampling``| nucleus sampling of a batch of rows, each prompt from its own generator          |
| ``_cache``   | the shared-prefix KV cache: a prompt's N rows attend to one copy of it           |
| ``_checks``  | the checks that need no model: a whole GGUF file, an HF directory, a server URL  |
| ``_load``    | model loading: the embedded GGUF, the checked cache of converted GGUFs, HF dirs  |
| ``_gguf``    | GGUF header walk and tensor-by-tensor dequantization into safetensors shards     |
"""

from __future__ import annotations

from ttpkit.policy.base import SHIPPED, Candidate, Completer, Policy, SamplerDefaults, SamplingConfig, query_seed
from ttpkit.policy.prompt import PromptBuilder
from ttpkit.policy.backends import BACKENDS, EMBEDDED_NAME, Backend, resolve_model
from ttpkit.policy.spec import LazyPolicy, PolicySpec, lazy_policy, make_policy

__all__ = [
    "SHIPPED",
    "SamplerDefaults",
    "BACKENDS",
    "EMBEDDED_NAME",
    "Backend",
    "Candidate",
    "Completer",
    "LazyPolicy",
    "Policy",
    "PolicySpec",
    "PromptBuilder",
    "SamplingConfig",
    "lazy_policy",
    "make_policy",
    "query_seed",
    "resolve_model",
]
