"""Temperature + top-p token draws over a large vocabulary, cheaply and exactly.

``transformers``' top-p warper sorts every row's full vocabulary at every step
(262k entries for Gemma 3). Here each row's nucleus is first looked for among its
512 most likely tokens, which holds it for almost every row of a trained model;
only flatter rows widen the search (16,384 tokens, then a full sort). The draw is
an inverse-CDF lookup on one uniform number per row, taken from the caller's
generator, so a seed fixes the samples.

Everything here runs in float32 on the logits' device (a bf16 model's logits
are upcast first); the uniform numbers come from the generator's device (the
CPU in :class:`~ttpkit.policy.local.LocalPolicy`) and move to the logits, so a
seed draws the same numbers whether the model runs on the CPU or on CUDA.
"""

from __future__ import annotations

from typing import Any

__all__ = ["draw_tokens", "greedy_tokens", "nucleus_threshold"]

# top-k widths tried, in order, before a full sort
TOPK_TIERS = (512, 16384)


def _threshold_from_sorted(top: Any, top_p: float) -> Any:
    """(B, 1) smallest probability of the nucleus from each row's descending probabilities."""
    cum = top.cumsum(-1)
    inside = (cum - top) < top_p  # the shortest prefix whose mass reaches top_p
    last = inside.sum(-1, keepdim=True) - 1
    return top.gather(1, last)


def nucleus_threshold(probs: Any, top_p: float) -> Any:
    """Return the (B, 1) smallest probability inside each row's top-p nucleus.

    Args:
        probs: (B, V) probabilities, rows summing to 1.
        top_p: Nucleus mass, in (0, 1].

    Every tier (top 512, top 16,384, full sort) gives the threshold a full sort
    would; a row moves to the next tier only when its current top holds less
    than ``top_p``.
    """
    vocab = probs.shape[-1]
    top, _ = probs.topk(min(TOPK_TIERS[0], vocab), dim=-1)  # sorted descending
    thr = _threshold_from_sorted(top, top_p)
    short = (top.sum(-1) < top_p).nonzero().squeeze(1)
    for k in (*TOPK_TIERS[1:], vocab):
        if not len(short):
            break
        k = min(k, vocab)
        wide, _ = probs[short].topk(k, dim=-1)
        thr[short] = _threshold_from_sorted(wide, top_p)
        short = short[wide.sum(-1) < top_p] if k < vocab else short[:0]
    return thr


def greedy_tokens(logits: Any, ban: Any | None = None) -> Any:
    """(B,) argmax of each row of (B, V) ``logits``, ``ban`` excluded: greedy decoding (temperature 0).

    Ties go to the lowest token id (``torch.argmax``), so it draws nothing and needs no generator.
    """
    if ban is not None:
        logits = logits.masked_fill(ban, float("-inf"))
    return logits.argmax(dim=-1)


def draw_tokens(logits: Any, generator: Any, temperature: float, top_p: float, ban: Any | None = None) -> Any:
    """Draw one token per row from ``softmax(logits / temperature)`` restricted to the top-p nucleus.

    Args:
        logits: (B, V) next-token logits.
        generator: ``torch.Generator`` the uniform draws come from (one per row),
            on any device.
        temperature: Softmax temperature (> 0).
        top_p: Nucleus mass; 1.0 samples from the full distribution.
        ban: Optional (V,) boolean mask of tokens that may not be drawn, on the logits' device.

    Returns:
        (B,) int64 token ids, on the logits' device.
    """
    import torch

    if temperature == 0:
        return greedy_tokens(logits, ban)
    logits = logits.float() / temperature
    if ban is not None:
        logits = logits.masked_fill(ban, float("-inf"))
    rows, vocab = logits.shape
    u = torch.rand(rows, 1, generator=generator, device=generator.device).to(logits.device)
    if top_p >= 1.0:
        cdf = torch.softmax(logits, dim=-1).cumsum(dim=-1)
        return torch.searchsorted(cdf, u * cdf[:, -1:]).clamp_max(vocab - 1).squeeze(1)
    # fast path: the nucleus lies inside the top k tokens of almost every row
    k = min(TOPK_TIERS[0], vocab)
    top, idx = logits.topk(k, dim=-1)  # descending
    p = (top - torch.logsumexp(logits, dim=-1, keepdim=True)).exp()
    cum = p.cumsum(-1)
    weights = p * ((cum - p) < top_p)  # the nucleus prefix
    cdf = weights.cumsum(-1)
    j = torch.searchsorted(cdf, u * cdf[:, -1:]).clamp_max(k - 1)
    out = idx.gather(1, j).squeeze(1)
    flat = (cum[:, -1] < top_p).nonzero().squeeze(1)
    if len(flat):  # nucleus wider than the top k: threshold the full distribution
        probs = torch.softmax(logits[flat], dim=-1)
        probs = probs * (probs >= nucleus_threshold(probs, top_p))
        cdf = probs.cumsum(dim=-1)
        out[flat] = torch.searchsorted(cdf, u[flat] * cdf[:, -1:]).clamp_max(vocab - 1).squeeze(1)
    return out
