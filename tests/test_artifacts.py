"""Issue 24, classes 2 and 4: artifacts are checked when they are read, and every check that needs no model runs first.

Class 2 (artifacts trusted without a check): a pool's manifest names its data
by content, label and score refuse another task or split, reward-model configs,
weights' statistics and model cards are typed at load. Class 4 (checks made too
late): model files, Hugging Face configs and server URLs are checked before a
model loads, and a server's malformed answer is one error naming the URL. The
CLI side of both is in the bad-input corpus (``art-*`` and ``late-*`` cases).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import EchoPolicy, FakeEncoder, FakeLM, items_of, live

from ttpkit.data import Dataset, bundled_sample_dir, get_task, load_split
from ttpkit.errors import ConfigError, DataError, TtpkitError
from ttpkit.manifest import check_format, split_digest
from ttpkit.policy import PolicySpec, make_policy
from ttpkit.policy.openai import OpenAIPolicy
from ttpkit.pool import pool_manifest, read_pool, write_pool
from ttpkit.reward import RMConfig
from ttpkit.reward.bundled import bundled_path, load_card
from ttpkit.reward.config import read_rm_config
from ttpkit.stages import dataset_for_pool, label_pool, sample_pool, sampling_manifest

TASK = get_task("git-commits")


def _manifest(data: Dataset) -> dict:
    return sampling_manifest(PolicySpec("srv", "openai", base_url="http://127.0.0.1:9/v1"), data, m=3, seed=0)


def _copy_split(to: Path, split: str = "dev", edit_gold: bool = False) -> Dataset:
    """The bundled sample's dev split copied under ``to`` as ``split`` (one reference changed if ``edit_gold``)."""
    to.mkdir(parents=True, exist_ok=True)
    src = bundled_sample_dir()
    shutil.copy(src / "dev_questions.json.gz", to / f"{split}_questions.json.gz")
    if edit_gold:
        import gzip

        outputs = json.loads(gzip.decompress((src / "dev_outputs.json.gz").read_bytes()))
        outputs["golds"][0]["output"] += " (edited)"
        (to / f"{split}_outputs.json").write_text(json.dumps(outputs))
    else:
        shutil.copy(src / "dev_outputs.json.gz", to / f"{split}_outputs.json.gz")
    return load_split(to, split)


# -- class 2: pools and their data -----------------------------------------------------------------------------
def test_a_pool_names_its_data_by_content_and_resumes_only_on_the_same_split(tmp_path, sample):
    out = tmp_path / "p.parquet"
    sample_pool(sample.queries[:2], out, 3, EchoPolicy(), manifest=_manifest(sample))
    got = pool_manifest(read_pool(out))
    assert got["data_dir"] == str(sample.path) and got["data_sha256"] == split_digest(sample.path, "dev")
    moved = _copy_split(tmp_path / "moved")  # the same bytes elsewhere: the path is informational
    policy = EchoPolicy()
    sample_pool(moved.queries[:3], out, 3, policy, manifest=_manifest(moved))
    assert policy.calls == 1 and pool_manifest(read_pool(out))["data_dir"] == str(sample.path)
    edited = _copy_split(tmp_path / "edited", edit_gold=True)
    with pytest.raises(ConfigError, match=f"data_sha256='{got['data_sha256']}'.*data_sha256='[0-9a-f]{{64}}'") as e:
        sample_pool(edited.queries[:4], out, 3, policy, manifest=_manifest(edited))
    assert "--force-new" in str(e.value) and policy.calls == 1


@pytest.mark.parametrize("name", ["p.parquet", "pool-dir"])
def test_a_pool_from_before_the_digest_resumes_and_adopts_it(tmp_path, sample, name):
    out, full = tmp_path / name, _manifest(sample)
    old = {k: v for k, v in full.items() if k not in ("data_dir", "data_sha256")}
    sample_pool(sample.queries[:2], out, 3, EchoPolicy(), manifest=old)
    assert "data_sha256" not in pool_manifest(read_pool(out))
    sample_pool(sample.queries[:2], out, 3, EchoPolicy(), manifest=full)  # nothing left to sample: it adopts the digest
    now = pool_manifest(read_pool(out))
    assert now["data_sha256"] == full["data_sha256"] and now["created"] == old["created"] and len(read_pool(out)) == 6


