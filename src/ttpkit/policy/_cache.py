"""A KV cache for N samples of each of several prompts that stores every prompt once.

``transformers``' ``DynamicCache`` holds one copy of the prompt's keys and values
per row and grows with ``torch.cat`` at every step, copying everything. For 16
samples of a 600-token prompt on 2 CPU cores that copy was ~40% of a decode step
and attention over the 16 identical copies another ~12%.

:func:`share_prefix` merges the prefilled (batch 1) caches of a few prompts into
one cache whose layers keep each prompt's keys and values once, ``(H, T, D)``,
plus a preallocated ``(rows, H, capacity, D)`` buffer for the generated tokens,
written in place. Decoding the samples of several prompts in one batch makes
each step's matrix products wider, which CPUs run far more efficiently per row:
on 2 cores the 262k x 640 output layer takes 7-8 ms per row at 16 rows and
4-6 ms per row at 64 (``benchmarks/p1_profile.py``).

The model must run with :data:`ATTENTION`, an attention function that attends
each row to its prompt (one matrix product for all rows of that prompt) and to
its own generated tokens, honouring sliding windows; on inputs that do not come
from these layers (the prefill) it is ``transformers``' SDPA attention.

The logits equal those of the plain cache up to float rounding (the test suite
checks this on Gemma 3, which mixes sliding and full attention layers, and Llama).

In bfloat16 the matrix products take bf16 inputs while the scores, their
exponentials and the running sums are float32 (as flash attention keeps them);
in float32 every upcast is a no-op. The buffers live on the device and in the
dtype of the prefilled keys, so a CUDA model keeps its cache on the GPU.
"""

from __future__ import annotations

import weakref
from typing import Any

__all__ = ["ATTENTION", "enable", "share_prefix"]

ATTENTION = "ttpkit_shared_prefix"
_TAG = "_ttpkit_layer"
_CLASSES: tuple[type, type] | None = None


def _shared_prefix_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                             scaling: float | None = None, sliding_window: int | None = None,
                             softcap: float | None = None, **kwargs: Any) -> tuple[Any, None]:
    """Attention of one new token per row over (its prompt, its own suffix); SDPA otherwise.

    Rows of one prompt are contiguous; each prompt's part is one matrix product
    for all its rows and query heads, and the prompt and suffix parts are merged
    with their running maxima (as in flash attention).
    """
    tag = getattr(key, _TAG, None)
    layer = tag() if tag is not None else None
    if layer is None or query.shape[2] != 1:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      sliding_window=sliding_window, softcap=softcap, **kwargs)
    import torch

    layer.calls += 1
    rows, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    group = heads // kv_heads
    scaling = dim**-0.5 if scaling is None else scaling
    q = query.reshape(rows, kv_heads, group, dim) * scaling
    low = query.dtype  # bf16 products, float32 softmax
    peak, mass, acc = [], [], []
    for g, start, end in layer.spans:  # one prompt's rows at a time
        pk, pv = layer.visible_prefix(g)  # (kv_heads, P, D)
        r = end - start
        qg = q[start:end].transpose(0, 1).reshape(kv_heads, r * group, dim)
        sp = torch.matmul(qg, pk.transpose(1, 2)).float()  # (kv_heads, r * group, P)
        if softcap is not None:
            sp = torch.tanh(sp / softcap) * softcap
        m = sp.amax(-1, keepdim=True)
        e = (sp - m).exp()
        peak.append(m.reshape(kv_heads, r, group, 1).transpose(0, 1))
        mass.append(e.sum(-1, keepdim=True).reshape(kv_heads, r, group, 1).transpose(0, 1))
        acc.append(torch.matmul(e.to(low), pv).float().reshape(kv_heads, r, group, dim).transpose(0, 1))
    mp, sp_sum, op = (torch.cat(x) if len(x) > 1 else x[0] for x in (peak, mass, acc))  # (rows, kv_heads, group, .)
    ss = torch.matmul(q, key.transpose(-1, -2)).float()  # (rows, kv_heads, group, S): own generated tokens
    if softcap is not None:
        ss = torch.tanh(ss / softcap) * softcap
    top = torch.maximum(mp, ss.amax(-1, keepdim=True))
    wp, es = (mp - top).exp(), (ss - top).exp()
    out = (op * wp + torch.matmul(es.to(low), value).float()) / (sp_sum * wp + es.sum(-1, keepdim=True))  # (rows, kv_heads, group, D)
    return out.to(low).reshape(rows, heads, 1, dim).transpose(1, 2).contiguous(), None


