from __future__ import annotations

from pathlib import Path

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