def test_label_and_score_refuse_another_split_or_task_and_warn_on_changed_data(tmp_path, sample, caplog):
    out = tmp_path / "p.parquet"
    sample_pool(sample.queries[:2], out, 3, EchoPolicy(), manifest=_manifest(sample))
    before = out.read_bytes()
    with pytest.raises(ConfigError, match="split 'dev', not 'train'; pass --split dev"):
        label_pool(out, _copy_split(tmp_path / "two", split="train"))
    mine = Dataset(dataclasses.replace(sample.task, name="mine"), sample.queries, sample.path, "dev")
    with pytest.raises(ConfigError, match="task 'git-commits'.*is task 'mine'"):
        label_pool(out, mine)
    assert out.read_bytes() == before  # nothing written
    for split in ("train", None):  # given, or detected (the recorded split first; only train holds the queries here)
        with pytest.raises(ConfigError, match="pass --split dev"):
            dataset_for_pool(tmp_path / "two", read_pool(out), split, where=out)
    with caplog.at_level(logging.WARNING, logger="ttpkit.pool._data"):
        labelled = label_pool(out, _copy_split(tmp_path / "edited", edit_gold=True))
    assert "not the data it was sampled from" in caplog.text and "rougeL" in labelled.columns


# -- class 2: reward models and cards --------------------------------------------------------------------------
def _rm_copy(tmp_path: Path, edit=None, card=None) -> Path:
    """The bundled git-commits user-pairwise model copied, its config.json changed by ``edit`` and card.json by ``card``."""
    d = tmp_path / "rm"
    shutil.copytree(bundled_path("git-commits", "user-prob"), d)
    if edit is not None:
        meta = json.loads((d / "config.json").read_text())
        (d / "config.json").write_text(json.dumps(edit(meta)))
    if card is not None:
        raw = json.loads((d / "card.json").read_text())
        (d / "card.json").write_text(json.dumps(card(raw)))
    return d


@pytest.mark.parametrize("edit, match", [
    (lambda m: {**m, "features": 5}, "'features' must be a list of feature names, got 5"),
    (lambda m: {**m, "features": [*m["features"][:-1], 7]}, "'features' must be a list"),
    (lambda m: {**m, "config": {**m["config"], "hidden": 3_000_000}}, r"hidden=3000000 makes a network of 9,000,0[0-9]{2},[0-9]{3},[0-9]{3} weights \(36,000\.[0-9] GB\); at most 100,000,000"),
    (lambda m: {**m, "config": {**m["config"], "hidden": "32"}}, "config: hidden must be an integer, got '32'"),
    (lambda m: {**m, "config": {**m["config"], "beta": True}}, "beta must be a number"),
    (lambda m: {**m, "format": "1"}, "format is malformed"),
    (lambda m: {**m, "format": 0}, "format is malformed"),
    (lambda m: {**m, "tasks": [1]}, "'tasks' must be a list of task names"),
])
def test_a_malformed_rm_config_is_one_line_naming_the_file_and_key(tmp_path, edit, match):
    d = _rm_copy(tmp_path, edit)
    with pytest.raises(DataError, match=match) as e:
        read_rm_config(d)
    assert str(d / "config.json") in str(e.value) and "upgrade" not in str(e.value)


def test_weights_and_their_record_are_checked_before_they_are_believed(tmp_path):
    from safetensors.numpy import load_file, save_file

    from ttpkit.reward.models import RewardModel

    with pytest.raises(ConfigError, match="at most 100,000,000"):  # refused before anything is allocated
        RMConfig(hidden=3_000_000)
    d = _rm_copy(tmp_path, lambda m: {**m, "weights_sha256": None})
    with pytest.raises(DataError, match="weights_sha256 is malformed") as e:
        RewardModel.load(d)
    assert "interrupted" not in str(e.value)
    meta = json.loads((bundled_path("git-commits", "user-prob") / "config.json").read_text())
    meta.pop("weights_sha256", None)  # the weights are edited below: their hash would refuse them first
    (d / "config.json").write_text(json.dumps(meta))
    weights = load_file(str(d / "model.safetensors"))
    for std, match in ((np.zeros_like(weights["feature_std"]), "0, negative or NaN"),
                       (np.full_like(weights["feature_std"], np.inf), "every feature constant")):
        save_file({**weights, "feature_std": std}, str(d / "model.safetensors"))
        with pytest.raises(DataError, match=match):
            RewardModel.load(d)
    save_file(weights, str(d / "model.safetensors"))
    (d / "training.json").mkdir()
    with pytest.raises(DataError, match="training.json: is a directory"):
        RewardModel.load(d)
    (d / "training.json").rmdir()
    (d / "training.json").write_text("not json")  # the training log is informational: unreadable is no history
    assert RewardModel.load(d).history_ == []