def enable(model: Any) -> bool:
    """Register :data:`ATTENTION` and switch ``model`` to it. Returns False if the model refuses."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, _shared_prefix_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)
    if getattr(model.config, "_attn_implementation", None) == ATTENTION:
        return True
    try:
        model.set_attn_implementation(ATTENTION)
    except Exception:  # noqa: BLE001 - models that validate the name against their own list
        return False
    return getattr(model.config, "_attn_implementation", None) == ATTENTION


def _layer_classes() -> tuple[type, type]:
    import torch
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    class SharedPrefixLayer(DynamicLayer):
        """Each prompt's keys/values once, generated ones in a preallocated per-row buffer.

        Rows are grouped by prompt, each group contiguous; ``spans`` lists
        ``(group, first row, end row)`` for the groups that still have rows.
        """

        def _setup(self, prefixes: list[tuple[Any, Any]], repeats: list[int], capacity: int) -> None:
            keys = prefixes[0][0]
            _, h, _, d = keys.shape
            self.prefix = [(k[0].contiguous(), v[0].contiguous()) for k, v in prefixes]  # (H, T_g, D) each
            self.row_group = torch.repeat_interleave(torch.arange(len(repeats)), torch.tensor(repeats))
            self.buf_k = torch.empty(int(sum(repeats)), h, capacity, d, dtype=keys.dtype, device=keys.device)
            self.buf_v = torch.empty_like(self.buf_k)
            self.suffix = 0
            self.calls = 0
            self.device = keys.device
            self.is_initialized = True
            self._regroup()
            self._sync()

        def _regroup(self) -> None:
            counts = torch.bincount(self.row_group, minlength=len(self.prefix)).tolist()
            self.spans, start = [], 0
            for g, c in enumerate(counts):
                if c:
                    self.spans.append((g, start, start + c))
                    start += c

        def _sync(self) -> None:
            self.keys = self.buf_k[:, :, : self.suffix]
            self.values = self.buf_v[:, :, : self.suffix]

        def visible_prefix(self, g: int) -> tuple[Any, Any]:
            return self.prefix[g]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            q = key_states.shape[-2]
            if q != 1 or self.suffix + 1 > self.buf_k.shape[-2]:
                raise RuntimeError("shared-prefix cache: one token per step, within the preallocated capacity")
            self.buf_k[:, :, self.suffix] = key_states[:, :, 0]
            self.buf_v[:, :, self.suffix] = value_states[:, :, 0]
            self.suffix += 1
            self._grow()
            self._sync()
            k, v = self.keys, self.values
            setattr(k, _TAG, weakref.ref(self))  # weakly: a strong tag is a cycle, a batch's cache freed only by the gc
            return k, v

        def _grow(self) -> None:
            pass

        def get_seq_length(self) -> int:
            return max(k.shape[1] for k, _ in self.prefix) + self.suffix

        def batch_select_indices(self, indices: Any) -> None:
            if len(indices) > 1 and not bool((indices[1:] > indices[:-1]).all()):
                raise RuntimeError("shared-prefix cache: rows must stay in order")
            at = indices.to(self.buf_k.device)
            self.buf_k, self.buf_v = self.buf_k[at], self.buf_v[at]
            self.row_group = self.row_group[indices.to(self.row_group.device)]  # bookkeeping on the CPU
            self._regroup()
            self._sync()

        def batch_repeat_interleave(self, repeats: int) -> None:
            raise RuntimeError("shared-prefix cache: set the rows per prompt in share_prefix")

    class SlidingSharedPrefixLayer(SharedPrefixLayer, DynamicSlidingWindowLayer):
        """Same, for a sliding-window layer: a prompt's oldest keys drop out of the window as tokens are added."""

        def __init__(self, sliding_window: int, seen: list[int]) -> None:
            DynamicSlidingWindowLayer.__init__(self, sliding_window=sliding_window)
            self.seen_prompt = seen  # prompt lengths; the prefilled layer kept the last min(seen, window - 1)

        def visible_prefix(self, g: int) -> tuple[Any, Any]:
            # the new token at position P sees positions > P - window; the prefix holds the prompt's last L positions
            pk, pv = self.prefix[g]
            drop = max(0, self.suffix - self.sliding_window + pk.shape[1])
            return pk[:, drop:], pv[:, drop:]

        def _grow(self) -> None:
            self.cumulative_length = max(self.seen_prompt) + self.suffix
            if self.suffix > self.sliding_window - 1:
                raise RuntimeError("shared-prefix cache: generation longer than the sliding window")

        def get_seq_length(self) -> int:
            return max(self.seen_prompt) + self.suffix

    return SharedPrefixLayer, SlidingSharedPrefixLayer


def share_prefix(caches: list[Any], repeats: list[int], capacity: int) -> list[Any] | None:
    """Put prefilled ``DynamicCache``s of several prompts into one shared-prefix cache.

    Args:
        caches: One ``transformers`` ``DynamicCache`` per prompt, each after its
            own prefill (batch 1). The first one becomes the decode cache.
        repeats: Rows to decode per prompt; prompt g's rows come before g+1's.
        capacity: Tokens each row may add.

    Returns:
        The first cache's new layers (their ``calls`` count how often
        :data:`ATTENTION` used them), or None, leaving the caches untouched,
        when a layer is of a kind this module does not handle; the caller then
        decodes each prompt with a repeated plain cache instead.

    The model must then be called with explicit ``position_ids`` (prompts differ
    in length); the attention mask it builds is not used.
    """
    global _CLASSES
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer

    if _CLASSES is None:
        _CLASSES = _layer_classes()
    full_cls, sliding_cls = _CLASSES
    if len(caches) != len(repeats) or not caches:
        raise ValueError("share_prefix: one repeat count per cache")
    stacks = [getattr(c, "layers", None) for c in caches]
    if not stacks[0] or any(s is None or len(s) != len(stacks[0]) for s in stacks):
        return None
    new = []
    for i, first in enumerate(stacks[0]):
        column = [s[i] for s in stacks]
        for layer in column:
            if not getattr(layer, "is_initialized", False) or layer.keys is None or layer.keys.dim() != 4:
                return None
            if layer.keys.shape[0] != 1 or type(layer) is not type(first):
                return None
        if type(first) is DynamicSlidingWindowLayer and not first.record_past:
            if capacity > first.sliding_window - 1:
                return None
            fresh = sliding_cls(first.sliding_window, [layer.cumulative_length for layer in column])
        elif type(first) is DynamicLayer:
            fresh = full_cls()
        else:
            return None
        fresh._setup([(layer.keys, layer.values) for layer in column], list(repeats), capacity)
        fresh._grow()
        new.append(fresh)
    caches[0].layers[:] = new
    return new
