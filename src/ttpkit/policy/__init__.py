"""Policy backends: ``embedded`` (Gemma 3 270M), ``gguf``, ``hf``, ``openai`` and ``vllm``.

Every backend implements :class:`Policy`: ``sample(queries, m)`` returns ``m``
:class:`Candidate` objects per query.

| module       | holds                                                                            |
|--------------|----------------------------------------------------------------------------------|
| ``base``     | the interface: :class:`Policy`, :class:`Completer`, :class:`Candidate`,          |
|              | :class:`SamplingConfig`, :func:`query_seed`                                      |
| ``spec``     | :class:`PolicySpec` (a setting by name), :func:`make_policy`, :func:`lazy_policy`,|
|              | :class:`LazyPolicy` (picklable, for Ray actors),                                 |
|              | :func:`resolve_model`, :data:`BACKENDS`, :data:`EMBEDDED_NAME`                   |
| ``prompt``   | :class:`PromptBuilder` (few-shot prompts from retrieved profile items)           |
| ``local``    | :class:`~ttpkit.policy.local.LocalPolicy` (``embedded``, ``gguf``, ``hf``)       |
| ``openai``   | :class:`~ttpkit.policy.openai.OpenAIPolicy` (an OpenAI-compatible server)        |
| ``vllm``     | :class:`~ttpkit.policy.vllm.VLLMPolicy` (vLLM in process; optional extra)         |
| ``_sampling``| nucleus sampling of a batch of rows, each prompt from its own generator          |
| ``_cache``   | the shared-prefix KV cache: a prompt's N rows attend to one copy of it           |
| ``_load``    | model loading: the embedded GGUF, the checked cache of converted GGUFs, HF dirs  |
| ``_gguf``    | GGUF header walk and tensor-by-tensor dequantization into safetensors shards     |
"""

from __future__ import annotations

from ttpkit.policy.base import Candidate, Completer, Policy, SamplingConfig, query_seed
from ttpkit.policy.prompt import PromptBuilder
from ttpkit.policy.spec import BACKENDS, EMBEDDED_NAME, LazyPolicy, PolicySpec, lazy_policy, make_policy, resolve_model

__all__ = [
    "BACKENDS",
    "EMBEDDED_NAME",
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
