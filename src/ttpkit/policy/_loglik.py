"""Teacher-forced log-likelihood of given continuations under a local policy, one prefill per prompt.

The ``implicit`` scorer (:mod:`ttpkit.reward.implicit`) needs log p(candidate |
prompt) under prompts the candidates were not sampled from (the same query
without the user's profile items, or with another user's). Each prompt is
prefilled once; its continuations then run as one padded batch over copies
of that prefix, and every continuation token's log-probability is read off the
untempered logits, as sampling records them (:class:`ttpkit.policy.Completion`).

A continuation is the candidate as the model would write it after the target
label: a space, the text, and, for a one-line task, the newline that ends it
(sampling counts the token that ended the line too). The text is tokenized
here, so a sampled candidate's sampling-time ``logp`` and this one agree when
its tokens round-trip through decode and encode, which the test suite checks
on the embedded model.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["continuation_ids", "loglik"]

ROWS_PER_PASS = 8  # continuations per forward pass: (8, L, 262k) float32 logits is ~300 MB at L = 36


def continuation_ids(tokenizer: Any, text: str, multiline: bool) -> list[int]:
    """Token ids of a candidate as written after the target label (leading space, ending newline for one-line tasks)."""
    ids = tokenizer(" " + text + ("" if multiline else "\n"), add_special_tokens=False).input_ids
    return list(ids) or [tokenizer.eos_token_id]


def loglik(policy: Any, prompts: Sequence[str], texts: Sequence[Sequence[str]]) -> list[list[tuple[float, int]]]:
    """``(sum of log-probabilities, tokens)`` of each text after its prompt, under ``policy``'s model.

    Args:
        policy: A :class:`~ttpkit.policy.local.LocalPolicy` (its model, tokenizer and task).
        prompts: Prompt texts.
        texts: For each prompt, the continuations to score.

    Returns:
        Per prompt, one ``(logp, n_tokens)`` per text, in order.
    """
    import torch

    model, tok, multiline = policy.model, policy.tokenizer, policy.prompt.task.multiline
    kw, dev = policy._cache_kw, model.device
    out = []
    with torch.inference_mode():
        for prompt, conts in zip(prompts, texts):
            ids = tok(prompt, return_tensors="pt").input_ids.to(dev)  # (1, T)
            first = model(input_ids=ids, use_cache=True, logits_to_keep=1, **{kw: _fresh_cache(model)})
            head = torch.log_softmax(first.logits[0, -1].float(), -1)  # (V,): the first token's distribution
            conts_ids = [continuation_ids(tok, t, multiline) for t in conts]
            row_out = []
            for start in range(0, len(conts_ids), ROWS_PER_PASS):
                chunk = conts_ids[start : start + ROWS_PER_PASS]
                row_out += _chunk(model, kw, ids, getattr(first, kw), head, chunk)
            out.append(row_out)
    return out


def _fresh_cache(model: Any) -> Any:
    from transformers import DynamicCache

    return DynamicCache(config=model.config)


def _chunk(model: Any, kw: str, ids: Any, prefix: Any, head: Any, chunk: list[list[int]]) -> list[tuple[float, int]]:
    """Score one padded batch of continuations over copies of the prefilled prompt."""
    import copy

    import torch

    rows, length, dev = len(chunk), max(len(c) for c in chunk), ids.device
    batch = torch.zeros(rows, length, dtype=torch.long)
    for i, c in enumerate(chunk):
        batch[i, : len(c)] = torch.tensor(c)
    cache = copy.deepcopy(prefix)
    cache.batch_repeat_interleave(rows)
    t = ids.shape[1]
    mask = torch.ones(rows, t + length, dtype=torch.long)
    for i, c in enumerate(chunk):
        mask[i, t + len(c) :] = 0  # right padding: never attended to by the real tokens before it
    pos = torch.arange(t, t + length).unsqueeze(0).expand(rows, -1)
    out = model(input_ids=batch.to(dev), attention_mask=mask.to(dev), position_ids=pos.to(dev), use_cache=True, **{kw: cache})
    logp = torch.log_softmax(out.logits.float(), -1)  # (rows, L, V): position j predicts token j + 1
    result = []
    for i, c in enumerate(chunk):
        total = float(head[c[0]])
        if len(c) > 1:
            total += float(logp[i, torch.arange(len(c) - 1), torch.tensor(c[1:])].sum())
        result.append((total, len(c)))
    return result
