"""The backend table (:mod:`ttpkit.policy.backends`): a new backend is one module plus one row.

The fake backend here is registered by adding a row and nothing else; ``ttpkit
sample`` and ``ttpkit score`` then run with it through the CLI.
"""

from __future__ import annotations

import dataclasses

import pytest
from _fake_policies import SeededPolicy
from typer.testing import CliRunner

from ttpkit.cli import app
from ttpkit.data import bundled_sample_dir
from ttpkit.errors import ConfigError
from ttpkit.policy import BACKENDS, Backend, PolicySpec, make_policy
from ttpkit.policy.backends import get_backend
from ttpkit.pool import existing_pool, pool_manifest, read_pool

runner = CliRunner()


def _fake_identity(model, base_url):
    return {"model": "seeded-words", "sha256": None}


FAKE = Backend(
    "fake",
    check=lambda model, base_url: None,
    build=lambda model, base_url, task, config, dtype: SeededPolicy(config.seed),
    identity=_fake_identity,
    takes_model=False,
    about="seeded random words, a test double",
)


@pytest.fixture
def fake_backend(monkeypatch):
    monkeypatch.setitem(BACKENDS, "fake", FAKE)
    return FAKE


def test_every_row_is_frozen_and_named_by_its_key():
    for name, row in BACKENDS.items():
        assert row.name == name
        with pytest.raises(dataclasses.FrozenInstanceError):
            row.name = "other"  # type: ignore[misc]
    assert {b.name for b in BACKENDS.values() if b.torch} == {"embedded", "gguf", "hf"}
    assert [b.name for b in BACKENDS.values() if not b.local] == ["openai"]


def test_an_unknown_backend_lists_the_known_ones():
    for build in (lambda: get_backend("tpu"), lambda: PolicySpec(backend="tpu"),
                  lambda: make_policy("tpu", None)):  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="unknown policy backend 'tpu'; known backends: embedded, gguf, hf, openai, vllm"):
            build()


def test_a_registered_backend_is_named_checked_and_built_from_its_row(fake_backend, sample):
    spec = PolicySpec.from_options("fake")
    assert spec.name == "fake" and spec.identity() == {"backend": "fake", "model": "seeded-words", "sha256": None}
    spec.check()
    assert spec.manifest_dtype() is None  # a local backend on the CPU in float32 records no dtype
    with pytest.raises(ConfigError, match="--int8 applies to the torch backends .*not to fake"):
        PolicySpec.from_options("fake", int8=True).check()
    with pytest.raises(ConfigError, match="--backend is fake"):
        PolicySpec.from_options("fake", model="m.gguf")
    policy = spec.build(sample.task, seed=3)
    assert isinstance(policy, SeededPolicy) and policy.seed == 3


def test_sample_and_score_run_through_the_cli_with_a_registered_backend(fake_backend, tmp_path):
    data, pool = str(bundled_sample_dir()), tmp_path / "pool.parquet"
    res = runner.invoke(app, ["sample", "--data", data, "--split", "dev", "--limit", "3", "--m", "4", "--backend", "fake",
                              "--seed", "7", "--out", str(pool)])
    assert res.exit_code == 0, res.output
    df = read_pool(pool)
    assert len(df) == 12 and df.groupby("query_id").size().eq(4).all()
    assert set(df["policy"]) == {"seeded"} and set(df["seed"]) == {7}
    policy = pool_manifest(existing_pool(pool))["policy"]
    assert (policy["name"], policy["backend"], policy["model"]) == ("fake", "fake", "seeded-words")  # the row's identity
    res = runner.invoke(app, ["score", "--rm", "mbr", "--pool", str(pool), "--data", data, "--split", "dev"])
    assert res.exit_code == 0, res.output
    scored = read_pool(pool)
    assert "score_mbr" in scored.columns and scored["score_mbr"].notna().all()
    assert scored[["query_id", "idx", "text"]].equals(df[["query_id", "idx", "text"]])  # scoring adds a column only