def test_a_model_card_is_typed_and_ignores_other_top_level_keys(tmp_path):
    d = _rm_copy(tmp_path, card=lambda c: {**c, "cv": {"folds": 5}})  # a key a newer card may add
    assert load_card(d).n == 16
    for i, (change, match) in enumerate((({"mu": "0.12"}, "card.mu must be a number, got '0.12'"), ({"n": 0}, "card.n must be >= 1"),
                          ({"n": 16.0}, "card.n must be an integer"), ({"rho_eff": 1.5}, "card.rho_eff must be <= 1.0"),
                          ({"score_std": 0.0}, "card.score_std must be > 0.0"), ({"c": float("nan")}, "card.c must be a finite"),
                          ({"task": 3}, "card.task must be a name"), ({"extra": 1}, "card.extra is not a field"))):
        d = _rm_copy(tmp_path / str(i), card=lambda c: {**c, "card": {**c["card"], **change}})
        with pytest.raises(DataError, match=match):
            load_card(d)
    d = _rm_copy(tmp_path / "dir")
    (d / "card.json").unlink()
    assert load_card(d) is None
    (d / "card.json").mkdir()
    with pytest.raises(DataError, match="card.json: is a directory"):
        load_card(d)


def test_ensemble_and_cross_encoder_records_are_typed(tmp_path):
    from ttpkit.reward.cross import CrossConfig
    from ttpkit.reward.ensemble import EnsembleRM

    meta = json.loads((bundled_path("git-commits", "user-prob") / "config.json").read_text())
    (tmp_path / "ens").mkdir()
    (tmp_path / "ens" / "ensemble.json").write_text(json.dumps({"members": 1, "config": meta["config"],
                                                                 "member_weights_sha256": [None]}))
    with pytest.raises(DataError, match=r"member_weights_sha256\[0\] is malformed"):
        EnsembleRM.load(tmp_path / "ens")
    for bad, match in (({"epochs": "2"}, "epochs must be an integer"), ({"max_length": 100_000}, "max_length must be <= 512"),
                       ({"lr": 0}, "lr must be > 0.0")):
        with pytest.raises(ConfigError, match=match):
            CrossConfig(**bad)
    for fmt in ("1", True, 1.0, -1):
        with pytest.raises(DataError, match="malformed"):
            check_format("x.json", {"format": fmt}, "pool")
    with pytest.raises(DataError, match="upgrade"):
        check_format("x.json", {"format": 2, "ttpkit": "9.0"}, "pool")


def test_serve_answers_a_damaged_card_with_a_422_naming_it(tmp_path, sample):
    from fastapi.testclient import TestClient

    from ttpkit.serve import create_service

    d = _rm_copy(tmp_path, card=lambda c: {**c, "card": {**c["card"], "tau": "0.05"}})
    app = create_service(FakeLM(), f"sqlite:///{tmp_path / 'p.db'}", rm=str(d), encoder=FakeEncoder(layers=2), admin_key="",
                         batch_window_ms=1.0)
    q = sample.queries[0]
    r = TestClient(app).post("/v1/personalize", json={"profile": items_of(q), "input": q.source, "n": 2})
    assert r.status_code == 422 and "card.tau must be a number" in r.json()["detail"]


