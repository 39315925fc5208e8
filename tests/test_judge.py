"""The LLM judge with the real embedded model: the shared prefix gives what a full forward pass gives."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def judge(sample):
    from ttpkit.policy.local import embedded_gguf_path, load_gguf_model
    from ttpkit.reward.judge import JudgeRM

    model, tok = load_gguf_model(embedded_gguf_path())
    return JudgeRM(model, tok, sample.task, batch=2)  # batch 2 of 3 candidates: padding and a second chunk


def test_shared_prefix_ratings_equal_full_forward_passes(judge, sample):
    import torch

    q = sample.queries[0]
    cands = ["fix typo", "diff: skip paths outside $cwd with --cached", ""]
    probs = judge.rating_probs(q, cands)
    assert probs.shape == (3, 5) and np.allclose(probs.sum(1), 1.0)
    prefix = judge.tokenizer(judge.prefix(q), return_tensors="pt").input_ids
    for cand, row in zip(cands, probs):
        suffix = torch.tensor([judge.tokenizer.encode(judge.suffix(cand), add_special_tokens=False)])
        with torch.no_grad():
            logits = judge.model(input_ids=torch.cat([prefix, suffix], 1)).logits[0, -1, judge.rating_ids]
        assert np.abs(torch.softmax(logits.float(), -1).numpy() - row).max() < 1e-4


def test_scores_of_a_pool(judge, sample):
    qs = sample.queries[:2]
    pool = pd.DataFrame([{"query_id": q.id, "user_id": q.user_id, "idx": i, "text": t}
                         for q in qs for i, t in enumerate(["fix a bug", q.reference or "x"])])
    scores, argmax = judge.score(pool, sample.by_id())
    assert set(argmax) <= {1.0, 2.0, 3.0, 4.0, 5.0} and ((scores.mean >= 1) & (scores.mean <= 5)).all()
    assert (scores.std > 0).all()
    first = judge.rating_probs(qs[0], ["fix a bug", qs[0].reference])  # rows of query 0, scored alone
    assert np.allclose(scores.mean[:2], first @ np.arange(1, 6), atol=1e-6)
