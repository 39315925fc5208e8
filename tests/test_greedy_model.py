"""Greedy decoding, the log-probability columns and the implicit reward on the real embedded Gemma 3 270M (a few queries)."""

from __future__ import annotations

import math

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def policy(sample):
    from ttpkit.policy import SamplingConfig
    from ttpkit.policy.local import LocalPolicy

    return LocalPolicy.embedded(sample.task, SamplingConfig(seed=0, max_new_tokens=16))


def _with(policy, **changes):
    import dataclasses

    policy.config = dataclasses.replace(policy.config, **changes)
    return policy


def test_the_greedy_row_is_deterministic_and_leaves_the_samples_as_they_were(policy, sample):
    qs = sample.queries[:3]
    plain = _with(policy, greedy=False, seed=0).sample(qs, 3)
    with_greedy = _with(policy, greedy=True, seed=0).sample(qs, 3)
    assert [[c.text for c in r] for r in plain] == [[c.text for c in r[:3]] for r in with_greedy]
    assert all(r[-1].greedy and r[-1].idx == 3 and not any(c.greedy for c in r[:3]) for r in with_greedy)
    alone = _with(policy, greedy=True, seed=99).sample(qs[1:2], 1)  # another seed, no batch-mates
    assert alone[0][-1].text == with_greedy[1][-1].text
    argmax = _with(policy, temperature=0.0, greedy=False).sample(qs[:1], 2)  # temperature 0: every row greedy
    assert [c.text for c in argmax[0]] == [with_greedy[0][-1].text] * 2
    _with(policy, temperature=1.0, greedy=False)


def test_sampling_logp_equals_a_plain_forward_pass_over_the_same_tokens(policy, sample, monkeypatch):
    import torch

    from ttpkit.policy import _loglik

    q = sample.queries[4]
    seen = []
    real = policy.tokenizer.decode
    monkeypatch.setattr(policy.tokenizer, "decode", lambda toks, **kw: (seen.append(list(toks)), real(toks, **kw))[1])
    (rows,) = _with(policy, greedy=True, seed=3).sample([q], 2)
    monkeypatch.setattr(policy.tokenizer, "decode", real)
    tokens = seen[-3:]  # the decode of each row's tokens, in row order
    prompt = policy.prompt(q)
    ids = policy.tokenizer(prompt, return_tensors="pt").input_ids
    for cand, toks in zip(rows, tokens):
        assert cand.n_tokens == len(toks) and math.isfinite(cand.logp) and cand.logp < 0
        with torch.inference_mode():
            logits = policy.model(input_ids=torch.cat([ids, torch.tensor([toks])], 1)).logits[0].float()
        lp = torch.log_softmax(logits, -1)
        plain = float(sum(lp[ids.shape[1] - 1 + i, t] for i, t in enumerate(toks)))
        assert cand.logp == pytest.approx(plain, abs=2e-3 * len(toks))
        monkeypatch.setattr(_loglik, "continuation_ids", lambda tok, text, ml, toks=toks: toks)
        ((forced, n),) = _loglik.loglik(policy, [prompt], [[cand.text]])[0:1][0]
        assert n == len(toks) and forced == pytest.approx(plain, abs=2e-3 * len(toks))
    _with(policy, greedy=False, seed=0)


def test_implicit_scores_contrast_the_personalized_prompt_with_the_zero_shot_one(policy, sample):
    import pandas as pd

    from ttpkit.reward.implicit import ImplicitScorer, form_scores, likelihood_terms

    q = sample.queries[2]
    pool = pd.DataFrame({"query_id": [q.id] * 2, "text": [q.reference, "hello world"]})
    terms = likelihood_terms(pool, sample.by_id(), policy, ("user", "zero"))
    assert (terms["ll_user"] < 0).all() and (terms["n_tok"] > 0).all()
    contrast = form_scores(terms, "implicit")
    assert list(contrast) == pytest.approx(list(terms["ll_user"] - terms["ll_zero"]))
    scores = ImplicitScorer("implicit-tok", policy).score(pool, sample.by_id())
    assert list(scores.mean) == pytest.approx(list(contrast / terms["n_tok"]))
