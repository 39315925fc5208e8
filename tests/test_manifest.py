"""Run manifests: what a pool, RM and study recorded, resume checks, version checks, damaged caches."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd
import pytest
from conftest import EchoPolicy

from ttpkit.errors import ConfigError, DataError
from ttpkit.manifest import check_resume, diff, record_study, stamp
from ttpkit.policy import PolicySpec
from ttpkit.pool import pool_manifest, read_pool, write_pool
from ttpkit.stages import label_pool, sample_pool, sampling_manifest


def _manifest(sample, **policy):
    return sampling_manifest(PolicySpec("srv", "openai", base_url="http://127.0.0.1:9/v1", **policy), sample, m=3, seed=0)


def test_a_pool_records_its_run_and_keeps_it_through_labelling(tmp_path, sample):
    out = tmp_path / "p.parquet"
    manifest = _manifest(sample, temperature=0.7)
    sample_pool(sample.queries[:3], out, 3, EchoPolicy(), manifest=manifest)
    got = pool_manifest(read_pool(out))
    assert got["policy"]["temperature"] == 0.7 and got["seed"] == 0 and got["m"] == 3
    assert got["task"]["name"] == "git-commits" and got["split"] == "dev" and got["ttpkit"] and got["format"] == 1
    label_pool(out, sample)
    assert pool_manifest(read_pool(out)) == got


@pytest.mark.parametrize("change, key", [({"temperature": 0.5}, "policy.temperature"), ({"top_p": 0.5}, "policy.top_p"),
                                         ({"k": 0}, "policy.k"), ({"max_new_tokens": 8}, "policy.max_new_tokens")])
def test_resuming_with_other_settings_names_the_key(tmp_path, sample, change, key):
    out = tmp_path / "p.parquet"
    sample_pool(sample.queries[:2], out, 3, EchoPolicy(), manifest=_manifest(sample))
    policy = EchoPolicy()
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as e:
        sample_pool(sample.queries[:4], out, 3, policy, manifest=_manifest(sample, **change))
    assert "--force-new" in str(e.value) and policy.calls == 0
    sample_pool(sample.queries[:4], out, 3, policy, manifest=_manifest(sample, **change), force_new=True)
    assert policy.calls == 4 and pool_manifest(read_pool(out))["policy"][key.split(".")[1]] == list(change.values())[0]


def test_a_caller_without_force_new_names_its_own_way_to_start_over(tmp_path, sample):
    """A study's pools are sampled by ``bench``, which has no --force-new: its refusal says what bench's user can do."""
    out = tmp_path / "p.parquet"
    sample_pool(sample.queries[:2], out, 3, EchoPolicy(), manifest=_manifest(sample))
    with pytest.raises(ConfigError, match="policy.temperature") as e:
        sample_pool(sample.queries[:2], out, 3, EchoPolicy(), manifest=_manifest(sample, temperature=0.5),
                    start_over=f"delete {out} to sample it again, or give the study another --out")
    assert f"delete {out}" in str(e.value) and "--force-new" not in str(e.value)


def test_other_seed_or_m_is_refused_and_an_old_pool_adopts_the_manifest(tmp_path, sample):
    out = tmp_path / "p.parquet"
    sample_pool(sample.queries[:2], out, 3, EchoPolicy())  # no manifest: a pool from before manifests
    assert pool_manifest(read_pool(out)) is None
    sample_pool(sample.queries[:2], out, 3, EchoPolicy(), manifest=_manifest(sample))
    assert pool_manifest(read_pool(out))["seed"] == 0
    other = dict(_manifest(sample), seed=1)
    with pytest.raises(ConfigError, match="seed=0.*seed=1"):
        sample_pool(sample.queries[:2], out, 3, EchoPolicy(), manifest=other)
    with pytest.raises(ConfigError, match="m=3"):
        sample_pool(sample.queries[:2], out, 4, EchoPolicy(), manifest=dict(_manifest(sample), m=4))


def test_the_manifest_is_on_disk_before_the_first_candidate(tmp_path, sample):
    out = tmp_path / "p.parquet"
    with pytest.raises(KeyboardInterrupt):
        sample_pool(sample.queries[:3], out, 3, EchoPolicy(fail_after=0), manifest=_manifest(sample))
    with pytest.raises(ConfigError, match="seed"):
        sample_pool(sample.queries[:3], out, 3, EchoPolicy(), manifest=dict(_manifest(sample), seed=5))


def test_a_pool_of_a_newer_format_is_refused_with_both_versions(tmp_path):
    df = pd.DataFrame({"query_id": ["q"], "user_id": ["u"], "idx": [0], "text": ["t"], "policy": ["p"], "seed": [0]})
    write_pool(df, tmp_path / "p.parquet", {**stamp("pool", {}), "format": 7, "ttpkit": "3.0"})
    with pytest.raises(DataError, match=r"ttpkit 3\.0.*format 7.*reads format 1"):
        read_pool(tmp_path / "p.parquet")


def test_diff_walks_nested_keys_and_ignores_volatile_ones():
    a = stamp("pool", {"policy": {"t": 1, "k": 4}, "seed": 0})
    b = {**stamp("pool", {"policy": {"t": 2, "k": 4}, "seed": 0}), "created": "later", "ttpkit": "9"}
    assert diff(a, b) == [("policy.t", 1, 2)]
    check_resume("p", None, b)  # nothing recorded: nothing to compare


def test_study_manifest_written_and_a_newer_one_refused(tmp_path):
    m = record_study(tmp_path, {"study": {"name": "s"}})
    assert json.loads((tmp_path / "manifest.json").read_text())["study"] == {"name": "s"} and m["kind"] == "study"
    (tmp_path / "manifest.json").write_text(json.dumps({**m, "format": 2, "ttpkit": "5.0"}))
    with pytest.raises(DataError, match="5.0"):
        record_study(tmp_path, {"study": {}})


def test_duplicate_rows_in_a_pool_file_are_dropped_with_a_warning(tmp_path, caplog):
    df = pd.DataFrame({"query_id": ["q", "q", "q"], "user_id": "u", "idx": [0, 1, 0], "text": ["a", "b", "c"],
                       "policy": "p", "seed": 0})
    write_pool(df, tmp_path / "p.parquet")
    with caplog.at_level(logging.WARNING):
        got = read_pool(tmp_path / "p.parquet")
    assert got["text"].tolist() == ["a", "b"] and "dropped 1 duplicate" in caplog.text


def test_uneven_candidate_counts_are_said(caplog):
    from ttpkit.pool import candidates_per_query

    df = pd.DataFrame({"query_id": ["a", "a", "a", "b", "b"], "idx": [0, 1, 2, 0, 1]})
    with caplog.at_level(logging.WARNING):
        assert candidates_per_query(df) == 2
    assert "2 to 3 candidates" in caplog.text


def test_a_damaged_embedding_cache_is_moved_aside_and_rebuilt(tmp_path, caplog, monkeypatch):
    from ttpkit.reward.features import Encoder

    cache = tmp_path / "emb.safetensors"
    cache.write_bytes(b"\x00\x01 not safetensors")
    with caplog.at_level(logging.WARNING):
        enc = Encoder(cache_file=cache)
    assert enc.cache == {} and "damaged" in caplog.text
    assert (tmp_path / "emb.safetensors.corrupt").exists() and not cache.exists()
    enc.cache["k"] = np.ones(384, dtype=np.float32)
    enc.save_cache()
    assert Encoder(cache_file=cache).cache.keys() == {"k"}  # the rebuilt cache loads


def test_an_unwritable_embedding_cache_is_a_warning(tmp_path, caplog):
    from ttpkit.reward.features import Encoder

    (tmp_path / "file").write_text("x")
    enc = Encoder(cache_file=tmp_path / "file" / "emb.safetensors")
    enc.cache["k"] = np.ones(384, dtype=np.float32)
    with caplog.at_level(logging.WARNING):
        enc.save_cache()
    assert "not saved" in caplog.text


def test_prompts_are_clipped_with_a_warning(caplog):
    from ttpkit.data import ProfileItem, Query, get_task
    from ttpkit.policy import prompt

    prompt._reported.clear()
    q = Query(id="q1", user_id="u", input="x", source="a" * 400_000,
              profile=(ProfileItem(id="p", source="fix " * 50, target="word " * 20_000),))
    with caplog.at_level(logging.WARNING):
        text = prompt.PromptBuilder(get_task("git-commits"))(q)
    assert len(text) < 5_000
    assert "a query's input (q1) clipped" in caplog.text and "a profile item's target clipped" in caplog.text


def test_a_pool_sampled_under_the_old_embedded_name_still_resumes(tmp_path, sample):
    """Pools sampled before the rename carry policy name ``embedded``; the embedded policy is now ``gemma3-270m``."""
    from ttpkit.manifest import RENAMED_POLICIES
    from ttpkit.policy import EMBEDDED_NAME

    def manifest(name, backend="embedded"):
        m = _manifest(sample)
        return {**m, "policy": {**m["policy"], "name": name, "backend": backend}}

    assert RENAMED_POLICIES[("embedded", "embedded")] == EMBEDDED_NAME == PolicySpec.from_options().name
    out = tmp_path / "p.parquet"
    sample_pool(sample.queries[:2], out, 3, EchoPolicy(), manifest=manifest("embedded"))
    policy = EchoPolicy()
    sample_pool(sample.queries[:4], out, 3, policy, manifest=manifest(EMBEDDED_NAME))
    assert policy.calls == 2 and pool_manifest(read_pool(out))["policy"]["name"] == "embedded"  # the pool keeps its record
    with pytest.raises(ConfigError, match="policy.name"):  # the alias holds for the embedded backend only
        check_resume(out, manifest("embedded", "gguf"), manifest(EMBEDDED_NAME, "gguf"))
    with pytest.raises(ConfigError, match="policy.name"):
        check_resume(out, manifest("other"), manifest(EMBEDDED_NAME))


def test_policy_spec_from_options_names_the_embedded_policy_once():
    from ttpkit.policy import EMBEDDED_NAME
    from ttpkit.policy.local import LocalPolicy

    spec = PolicySpec.from_options()
    assert (spec.name, spec.backend, spec.k, spec.max_new_tokens) == (EMBEDDED_NAME, "embedded", 4, 32)
    srv = PolicySpec.from_options("openai", "m", "http://127.0.0.1:9/v1", temperature=0.5, top_p=0.9, max_new_tokens=8,
                                  k=0)
    assert srv == PolicySpec("openai", "openai", "m", 0.5, 0.9, 8, 0, False, "http://127.0.0.1:9/v1")
    assert PolicySpec.from_options("gguf", "x.gguf", name="smol", int8=True).name == "smol"
    import inspect

    assert f'"{EMBEDDED_NAME}"' in inspect.getsource(LocalPolicy.embedded)  # the pool's policy column says the same
    with pytest.raises(ConfigError, match="known backends"):
        PolicySpec.from_options("nope")
