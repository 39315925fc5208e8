"""The scorer registry (ttpkit.reward.base, ttpkit.reward._load): a new kind is one class and one row."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ttpkit.cli import app
from ttpkit.data import bundled_sample_dir
from ttpkit.errors import ConfigError
from ttpkit.pool import read_pool, write_pool
from ttpkit.reward import KINDS, SCORER_FORMS, EnsembleRM, MBRScorer, Needs, RegScorer, RewardModel, Scorer, ScorerKind, Scores
from ttpkit.reward import register_kind, resolve_scorer
from ttpkit.reward.cross import CrossEncoderRM

runner = CliRunner()


class LengthScorer:
    """A fake kind: a candidate's score is its length in words, times ``weight``; it needs nothing."""

    probabilistic = False
    needs = Needs()

    def __init__(self, weight: float) -> None:
        self.weight = weight

    @property
    def name(self) -> str:
        return "length"

    def score(self, pool, by_id, encoder=None) -> Scores:
        mean = self.weight * pool["text"].str.split().str.len().to_numpy(float)
        return Scores(mean=mean, std=np.zeros_like(mean))


def _length(text: str, task: str) -> LengthScorer | None:
    return LengthScorer(float(text.split(":")[1])) if text.startswith("length:") else None


@pytest.fixture
def length_kind():
    register_kind(ScorerKind("length", forms=("length:<weight>",), parse=_length))
    yield
    del KINDS["length"]


def test_every_built_in_kind_meets_the_interface_and_declares_what_it_needs():
    for scorer in (RewardModel(), EnsembleRM(), CrossEncoderRM(), MBRScorer(), RegScorer("user-pairwise", 0.5)):
        assert isinstance(scorer, Scorer) and isinstance(scorer.needs, Needs), type(scorer).__name__
    assert RewardModel().needs.encoder and RewardModel().needs.row_features and EnsembleRM().needs.encoder
    assert not CrossEncoderRM().needs.encoder and not MBRScorer().needs.encoder
    assert RegScorer("user-pairwise", 0.5).needs.columns == ("score_user-pairwise",)
    assert list(KINDS) == ["mbr", "reg", "implicit", "stacked", "ensemble", "cross", "feature"]


def test_a_registered_kind_scores_a_pool_through_the_cli(tmp_path, sample, length_kind):
    rows = [{"query_id": q.id, "user_id": q.user_id, "idx": i, "text": " ".join(["word"] * (i + 1)), "policy": "fake", "seed": 0}
            for q in sample.queries[:3] for i in range(4)]
    pool = tmp_path / "pool.parquet"
    write_pool(pd.DataFrame(rows), pool)
    res = runner.invoke(app, ["score", "--rm", "length:0.5", "--pool", str(pool), "--data", str(bundled_sample_dir())])
    assert res.exit_code == 0, res.output
    out = read_pool(pool)
    assert out["score_length"].tolist() == [0.5 * (i + 1) for _ in range(3) for i in range(4)]
    assert "std_length" not in out.columns  # not probabilistic


def test_an_unknown_name_lists_every_registered_form(length_kind):
    with pytest.raises(ConfigError) as e:
        resolve_scorer("nothing-of-the-kind", "git-commits")
    assert all(form in str(e.value) for form in (*SCORER_FORMS, "length:<weight>"))
    with pytest.raises(ConfigError, match="registered already"):
        register_kind(ScorerKind("length"))
    assert json.dumps(list(KINDS)).startswith('["length"')  # asked first
