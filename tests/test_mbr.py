from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ttpkit.reward.mbr import mbr_matrix, mbr_scores, within_draw_mbr_curve
from ttpkit.utility import rouge


def _pool():
    texts = {"a": ["fix the bug in diff", "fix diff bug", "update docs", "fix the diff bug now"],
             "b": ["rebase: keep going", "rebase: keep", "", "merge: stop"]}
    rows = [{"query_id": q, "user_id": "u", "idx": i, "text": t, "policy": "p", "seed": 0}
            for q, ts in texts.items() for i, t in enumerate(ts)]
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # row order must not matter


def test_mbr_is_the_mean_rouge_l_against_the_other_candidates():
    pool = _pool()
    got = mbr_scores(pool)
    for pos, (qid, text) in enumerate(zip(pool["query_id"], pool["text"])):
        others = [t for q, t, i in zip(pool["query_id"], pool["text"], pool.index) if q == qid and i != pool.index[pos]]
        direct = np.mean([rouge(text, o)["rougeL"] for o in others])  # rouge() is the labelled utility itself
        assert got[pos] == pytest.approx(direct, abs=1e-12), text
    sim = mbr_matrix(["a b c", "a b", ""])
    assert np.allclose(sim, sim.T) and sim[2, 2] == 0.0 and sim[0, 0] == 1.0


def test_consensus_wins_and_within_draw_mbr_equals_pool_mbr_at_n_equals_m():
    from ttpkit.scaling import curves

    pool = _pool().assign(rougeL=lambda d: (d["text"].str.contains("fix") | d["text"].str.contains("keep")).astype(float))
    pool["score_mbr"] = mbr_scores(pool)
    exact = curves(pool, ["mbr"], "rougeL", [1, 4])["mbr"].mean
    mc, half = within_draw_mbr_curve(pool, "rougeL", [1, 4], draws=200)
    assert mc[1] == pytest.approx(exact[1]) and half[1] == pytest.approx(0.0)  # N = M: one draw, the whole pool
    assert mc[0] == pytest.approx(exact[0], abs=4 * half[0] + 1e-9)  # N = 1: the pool mean either way
    assert exact[1] == 1.0  # the consensus answer is a good one in both queries