# -- class 4: checks before any model loads --------------------------------------------------------------------
def test_model_files_and_server_urls_are_checked_before_anything_loads(tmp_path):
    (tmp_path / "zip.gguf").write_bytes(b"PK\x03\x04 not a gguf")
    (tmp_path / "hf").mkdir()
    for spec, match in ((PolicySpec("g", "gguf", model=str(tmp_path / "zip.gguf")), "not a GGUF file"),
                        (PolicySpec("g", "gguf", model=str(tmp_path / "hf")), "is a directory"),
                        (PolicySpec("h", "hf", model=str(tmp_path / "hf")), "no config.json"),
                        (PolicySpec("h", "hf", model=str(tmp_path / "zip.gguf")), "is a file")):
        with pytest.raises(ConfigError, match=match):
            spec.build(TASK)  # build checks first: transformers never sees the file
    for text, match in (("{", "not valid JSON"), ("[]", "not a model config"), ('{"vocab_size": 3}', "model_type")):
        (tmp_path / "hf" / "config.json").write_text(text)
        with pytest.raises(ConfigError, match=match):
            PolicySpec("h", "hf", model=str(tmp_path / "hf")).check()
    for url, match in (("127.0.0.1:8000/v1", "needs http:// or https://.*e.g. http://127.0.0.1:8000/v1"),
                       ("http://127.0.0.1:8000", "must end in /v1.*e.g. http://127.0.0.1:8000/v1"),
                       ("http://h/v1/completions", "e.g. http://h/v1$"), ("http:///v1", "and a host")):
        with pytest.raises(ConfigError, match=match):
            PolicySpec("o", "openai", base_url=url)
        with pytest.raises(ConfigError, match="--base-url"):
            make_policy("openai", TASK, base_url=url)
    assert PolicySpec("o", "openai", base_url="https://api.example.com/openai/v1/").base_url.endswith("/v1/")


def _answering(handler) -> OpenAIPolicy:
    return OpenAIPolicy("http://srv/v1", "m", TASK, client=httpx.Client(transport=httpx.MockTransport(handler)))


@pytest.mark.parametrize("answer, match", [
    (httpx.Response(200, text="<!DOCTYPE html><title>Sign in</title>", headers={"content-type": "text/html"}),
     "answered 200 with a body that is not JSON \\(text/html: '<!DOCTYPE html>"),
    (httpx.Response(200, json={"choices": "a b"}), "'choices' must be a list; got 'choices': \"a b\""),
    (httpx.Response(200, json={"object": "error"}), "got no 'choices'"),
    (httpx.Response(200, json=[]), "got a JSON list"),
    (httpx.Response(200, json={"choices": [{"index": 0, "text": None}, {"index": 1, "text": "b"}]}), r"choices\[0\].text is null"),
    (httpx.Response(200, json={"choices": [{"message": {"content": "x"}}] * 2}), r"choices\[0\] has no 'text'"),
    (httpx.Response(200, json={"choices": ["a", "b"]}), r"choices\[0\] is \"a\""),
    (httpx.Response(200, json={"choices": [{"text": "a"}] * 3}), "asked for 2 choices, got 3"),
    (httpx.Response(200, json={"choices": []}), "asked for 2 choices, got 0"),
])
def test_a_malformed_server_answer_is_one_error_naming_the_url(answer, match):
    with pytest.raises(TtpkitError, match=match) as e:
        _answering(lambda request: answer).complete("prompt", 2, 0)
    assert str(e.value).startswith("http://srv/v1/completions")


def test_a_server_that_ignores_n_then_answers_nothing_is_an_error_not_an_index_error():
    answers = iter([[{"text": "a"}], []])
    with pytest.raises(TtpkitError, match="asked for 1 choice, got 0"):
        _answering(lambda request: httpx.Response(200, json={"choices": next(answers)})).complete("prompt", 2, 0)


def test_sample_against_a_server_answering_html_exits_2_naming_the_url(tmp_path):
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse
    from typer.testing import CliRunner

    from ttpkit.cli import app as cli

    web = FastAPI()

    @web.post("/v1/completions")
    def completions() -> HTMLResponse:
        return HTMLResponse("<html><body>Please sign in</body></html>")

    with live(web) as root:
        res = CliRunner().invoke(cli, ["sample", "--data", str(bundled_sample_dir()), "--split", "dev", "--m", "2", "--limit", "1",
                                       "--backend", "openai", "--base-url", f"{root}/v1", "--out", str(tmp_path / "p.parquet")])
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    last = res.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and f"{root}/v1/completions answered 200 with a body that is not JSON" in last
    assert not (tmp_path / "p.parquet").exists()  # issue 31: the probe request refuses it before the pool is begun
