"""The stage layer: each stage once, called by the CLI and the study alike (fakes for model and encoder)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EchoPolicy, FakeEncoder

from ttpkit import stages
from ttpkit.errors import DataError, TtpkitError
from ttpkit.pool import ROUGE1, ROUGEL, read_pool, score_col, std_col
from ttpkit.reward.models import RMConfig


def _labelled(tmp_path, sample, name="pool.parquet", queries=slice(0, 8)):
    path = tmp_path / name
    stages.sample_pool(sample.queries[queries], path, 4, EchoPolicy())
    return path, stages.label_pool(path, sample)


class Recorder:
    def __init__(self):
        self.events = []

    def start(self, label, total, done=0):
        self.events.append(("start", label, total, done))

    def advance(self, steps=1):
        self.events.append(("advance", steps))

    def note(self, message):
        self.events.append(("note", message))


def test_sample_reports_progress_and_builds_the_policy_only_when_needed(tmp_path, sample):
    built, rec = [], Recorder()

    def build():
        built.append(1)
        return EchoPolicy()

    path = tmp_path / "p.parquet"
    assert stages.sample_pool(sample.queries[:3], path, 2, build, rec, label="s") == 3
    assert built == [1] and rec.events[0] == ("start", "s M=2", 3, 0) and rec.events.count(("advance", 1)) == 3
    assert stages.sample_pool(sample.queries[:3], path, 2, build) == 0 and built == [1]  # nothing left: no model
    rec = Recorder()
    stages.sample_pool(sample.queries[:5], path, 2, build, rec)
    assert ("note", "resuming: 3 of 5 queries already done") in rec.events and rec.events[0][2:] == (5, 3)
    with pytest.raises(DataError, match="no queries"):
        stages.sample_pool([], path, 2, build)


class BatchRecorder(EchoPolicy):
    """An EchoPolicy that decodes two queries per call and records what each call saw."""

    batch_queries = 2

    def __init__(self, path, rec):
        super().__init__()
        self.path, self.rec, self.batches = path, rec, []

    def sample(self, queries, m):
        journaled = set(read_pool(self.path)["query_id"]) if self.path.exists() or self.batches else set()
        self.batches.append(([q.id for q in queries], m, journaled, self.rec.events.count(("advance", 1))))
        return super().sample(queries, m)


def test_sampling_cuts_queries_into_batches_once_and_journals_each_query(tmp_path, sample):
    rec, path = Recorder(), tmp_path / "p.parquet"
    queries = sample.queries[:5]
    policy = BatchRecorder(path, rec)
    assert stages.sample_pool(queries, path, 3, policy, rec) == 5
    ids = [q.id for q in queries]
    assert [b[0] for b in policy.batches] == [ids[0:2], ids[2:4], ids[4:5]] and {b[1] for b in policy.batches} == {3}
    for i, (_, _, journaled, advanced) in enumerate(policy.batches):  # before each batch: the earlier ones are on disk
        assert journaled == set(ids[: 2 * i]) and advanced == 2 * i  # and progress has advanced once per query
    assert rec.events.count(("advance", 1)) == 5
    # samples do not depend on the cut: one query at a time gives the same pool
    one = tmp_path / "one.parquet"
    stages.sample_pool(queries, one, 3, EchoPolicy())
    assert read_pool(path).equals(read_pool(one))


def test_label_adds_utilities_and_style_and_respects_overwrite(tmp_path, sample):
    path, pool = _labelled(tmp_path, sample)
    assert {ROUGE1, ROUGEL, score_col("style")} <= set(pool.columns) and pool[ROUGEL].between(0, 1).all()
    assert read_pool(path)[ROUGEL].equals(pool[ROUGEL])
    marked = pool.assign(rougeL=0.5)
    from ttpkit.pool import write_pool

    write_pool(marked, path)
    assert (stages.label_pool(path, sample, overwrite=False)[ROUGEL] == 0.5).all()  # kept
    assert not (stages.label_pool(path, sample)[ROUGEL] == 0.5).all()  # relabelled


def test_dataset_for_pool_finds_the_split_or_says_why(tmp_path, sample):
    from ttpkit.data import bundled_sample_dir

    _, pool = _labelled(tmp_path, sample)
    assert stages.dataset_for_pool(bundled_sample_dir(), pool).split == "dev"
    with pytest.raises(TtpkitError, match="no test_questions"):
        stages.dataset_for_pool(bundled_sample_dir(), pool, "test")
    with pytest.raises(DataError, match="no split holds"):
        stages.dataset_for_pool(bundled_sample_dir(), pool.assign(query_id="elsewhere"))


def test_train_and_score_write_the_schema_columns(tmp_path, sample):
    _, train = _labelled(tmp_path, sample, "train.parquet", slice(0, 8))
    _, test = _labelled(tmp_path, sample, "test.parquet", slice(8, 16))
    enc = FakeEncoder()
    cfg = RMConfig(variant="user-prob", max_epochs=30, seed=0)
    rm = stages.train_rm(cfg, train, sample, encoder=enc, out=tmp_path / "rm")
    assert (tmp_path / "rm" / "model.safetensors").exists()
    scored = stages.score_pool(test, rm, sample, encoder=enc)
    assert {score_col("user-prob"), std_col("user-prob")} <= set(scored.columns) and score_col("user-prob") not in test
    assert np.array_equal(scored[score_col("user-prob")], rm.score(test, sample.by_id(), encoder=enc).mean)
    named = stages.score_pool(test, rm, sample, name="mine", encoder=enc)
    assert score_col("mine") in named and std_col("mine") in named
    (tmp_path / "file").write_text("x")
    with pytest.raises(TtpkitError, match="not a directory"):  # checked before minutes of training
        stages.train_rm(cfg, train, sample, encoder=enc, out=tmp_path / "file")


def test_train_rm_trains_any_trainable_kind_and_load_rm_reads_it_back(tmp_path, sample):
    from ttpkit.reward import EnsembleRM, load_rm

    _, train = _labelled(tmp_path, sample, "train.parquet", slice(0, 8))
    enc = FakeEncoder()
    ens = stages.train_rm(EnsembleRM(RMConfig(variant="user-pairwise", max_epochs=5, seed=0), members=2), train, sample,
                          encoder=enc, out=tmp_path / "ens")
    back = load_rm(tmp_path / "ens")
    assert isinstance(back, EnsembleRM) and back.members == 2
    assert np.allclose(back.score(train, sample.by_id(), encoder=enc).mean, ens.score(train, sample.by_id(), encoder=enc).mean)


def test_default_encoder_lives_under_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("TTPKIT_CACHE_DIR", str(tmp_path))
    enc = stages.default_encoder(layers=2)
    assert enc.layers == 2 and str(enc.cache_file).startswith(str(tmp_path))
