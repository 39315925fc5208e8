"""One save and load for every RM kind: round trips score the same, torn saves are refused with one line."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import FakeEncoder
from test_reward import _synthetic

import ttpkit.reward._io as rio
from ttpkit.errors import ConfigError, DataError
from ttpkit.reward import (
    SCORER_FORMS,
    CrossConfig,
    CrossEncoderRM,
    EnsembleRM,
    MBRScorer,
    RegScorer,
    RewardModel,
    RMConfig,
    bundled_path,
    load_rm,
    mbr_scores,
    resolve_scorer,
)
from ttpkit.stages import score_pool


class _Killed(Exception):
    """What a SIGKILL at the fault point is, for a test in one process."""


def _kill_at_fault(monkeypatch):
    def stop(name):
        assert name == "rm-save"
        raise _Killed

    monkeypatch.setattr(rio, "fault_point", stop)


def _refused(path, match="interrupted"):
    with pytest.raises(DataError, match=match) as e:
        load_rm(path)
    assert "\n" not in str(e.value) and str(path) in str(e.value)  # one line naming the directory (or a file in it)


def _rm(seed=0, variant="user-mse"):
    pool, queries = _synthetic(n_users=6)
    return RewardModel(RMConfig(variant=variant, max_epochs=30, seed=seed)).fit(pool, queries, encoder=FakeEncoder()), pool, queries


def _ens(seed=0, members=2):
    pool, queries = _synthetic(n_users=6)
    cfg = RMConfig(variant="user-pairwise", max_epochs=30, seed=seed)
    return EnsembleRM(cfg, members=members).fit(pool, queries, encoder=FakeEncoder()), pool, queries


def test_every_saved_kind_loads_with_load_rm_and_scores_the_same(tmp_path):
    rm, pool, queries = _rm()
    back = load_rm(rm.save(tmp_path / "rm"))
    assert isinstance(back, RewardModel)
    assert np.array_equal(back.score(pool, queries, encoder=FakeEncoder()).mean, rm.score(pool, queries, encoder=FakeEncoder()).mean)
    ens, pool, queries = _ens()
    d = ens.save(tmp_path / "ens")
    meta = json.loads((d / "ensemble.json").read_text())
    assert meta["kind"] == "rm" and meta["members"] == 2 and len(meta["member_weights_sha256"]) == 2
    back = load_rm(d)
    assert isinstance(back, EnsembleRM) and back.members == 2 and back.name == "user-pairwise-ens2"
    assert np.array_equal(back.score(pool, queries, encoder=FakeEncoder()).members, ens.score(pool, queries, encoder=FakeEncoder()).members)


def test_the_bundled_models_still_load():
    for variant in ("user-pairwise", "user-prob"):
        rm = load_rm(bundled_path("git-commits", variant))
        assert isinstance(rm, RewardModel) and rm.config.variant == variant


def test_a_torn_rm_save_is_refused(tmp_path, monkeypatch):
    old, _, _ = _rm(seed=0)
    d = old.save(tmp_path / "rm")
    new, _, _ = _rm(seed=1)
    _kill_at_fault(monkeypatch)
    with pytest.raises(_Killed):
        new.save(d)  # killed with the new weights in place, the config not yet written
    _refused(d)
    with pytest.raises(DataError, match="interrupted"):
        RewardModel.load(d)


def test_a_torn_ensemble_save_is_refused(tmp_path, monkeypatch):
    old, _, _ = _ens(seed=0)
    d = old.save(tmp_path / "ens")
    fresh = tmp_path / "fresh"
    new, _, _ = _ens(seed=5)
    _kill_at_fault(monkeypatch)
    with pytest.raises(_Killed):
        new.save(d)  # over an older ensemble: member-0's weights new, the rest old
    _refused(d)
    with pytest.raises(_Killed):
        new.save(fresh)  # into a new directory: one member's weights, no record anywhere
    _refused(fresh)
    with pytest.raises(DataError, match="interrupted"):
        EnsembleRM.load(fresh)


def test_an_ensemble_whose_member_was_replaced_is_refused(tmp_path):
    ens, _, _ = _ens(seed=0)
    d = ens.save(tmp_path / "ens")
    for name in ("model.safetensors", "config.json"):  # a whole, valid member, but not the one recorded
        shutil.copy(d / "member-0" / name, d / "member-1" / name)
    _refused(d, match="member-1")


def test_ensembles_saved_in_the_old_layout_still_load(tmp_path):
    ens, pool, queries = _ens(seed=0)
    d = ens.save(tmp_path / "ens")
    cfg = json.loads((d / "ensemble.json").read_text())["config"]
    (d / "ensemble.json").write_text(json.dumps({"k": 2, "config": cfg}))  # what the code before the shared _io wrote
    back = load_rm(d)
    assert back.members == 2
    assert np.array_equal(back.score(pool, queries, encoder=FakeEncoder()).mean, ens.score(pool, queries, encoder=FakeEncoder()).mean)


def test_k_is_a_deprecated_name_of_members():
    with pytest.warns(DeprecationWarning, match="members"):
        ens = EnsembleRM(RMConfig(variant="user-mse"), k=3)
    assert ens.members == 3 and ens.name == "user-mse-ens3"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert EnsembleRM(RMConfig(variant="user-mse"), members=4).name == "user-mse-ens4"


def test_an_empty_directory_is_no_model(tmp_path):
    _refused(tmp_path, match="not a ttpkit")


@pytest.mark.slow
def test_a_torn_cross_encoder_save_is_refused_and_the_old_layout_loads(tmp_path, monkeypatch):
    rm = CrossEncoderRM(CrossConfig(max_length=32))
    rm._build()  # the pretrained encoder and a fresh head stand in for a fitted model
    d = rm.save(tmp_path / "cross")
    meta = json.loads((d / "config.json").read_text())
    assert meta["kind"] == "rm" and len(meta["weights_sha256"]) == 64 and meta["cross_encoder"]["max_length"] == 32
    assert isinstance(load_rm(d), CrossEncoderRM)
    legacy = tmp_path / "legacy"  # the layout before the shared _io: no manifest, no hash
    legacy.mkdir()
    shutil.copy(d / "model.safetensors", legacy / "model.safetensors")
    (legacy / "config.json").write_text(json.dumps({"cross_encoder": meta["cross_encoder"]}))
    assert load_rm(legacy).config == rm.config
    other = dict(meta, weights_sha256="0" * 64)
    (legacy / "config.json").write_text(json.dumps(other))  # a record naming other weights
    _refused(legacy)
    _kill_at_fault(monkeypatch)
    with pytest.raises(_Killed):
        rm.save(d)
    _refused(d)


class _Data:
    def by_id(self):
        return {}


def _pool():
    texts = {"a": ["fix the bug in diff", "fix diff bug", "update docs", "fix the diff bug now"],
             "b": ["rebase: keep going", "rebase: keep", "", "merge: stop"]}
    rows = [{"query_id": q, "user_id": "u", "idx": i, "text": t, "policy": "p", "seed": 0}
            for q, ts in texts.items() for i, t in enumerate(ts)]
    return pd.DataFrame(rows)


def _z(x):
    return (x - x.mean()) / x.std() if x.std() > 0 else np.zeros_like(x)


def test_mbr_and_reg_are_scorers_that_score_pool_takes():
    pool = _pool()
    scored = score_pool(pool, MBRScorer(), _Data())
    assert np.array_equal(scored["score_mbr"].to_numpy(), mbr_scores(pool)) and "std_mbr" not in scored
    scored["score_base"] = np.arange(len(pool), dtype=float)
    reg = score_pool(scored, RegScorer("base", 0.5), _Data())
    want = _z(scored["score_base"].to_numpy()) + 0.5 * _z(mbr_scores(pool))
    assert np.allclose(reg["score_reg"].to_numpy(), want, rtol=0, atol=1e-12)
    flat = score_pool(scored.assign(score_base=1.0), RegScorer("base", 0.0), _Data())
    assert (flat["score_reg"] == 0.0).all()  # a constant base standardizes to 0
    with pytest.raises(DataError, match="score_missing.*first"):
        score_pool(pool, RegScorer("missing", 1.0), _Data())


def test_resolve_scorer_reads_every_form(tmp_path):
    from ttpkit.reward.stack import StackedScorer

    assert isinstance(resolve_scorer("default", "git-commits"), StackedScorer)  # the stacked ranker over user-prob
    assert resolve_scorer("default:user-prob", "git-commits").config.variant == "user-prob"
    assert isinstance(resolve_scorer("mbr", "git-commits"), MBRScorer)
    reg = resolve_scorer("reg:user-pairwise:0.25", "git-commits")
    assert isinstance(reg, RegScorer) and (reg.base, reg.beta, reg.name) == ("user-pairwise", 0.25, "reg")
    rm, _, _ = _rm()
    assert isinstance(resolve_scorer(str(rm.save(tmp_path / "rm")), "git-commits"), RewardModel)
    for bad in ("reg", "reg:user-pairwise", "reg::1", "reg:user-pairwise:much", "reg:a:nan", "mbr2", str(tmp_path / "nowhere")):
        with pytest.raises(ConfigError, match="reg:<base>:<beta>") as e:
            resolve_scorer(bad, "git-commits")
        assert all(form in str(e.value) for form in SCORER_FORMS)
