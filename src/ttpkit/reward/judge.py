"""An LLM judge as the reward model: a 1-5 rating of each candidate, from the user's past work.

This is how many teams personalize today: prompt an instruction model with the
user's retrieved profile items, the input and one candidate, and ask for a
rating. Two readings of the same forward pass:

- ``judge``: the argmax rating, an integer 1-5. Ratings tie heavily, so for many
  queries every candidate gets the same number and best-of-N selects at random:
  user-level collapse in its everyday form.
- ``judge-prob``: the rating distribution read from the probabilities of the
  tokens "1".."5" (renormalized over the five): its expected rating as the score
  and its standard deviation as ``std_judge-prob``, so the selection rules apply.

The prompt's prefix (instruction, the user's retrieved items, the input) is
prefilled once per query and its KV cache shared by all of the query's
candidates; only the candidate and the rating question are run per candidate,
and only the five rating tokens' logits are computed.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ttpkit.data import Query, TaskSpec
from ttpkit.pool import QUERY_ID, TEXT
from ttpkit.retrieval import retrieve
from ttpkit.reward.models import Scores

__all__ = ["JudgeRM"]

RATINGS = ("1", "2", "3", "4", "5")


class JudgeRM:
    """Rates candidates 1-5 with a local causal LM (a :class:`ttpkit.policy.local.LocalPolicy`'s model).

    Args:
        model: A ``transformers`` causal LM in eval mode.
        tokenizer: Its tokenizer.
        task: Task spec (labels of the user's past items).
        k: Retrieved profile items shown to the judge.
        batch: Candidates run together on one shared prefix.
        max_words: Words kept of each shown source text.
    """

    def __init__(self, model, tokenizer, task: TaskSpec, k: int = 6, batch: int = 16, max_words: int = 60) -> None:
        self.model, self.tokenizer, self.task, self.k, self.batch, self.max_words = model, tokenizer, task, k, batch, max_words
        ids = [tokenizer.encode(r, add_special_tokens=False) for r in RATINGS]
        ids = [i[-1:] if len(i) == 2 and tokenizer.decode(i[:1]).strip() == "" else i for i in ids]  # a leading-space piece
        if any(len(i) != 1 for i in ids):
            raise ValueError("the judge's tokenizer must have one token for each rating 1-5")
        self.rating_ids = [i[0] for i in ids]
        self.head, self.tail = "", ""
        if getattr(tokenizer, "chat_template", None):  # an instruction model: the question is a user turn
            marker = "\x00RATE\x00"
            text = tokenizer.apply_chat_template([{"role": "user", "content": marker}], tokenize=False, add_generation_prompt=True)
            self.head, _, self.tail = text.partition(marker)

    def _clip(self, text: str) -> str:
        words = text.split()
        return " ".join(words[: self.max_words]) + (" ..." if len(words) > self.max_words else "")

    def prefix(self, query: Query) -> str:
        """The shared part of the prompt: instruction, the user's past items, the input."""
        t = self.task
        past = "\n".join(f"- {t.source_label}: {self._clip(it.source)}\n  {t.target_label}: {' '.join(it.target.split())}"
                         for it in retrieve(query, self.k)) or "(none)"
        return self.head + (f"You rate how well a {t.target_label.lower()} fits a {t.source_label.lower()} and the style of its author.\n"
                f"Past work of this author:\n{past}\n\n{t.source_label}: {self._clip(query.source)}\n")

    def suffix(self, candidate: str) -> str:
        """The per-candidate part of the prompt, ending where the rating token goes."""
        question = f"Candidate: {' '.join(str(candidate).split())}\nRating from 1 (poor) to 5 (excellent), one digit:"
        return question + (self.tail if self.tail else " ")

    def rating_probs(self, query: Query, candidates: list[str]) -> np.ndarray:
        """(len(candidates), 5) probabilities of the ratings 1-5."""
        import torch
        from transformers import DynamicCache

        tok = self.tokenizer
        outer, inner = _cache_kw(self.model), _cache_kw(self.model.model)  # transformers 5 renamed past_key_values
        with torch.inference_mode():
            pre = tok(self.prefix(query), return_tensors="pt").input_ids  # (1, P)
            out0 = self.model(input_ids=pre, use_cache=True, logits_to_keep=1, **{outer: DynamicCache(config=self.model.config)})
            cache = getattr(out0, outer)
            head = self.model.get_output_embeddings().weight[self.rating_ids]  # (5, H): only these logits are needed
            out = []
            for start in range(0, len(candidates), self.batch):
                chunk = candidates[start : start + self.batch]
                ids = [tok.encode(self.suffix(c), add_special_tokens=False) for c in chunk]
                width = max(map(len, ids))
                x = torch.tensor([i + [0] * (width - len(i)) for i in ids])  # right-padded, (B, S)
                mask = torch.tensor([[1] * (pre.shape[1] + len(i)) + [0] * (width - len(i)) for i in ids])
                c = DynamicCache(config=self.model.config)
                for layer, (k, v) in enumerate(zip(*_kv(cache))):
                    c.update(k.expand(len(chunk), -1, -1, -1).contiguous(), v.expand(len(chunk), -1, -1, -1).contiguous(), layer)
                pos = torch.arange(pre.shape[1], pre.shape[1] + width).expand(len(chunk), -1)
                hidden = self.model.model(input_ids=x, attention_mask=mask, position_ids=pos, use_cache=True,
                                          **{inner: c}).last_hidden_state  # (B, S, H)
                last = hidden[torch.arange(len(chunk)), torch.tensor([len(i) - 1 for i in ids])]  # (B, H)
                logits = last @ head.T  # (B, 5)
                cap = getattr(self.model.config, "final_logit_softcapping", None)
                if cap:
                    logits = cap * torch.tanh(logits / cap)
                out.append(torch.softmax(logits.float(), dim=-1).numpy())
        return np.concatenate(out)

    def score(self, pool: pd.DataFrame, by_id: Mapping[str, Query], progress=None) -> tuple[Scores, np.ndarray]:
        """Expected rating with its std (``judge-prob``) and the argmax rating (``judge``) of every row."""
        probs = np.zeros((len(pool), 5))
        positions = pd.Series(np.arange(len(pool)), index=pool.index)
        for qid, rows in pool.groupby(QUERY_ID, sort=False):
            probs[positions[rows.index].to_numpy()] = self.rating_probs(by_id[qid], rows[TEXT].fillna("").tolist())
            if progress is not None:
                progress.advance()
        r = np.arange(1, 6)
        mean = probs @ r
        std = np.sqrt(np.maximum(probs @ (r * r) - mean * mean, 0.0))
        return Scores(mean=mean, std=std), probs.argmax(1) + 1.0


def _cache_kw(module) -> str:
    """The cache keyword of a model's forward: ``cache`` (transformers >= 5) or ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(module.forward).parameters else "past_key_values"


def _kv(cache):
    """(keys, values) per layer of a DynamicCache, across transformers versions."""
    if hasattr(cache, "layers"):
        return [layer.keys for layer in cache.layers], [layer.values for layer in cache.layers]
    return cache.key_cache, cache.value_cache
