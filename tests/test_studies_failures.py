"""The failures study runner on a tiny study made from the bundled sample (fake policy and encoder)."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from conftest import EchoPolicy, FakeEncoder

from ttpkit.data import bundled_sample_dir
from ttpkit.errors import ConfigError
from ttpkit.studies._measure import KAPPAS, TAUS
from ttpkit.studies.failures import METHODS, FailureStudy, run_failures
from ttpkit.stages import label_pool, sample_pool


def _study(tmp_path, sample):
    pools = {}
    for name, part in {"train": slice(0, 8), "dev": slice(8, 12), "test": slice(12, 16)}.items():
        path = tmp_path / f"{name}.parquet"
        sample_pool(sample.queries[part], path, 4, EchoPolicy())
        label_pool(path, sample)
        pools[name] = {"path": str(path), "data": "sample", "split": "dev"}
    raw = {"kind": "failures", "name": "tiny", "members": 2, "data": {"sample": str(bundled_sample_dir())}, "pools": pools,
           "regimes": [{"name": "ordinary", "train": "train", "dev": "dev", "test": "test", "cross": True},
                       {"name": "cold-0", "train": "train", "dev": "dev", "test": "test", "profile_items": 0, "cross": True}]}
    return FailureStudy.from_dict(raw, tmp_path)


def test_every_regime_gets_every_method_tuned_on_dev(tmp_path, sample):
    study = _study(tmp_path, sample)
    table = run_failures(study, tmp_path / "out", encoder=FakeEncoder())
    assert set(table["regime"]) == {"ordinary", "cold-0"} and len(table) == 2 * 20
    assert {"global-mse", "user-mse", "user-pairwise", "user-prob"} <= set(table["method"])
    by = table.set_index(["regime", "method"])
    assert by.loc[("ordinary", "oracle"), "share"] == pytest.approx(1.0) and by.loc[("ordinary", "random"), "share"] == pytest.approx(0.0, abs=1e-12)
    tuned = json.loads((tmp_path / "out" / "tuning.json").read_text())
    assert tuned["ordinary"]["kappa"] in KAPPAS and tuned["ordinary"]["tau"] in TAUS
    assert tuned["ordinary"] == tuned["cold-0"]  # tuned on the same dev pool, whatever the test condition
    paired = pd.read_csv(tmp_path / "out" / "paired.csv")
    fixes = {m.label.format(ens="ens2") for m in METHODS if m.base == "user-pairwise"}
    assert set(paired["method"]) == fixes and (paired["lo"] <= paired["diff"] + 1e-12).all()
    assert (tmp_path / "out" / "curves_cold-0.png").exists() and (tmp_path / "out" / "reliability.png").exists()
    law = pd.read_csv(tmp_path / "out" / "law_forms.csv")  # every form against every curve, at the M_fit the pools allow
    assert set(law["regime"]) == {"ordinary", "cold-0"} and set(law["m_fit"]) == {4}
    assert {"r2_bend", "err_mixture", "peak_tail", "falls_bend", "obs_drop_lo"} <= set(law.columns)
    assert (tmp_path / "out" / "law_ordinary.png").exists() and "## Summary" in (tmp_path / "out" / "law_forms.md").read_text()
    cal = pd.read_csv(tmp_path / "out" / "calibration.csv")
    assert set(cal["model"]) >= {"user-prob", "ens2", "cross-prob"}  # the ensemble is labelled by its size and cal["coverage90"].between(0, 1).all()
    # cold start changes what the profile features see, so the personalized scores move; mbr does not use the profile
    assert by.loc[("cold-0", "mbr"), "N=4"] == pytest.approx(by.loc[("ordinary", "mbr"), "N=4"])
    assert by.loc[("cold-0", "style"), "N=4"] == pytest.approx(by.loc[("cold-0", "random"), "N=4"])  # no past targets
    again = run_failures(study, tmp_path / "out", encoder=FakeEncoder())  # from the cache
    assert again.drop(columns=["ci_half"]).equals(table.drop(columns=["ci_half"]))


def test_a_pool_that_is_not_from_its_split_is_refused_before_anything_trains(tmp_path, sample):
    from ttpkit.errors import DataError
    from ttpkit.pool import read_pool, write_pool

    study = _study(tmp_path, sample)
    test = read_pool(tmp_path / "test.parquet")
    write_pool(test.assign(query_id=test["query_id"].where(test["query_id"] != test["query_id"].iloc[0], "not-a-query")),
               tmp_path / "test.parquet")
    with pytest.raises(DataError, match=r"study pool 'test' .* 1 of its queries are not in .* split 'dev' \(first 'not-a-query'\)"):
        run_failures(study, tmp_path / "out", encoder=FakeEncoder())
    assert not list((tmp_path / "out" / "cache").glob("rm-*"))  # refused before any RM trained


def test_bad_failure_studies_are_named(tmp_path):
    base = {"data": {"d": str(tmp_path)}, "pools": {"p": {"path": "x.parquet", "data": "d", "split": "test"}}}
    with pytest.raises(ConfigError, match=r"regimes\[0\].dev: 'q' is not one of pools"):
        FailureStudy.from_dict({**base, "name": "x", "regimes": [{"name": "r", "train": "p", "dev": "q", "test": "p"}]}, tmp_path)
    with pytest.raises(ConfigError, match=r"pools.p.data: 'e' is not one of data"):
        FailureStudy.from_dict({**base, "name": "x", "pools": {"p": {"path": "x", "data": "e", "split": "t"}}}, tmp_path)


def test_the_old_key_ensemble_reads_as_members(tmp_path, caplog):
    raw = {"name": "x", "ensemble": 3, "data": {"d": str(tmp_path)}, "pools": {}, "regimes": []}
    study = FailureStudy.from_dict(raw, tmp_path)
    assert study.members == 3 and study.ensemble_label == "ens3" and "deprecated" in caplog.text


def test_methods_table_is_one_row_per_label_with_known_bases():
    labels = [m.label for m in METHODS]
    assert len(labels) == len(set(labels)) and {m.base for m in METHODS} - {None} <= set(labels)
    assert all(m.needs in (None, "cross", "judge") for m in METHODS)
    resolved = METHODS[7].resolve({"kappa": 0.5}, "ens5")
    assert (resolved.label, resolved.scorer) == ("user-prob@lcb", "user-prob@lcb:0.5")


@pytest.mark.parametrize("raw, needle", [
    ({"name": "x", "pools": [1]}, "pools: expected a mapping"),
    ({"name": "x", "regimes": [{"name": "r", "train": "p", "dev": "p", "test": "p", "colour": 1}]}, "regimes[0]: unknown keys ['colour']"),
    ({"name": "x", "regimes": [{"name": "r", "train": "p", "dev": "p", "test": "p", "profile_items": "two"}]}, "regimes[0].profile_items"),
    ({"name": "x", "members": 0}, "members must be >= 1"),
])
def test_a_failure_study_is_checked_with_key_paths(tmp_path, raw, needle):
    with pytest.raises(ConfigError) as e:
        FailureStudy.from_dict({"data": {}, **raw}, tmp_path)
    assert needle in str(e.value)


def test_the_forecasting_protocol_runs_on_a_regimes_moving_curves_only_when_asked():
    from ttpkit.scaling import law_table, synthetic_pool
    from ttpkit.stages import NullProgress
    from ttpkit.studies.failures import RegimeSpec, _forecast

    test = synthetic_pool("hack2", queries=40, m=16, seed=1).assign(score_flat=0.0)
    law, _ = law_table(test, ["rm", "flat"], m_fits=(4, 8, 16))
    law.insert(0, "method", law["scorer"])
    spec = RegimeSpec(name="r", train="a", dev="b", test="c")
    table = _forecast(FailureStudy(name="s", pools={}, regimes=(), forecast_boot=2), spec, test, law, NullProgress())
    assert set(table["scorer"]) == {"rm"}  # the flat curve does not move; only M_fit=8 is forecast (16 = M cannot be)
    assert list(table["m_fit"]) == [8] and set(table["pool"]) == {"r"} and set(table["source"]) == {"s"}
    assert table["err_floor"].notna().all() and table["err_dist"].notna().all()
    assert _forecast(FailureStudy(name="s", pools={}, regimes=()), spec, test, law, NullProgress()).empty
    with pytest.raises(ConfigError, match="forecast_boot"):
        FailureStudy(name="s", pools={}, regimes=(), forecast_boot=-1)
