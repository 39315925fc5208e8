from __future__ import annotations

import numpy as np
import pytest
from conftest import FakeEncoder
from test_reward import _synthetic

from ttpkit.reward.ensemble import EnsembleRM
from ttpkit.reward.models import RMConfig
from ttpkit.utility import within_query_corr


def test_members_differ_by_seed_and_the_ensemble_learns(tmp_path):
    pool, queries = _synthetic()
    enc = FakeEncoder()
    ens = EnsembleRM(RMConfig(variant="user-pairwise", max_epochs=150, patience=150, seed=3), members=3).fit(pool, queries, encoder=enc)
    assert [m.config.seed for m in ens.members_] == [3, 4, 5] and ens.name == "user-pairwise-ens3" and ens.probabilistic
    s = ens.score(pool, queries, encoder=enc)
    assert s.members.shape == (3, len(pool)) and np.allclose(s.mean, s.members.mean(0)) and (s.std > 0).any()
    assert not np.allclose(s.members[0], s.members[1])  # different seeds, different members
    assert within_query_corr(s.mean, pool["rougeL"].to_numpy(), pool["query_id"].to_numpy()) > 0.5
    back = EnsembleRM.load(ens.save(tmp_path / "ens"))
    assert np.allclose(back.score(pool, queries, encoder=enc).members, s.members)


class _Fixed:
    """A stand-in member whose scores are given."""

    def __init__(self, values):
        self.values = np.asarray(values, float)

    def score_features(self, x):
        from ttpkit.reward.models import Scores

        assert len(x) == len(self.values)  # one shared feature row per candidate
        return Scores(self.values, np.zeros_like(self.values))


def test_lower_bound_and_worst_case_avoid_what_members_disagree_on(monkeypatch):
    """Candidate 0 is loved by one member only (a hacked answer, utility 0); the mean ranks it first,
    mean - std and the worst case pick candidate 1 (utility 0.8), which every member likes."""
    import pandas as pd

    from ttpkit.scaling import curves
    from ttpkit.stages import score_pool

    import ttpkit.reward.ensemble as E

    built = []
    monkeypatch.setattr(E, "build_features", lambda pool, *a, **k: built.append(1) or np.zeros((len(pool), 3)))
    members = [[0.95, 0.35, 0.2], [0.08, 0.35, 0.2], [0.08, 0.35, 0.2]]
    ens = EnsembleRM(RMConfig(variant="user-mse"), members=3)
    ens.members_ = [_Fixed(v) for v in members]
    pool = pd.DataFrame({"query_id": "q", "user_id": "u", "idx": [0, 1, 2], "text": "", "policy": "p", "seed": 0,
                         "rougeL": [0.0, 0.8, 0.3]})

    class _Data:
        def by_id(self):
            return {}

    scored = score_pool(pool, ens, _Data(), encoder=FakeEncoder())
    scored["score_ens-min"] = ens.score(pool, {}).members.min(0)
    got = curves(scored.rename(columns=lambda c: c.replace("user-mse-ens3", "ens")), ["ens", "ens@lcb:1", "ens-min"], "rougeL", [3])
    assert got["ens"].mean[0] == pytest.approx(0.0)
    assert got["ens@lcb:1"].mean[0] == pytest.approx(0.8) and got["ens-min"].mean[0] == pytest.approx(0.8)
    assert len(built) == 2  # features built once per score() call, not once per member
