"""``implicit``: the policy's own likelihood as a reward, free of training (CoPe's implicit reward, arXiv 2506.12109).

A candidate y of query x for user u is scored by how much the user's profile
items raise its likelihood under the policy:

    implicit(y) = log p(y | prompt with u's items) - log p(y | the same prompt without items)

(the zero-shot prompt, ``k = 0``). Forms (:data:`FORMS`):

- ``implicit``: the contrast above, summed over tokens; ``implicit-tok`` per token;
- ``implicit-other``: the contrast against the same query shown with another
  user's items (the next user of the split, in order), per token;
- ``loglik``: log p(y | personalized prompt) alone; ``loglik-tok`` per token.

Every term is teacher-forced (:func:`ttpkit.policy._loglik.loglik`), so the
terms of a contrast are computed the same way. A pool sampled by ttpkit also
carries the sampling-time ``logp`` column, the path probability under the
sampling prompt (free); ``loglik`` re-computes it for any pool and text.

Cost: per query one prefill per prompt plus a forward pass over its
candidates, per term. The scorer needs the local policy (:attr:`needs_policy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from ttpkit.data import Query
from ttpkit.errors import ConfigError, DataError
from ttpkit.pool import QUERY_ID, TEXT
from ttpkit.reward.models import Scores

__all__ = ["FORMS", "ImplicitScorer", "likelihood_terms"]

FORMS = ("implicit", "implicit-tok", "implicit-other", "loglik", "loglik-tok")
_TERMS = {"implicit": ("user", "zero"), "implicit-tok": ("user", "zero"), "implicit-other": ("user", "other"),
          "loglik": ("user",), "loglik-tok": ("user",)}


def _other_user(queries: list[Query]) -> dict[str, Query]:
    """Each query shown with the profile of the next user in the split (cyclic), so the contrast keeps the input."""
    users = list(dict.fromkeys(q.user_id for q in queries))
    profile = {q.user_id: q.profile for q in queries}
    nxt = {u: users[(i + 1) % len(users)] for i, u in enumerate(users)}
    return {q.id: replace(q, profile=profile[nxt[q.user_id]]) for q in queries}


def likelihood_terms(pool: pd.DataFrame, by_id: Mapping[str, Query], policy: Any, terms: tuple[str, ...] = ("user", "zero"),
                     progress: Any = None) -> pd.DataFrame:
    """Per pool row, the teacher-forced log-likelihood of its text under each prompt of ``terms``, and its token count.

    Args:
        pool: Pool rows (``query_id``, ``text``).
        by_id: Query id to query (profiles).
        policy: A local policy (:class:`~ttpkit.policy.local.LocalPolicy`).
        terms: ``user`` (the personalized prompt), ``zero`` (no items), ``other`` (another user's items).
        progress: Optional callable advanced once per query.

    Returns:
        A frame aligned with ``pool``: ``ll_<term>`` per term and ``n_tok``.
    """
    from ttpkit.policy._loglik import loglik
    from ttpkit.policy.prompt import PromptBuilder

    missing = sorted(set(pool[QUERY_ID]) - set(by_id))
    if missing:
        raise DataError(f"implicit: {len(missing)} pool queries are not in the data split (first {missing[0]!r})")
    user = policy.prompt
    zero = PromptBuilder(user.task, k=0, max_shot_words=user.max_shot_words, max_query_words=user.max_query_words)
    other = _other_user(list(by_id.values())) if "other" in terms else {}
    builders = {"user": lambda q: user(q), "zero": lambda q: zero(q), "other": lambda q: user(other[q.id])}
    out = {f"ll_{t}": np.zeros(len(pool)) for t in terms}
    out["n_tok"] = np.zeros(len(pool))
    positions = pd.Series(np.arange(len(pool)), index=pool.index)
    for qid, rows in pool.groupby(QUERY_ID, sort=False):
        at = positions[rows.index].to_numpy()
        texts = rows[TEXT].fillna("").astype(str).tolist()
        for t in terms:
            (vals,) = loglik(policy, [builders[t](by_id[qid])], [texts])
            out[f"ll_{t}"][at] = [v for v, _ in vals]
            out["n_tok"][at] = [n for _, n in vals]
        if progress is not None:
            progress()
    return pd.DataFrame(out, index=pool.index)


def form_scores(terms: pd.DataFrame, form: str) -> np.ndarray:
    """One form's scores (:data:`FORMS`) from :func:`likelihood_terms`' columns."""
    if form not in FORMS:
        raise ConfigError(f"unknown implicit form {form!r}; forms: {', '.join(FORMS)}")
    n = terms["n_tok"].to_numpy().clip(min=1)
    user = terms["ll_user"].to_numpy()
    if form == "loglik":
        return user
    if form == "loglik-tok":
        return user / n
    if form == "implicit":
        return user - terms["ll_zero"].to_numpy()
    if form == "implicit-tok":
        return (user - terms["ll_zero"].to_numpy()) / n
    return (user - terms["ll_other"].to_numpy()) / n


@dataclass
class ImplicitScorer:
    """The policy's likelihood as a scorer (``ttpkit score --rm implicit[:<form>]``); column ``<form>``.

    Attributes:
        form: One of :data:`FORMS`.
        policy: The local policy whose likelihood is read (built by the caller: the embedded model by default).
    """

    form: str = "implicit"
    policy: Any = None
    probabilistic = False
    needs_policy = True

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ConfigError(f"unknown implicit form {self.form!r}; forms: {', '.join(FORMS)}")

    @property
    def name(self) -> str:
        """Column suffix: the form."""
        return self.form

    def score(self, pool: pd.DataFrame, by_id: Mapping[str, Query] | None = None, encoder: Any = None) -> Scores:
        """Score every row; needs the queries (``by_id``) and :attr:`policy`."""
        if by_id is None or self.policy is None:
            raise ConfigError("implicit: needs the data split's queries and a local policy")
        terms = likelihood_terms(pool, by_id, self.policy, _TERMS[self.form])
        mean = form_scores(terms, self.form)
        return Scores(mean, np.zeros(len(pool)))
