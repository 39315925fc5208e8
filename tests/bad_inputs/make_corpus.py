"""Rebuild the bad-input files under tests/bad_inputs/files (deterministic; run from the repository root).

    python tests/bad_inputs/make_corpus.py

Every file is small and made from the bundled git-commits sample and the bundled
reward model, then damaged in one way. tests/bad_inputs/cases.yaml says which
command each one is given to; tests/test_bad_inputs.py runs them.
"""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from ttpkit.data import bundled_sample_dir, load_split, read_json
from ttpkit.manifest import stamp
from ttpkit.policy import PolicySpec
from ttpkit.pool import MANIFEST_KEY, POOL_COLUMNS, write_pool
from ttpkit.reward.bundled import bundled_path
from ttpkit.stages import sampling_manifest

FILES = Path(__file__).parent / "files"


def _json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def data_dirs(questions: list[dict], golds: list[dict]) -> None:
    """LaMP-layout data directories, each broken in one way (split ``dev``)."""

    def make(name: str, q: object = questions, o: object = None, raw_q: bytes | None = None) -> None:
        d = FILES / name
        d.mkdir(parents=True, exist_ok=True)
        if raw_q is not None:
            (d / "dev_questions.json").write_bytes(raw_q)
        elif q is not None:
            _json(d / "dev_questions.json", q)
        _json(d / "dev_outputs.json", o if o is not None else {"task": "git-commits", "golds": golds})

    q0 = questions[0]
    make("data-no-questions", q=None)
    make("data-questions-garbage", raw_q=b"this is not json {")
    make("data-questions-object", q={"queries": questions})
    make("data-questions-empty", q=[])
    make("data-record-no-input", q=[{k: v for k, v in q0.items() if k != "input"}])
    make("data-record-no-profile", q=[{k: v for k, v in q0.items() if k != "profile"}])
    make("data-profile-not-list", q=[{**q0, "profile": "my commits"}])
    make("data-profile-item-no-title", q=[{**q0, "profile": [{"id": "p1", "text": "fix a bug"}]}])
    make("data-duplicate-query-id", q=[q0, q0])
    make("data-id-null", q=[{**q0, "id": None}])
    make("data-user-id-list", q=[{**q0, "user_id": ["a"]}])
    make("data-bad-utf8", raw_q=json.dumps(questions).encode()[:200] + b"\xff\xfe" + json.dumps(questions).encode()[200:])
    make("data-duplicate-gold", o={"task": "git-commits", "golds": [golds[0], {**golds[0], "output": "another"}, *golds[1:]]})
    make("data-empty-gold", o={"task": "git-commits", "golds": [{**golds[0], "output": "  "}, *golds[1:]]})
    make("data-golds-not-list", o={"task": "git-commits", "golds": {"a": "b"}})
    make("data-gold-no-output", o={"task": "git-commits", "golds": [{"id": golds[0]["id"]}]})
    make("data-unknown-task", o={"golds": golds})
    d = FILES / "data-gzip-corrupt"
    d.mkdir(parents=True, exist_ok=True)
    (d / "dev_questions.json.gz").write_bytes(gzip.compress(json.dumps(questions).encode())[:300])
    (FILES / "data-is-a-file").write_text("not a directory\n")


def task_files() -> None:
    good = {"name": "mine", "source_field": "text", "target_field": "title", "source_label": "Message", "target_label": "Title"}
    (FILES / "task-bad-yaml.yaml").write_text("name: mine\nsource_field: [text\n")
    (FILES / "task-missing-keys.yaml").write_text("name: mine\nsource_field: text\n")
    (FILES / "task-multiline-string.yaml").write_text(json.dumps({**good, "multiline": "yes"}))
    (FILES / "task-unknown-key.yaml").write_text(json.dumps({**good, "colour": "red"}))
    (FILES / "task-is-list.yaml").write_text("- name\n- source_field\n")


def pools(questions: list[dict]) -> None:
    """A small labelled pool over four bundled queries, and damaged copies of it."""
    rng = np.random.default_rng(0)
    rows = []
    for q in questions[:4]:
        for i in range(4):
            rows.append({"query_id": q["id"], "user_id": str(q["user_id"]), "idx": i, "text": f"fix thing {i}",
                         "policy": "fake", "seed": 0, "rouge1": float(rng.uniform(0, 1)), "rougeL": float(rng.uniform(0, 1)),
                         "rougeLsum": float(rng.uniform(0, 1)), "score_style": float(rng.normal())})
    good = pd.DataFrame(rows)
    write_pool(good, FILES / "pool-good.parquet")
    write_pool(good.iloc[:0], FILES / "pool-empty.parquet")
    write_pool(good[list(POOL_COLUMNS)], FILES / "pool-unlabelled.parquet")
    write_pool(good.drop(columns=["text"]), FILES / "pool-no-text.parquet")
    write_pool(good.assign(rougeL="high"), FILES / "pool-utility-text.parquet")
    write_pool(good.assign(rougeL=np.where(good.idx == 1, np.nan, good.rougeL)), FILES / "pool-utility-nan.parquet")
    write_pool(good.assign(rougeL=np.where(good.idx == 2, np.inf, good.rougeL)), FILES / "pool-utility-inf.parquet")
    write_pool(good.assign(score_style="best"), FILES / "pool-score-text.parquet")
    newer = stamp("pool", {"task": {"name": "git-commits"}, "split": "dev", "m": 4, "seed": 0})
    write_pool(good, FILES / "pool-newer-format.parquet", {**newer, "format": 99, "ttpkit": "9.0.0"})
    (FILES / "pool-garbage.parquet").write_bytes(b"PAR1 this is not a parquet file")
    raw = (FILES / "pool-good.parquet").read_bytes()
    (FILES / "pool-truncated.parquet").write_bytes(raw[: len(raw) // 2])
    # a pool made by a run with seed 0 (openai backend: its manifest needs no model file)
    spec = PolicySpec("openai", "openai", base_url="http://127.0.0.1:9/v1")
    run = sampling_manifest(spec, load_split(bundled_sample_dir(), "dev"), m=4, seed=0)
    write_pool(good[list(POOL_COLUMNS)], FILES / "pool-run-seed0.parquet", run)
    assert pd.read_parquet(FILES / "pool-run-seed0.parquet").attrs[MANIFEST_KEY]["seed"] == 0


def reward_models() -> None:
    """Copies of the bundled user-pairwise model, each damaged in one way."""
    from safetensors.numpy import load_file, save_file

    src = bundled_path("git-commits", "user-pairwise")  # not the default (user-prob): rm-variant-mismatch needs pairwise

    def copy(name: str) -> Path:
        d = FILES / name
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        shutil.copy(src / "model.safetensors", d / "model.safetensors")
        (d / "config.json").write_text(json.dumps(meta, indent=2) + "\n")  # as RewardModel.save writes it
        (d / "model.safetensors").chmod(0o644)
        return d

    # without the weights' hash, so each damaged file meets the check it is meant for, not the hash's
    meta = {k: v for k, v in json.loads((src / "config.json").read_text()).items() if k != "weights_sha256"}
    weights = load_file(str(src / "model.safetensors"))
    raw = (src / "model.safetensors").read_bytes()
    (copy("rm-truncated") / "model.safetensors").write_bytes(raw[: len(raw) // 2])
    (copy("rm-random-bytes") / "model.safetensors").write_bytes(np.random.default_rng(0).bytes(len(raw)))
    (copy("rm-pickle") / "model.safetensors").write_bytes(pickle.dumps({"weights": [1.0, 2.0]}))
    (copy("rm-config-malformed") / "config.json").write_text('{"config": {"variant": "user-pairwise",')
    _json(copy("rm-config-no-config") / "config.json", {k: v for k, v in meta.items() if k != "config"})
    _json(copy("rm-config-list") / "config.json", [meta])
    _json(copy("rm-hidden-mismatch") / "config.json", {**meta, "config": {**meta["config"], "hidden": 16}})
    _json(copy("rm-variant-mismatch") / "config.json", {**meta, "config": {**meta["config"], "variant": "user-prob"}})
    _json(copy("rm-var-floor-negative") / "config.json", {**meta, "config": {**meta["config"], "var_floor": -1}})
    _json(copy("rm-newer-features") / "config.json", {**meta, "ttpkit": "9.0.0", "features": [*meta["features"], "sentiment"]})
    _json(copy("rm-newer-format") / "config.json", {**meta, "ttpkit": "9.0.0", "format": 99})
    _json(copy("rm-unknown-setting") / "config.json", {**meta, "config": {**meta["config"], "dropout": 0.1}})
    first = next(k for k in weights if k.startswith("net.") and k.endswith("weight"))
    save_file({**weights, first: weights[first][:, :-1].copy()}, str(copy("rm-wrong-shape") / "model.safetensors"))
    save_file({**weights, first: np.full_like(weights[first], np.nan)}, str(copy("rm-nan-weights") / "model.safetensors"))
    save_file({k: v for k, v in weights.items() if k != "feature_mean"}, str(copy("rm-no-feature-mean") / "model.safetensors"))
    d = copy("rm-no-weights")
    (d / "model.safetensors").unlink()


def studies() -> None:
    (FILES / "study-bad-yaml.yaml").write_text("name: x\ndatasets: [\n")
    (FILES / "study-not-mapping.yaml").write_text("- a\n- b\n")
    base = {"name": "bad", "datasets": [{"name": "s", "path": "../../../src/ttpkit/_sample/git-commits",
                                         "train": {"split": "dev", "limit": 4, "m": 4}, "test": {"split": "dev", "m": 4}}],
            "policies": [{"name": "p"}], "ns": [1, 2, 4]}
    cases = {
        "study-ns-scalar": {**base, "ns": 5},
        "study-ns-nonpositive": {**base, "ns": [0, -1]},
        "study-temperature-text": {**base, "policies": [{"name": "p", "temperature": "hot"}]},
        "study-unknown-variant": {**base, "variants": ["user-magic"]},
        "study-unknown-rule": {**base, "rules": ["mean", "lcb:x"]},
        "study-rules-without-prob": {**base, "variants": ["user-mse"], "rules": ["mean", "lcb:1"]},
        "study-openai-no-url": {**base, "policies": [{"name": "p", "backend": "openai"}]},
        "study-unknown-key": {**base, "colour": "red"},
        "study-data-missing": {**base, "datasets": [{**base["datasets"][0], "path": "nowhere"}]},
        "study-ns-above-m": {**base, "ns": [1, 2, 4, 8]},
        "study-datasets-same-name": {**base, "datasets": base["datasets"] * 2},
        "study-name-a-path": {**base, "name": "../../elsewhere"},
        "failures-pools-scalar": {"kind": "failures", "name": "f", "data": {}, "pools": 5, "regimes": []},
        "failures-unknown-pool": {"kind": "failures", "name": "f", "data": {}, "pools": {},
                                  "regimes": [{"name": "r", "train": "a", "dev": "b", "test": "c"}]},
    }
    for name, raw in cases.items():
        (FILES / f"{name}.yaml").write_text(json.dumps(raw, indent=1) + "\n")


def profiles() -> None:
    (FILES / "profile-object.json").write_text('{"title": "a"}\n')
    (FILES / "profile-garbage.json").write_text("[{]\n")
    (FILES / "profile-item-no-title.json").write_text('[{"text": "fix"}]\n')
    (FILES / "profile-good.json").write_text('[{"text": "fix the parser on empty input", "title": "parser: fix empty input"}]\n')
    (FILES / "a-file").write_text("a file where a folder is expected\n")


def settings() -> None:
    """Settings that were accepted, then ignored or used out of range (issue 24, class 3)."""
    good = pd.read_parquet(FILES / "pool-good.parquet")
    write_pool(good.assign(score_p=good.score_style, std_p=np.where(good.idx == 1, -0.5, 0.1)),
               FILES / "pool-std-negative.parquet")
    write_pool(good.assign(mine=3.0 * good.rougeL), FILES / "pool-utility-above-one.parquet")
    first = good.query_id == good.query_id.iloc[0]  # class 5: a pool with a null user id (made outside ttpkit)
    write_pool(good.assign(user_id=good.user_id.where(~first, None)), FILES / "pool-user-null.parquet")
    task = {"name": "mine", "source_field": "text", "target_field": "title", "source_label": "Message", "target_label": "Title"}
    (FILES / "task-duplicate-key.yaml").write_text("".join(f"{k}: {v}\n" for k, v in task.items()) + "target_field: text\n")
    (FILES / "task-good.yaml").write_text(json.dumps(task) + "\n")
    (FILES / "study-duplicate-key.yaml").write_text("name: a\nns: [1, 2]\nname: b\n")


def degenerate(questions: list[dict], golds: list[dict]) -> None:
    """Legal JSON that names no user or record (issue 24, class 5), and a split given twice."""
    q0 = questions[0]
    for name, rec in {"data-user-id-true": {**q0, "user_id": True}, "data-user-id-empty": {**q0, "user_id": ""},
                      "data-user-id-nan": {**q0, "user_id": float("nan")}, "data-id-nan": {**q0, "id": float("nan")}}.items():
        _json(FILES / name / "dev_questions.json", [rec])  # json.dumps writes NaN, as other tools do
        _json(FILES / name / "dev_outputs.json", {"task": "git-commits", "golds": golds[:1]})
    d = FILES / "data-outputs-twice"
    _json(d / "dev_questions.json", questions)
    _json(d / "dev_outputs.json", {"task": "git-commits", "golds": golds})
    (d / "dev_outputs.json.gz").write_bytes(gzip.compress((d / "dev_outputs.json").read_bytes(), mtime=0))


def texts_and_disks(questions: list[dict], golds: list[dict]) -> None:
    """Text that is not valid Unicode (issue 24, class 1) and pools to write onto a full disk (class 7).

    ``\\ud800`` escapes are legal JSON and YAML, and decode to a lone surrogate; the pools hold bytes that are
    not UTF-8 in their text column.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    def escaped(path: Path, obj: object) -> None:  # json.dumps escapes the surrogate: the file itself is ASCII
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(obj, indent=1) + "\n")

    q0, out = questions[0], {"task": "git-commits", "golds": golds}
    item = {**q0["profile"][0], "title": "fix \ud800 this"}
    for name, rec in {"utf-data-surrogate-input": {**q0, "input": q0["input"] + " \ud800"},
                      "utf-data-surrogate-title": {**q0, "profile": [item, *q0["profile"][1:]]},
                      "utf-data-surrogate-user-id": {**q0, "user_id": "user-\udcff"}}.items():
        escaped(FILES / name / "dev_questions.json", [rec, *questions[1:]])
        escaped(FILES / name / "dev_outputs.json", out)
    escaped(FILES / "utf-gold-surrogate" / "dev_questions.json", questions)
    escaped(FILES / "utf-gold-surrogate" / "dev_outputs.json", {**out, "golds": [{**golds[0], "output": "\ud83d"}, *golds[1:]]})
    escaped(FILES / "utf-profile-surrogate.json", [{"text": "fix the parser", "title": "parser: \ud800"}])
    task = {"name": "mine", "source_field": "text", "target_field": "title", "source_label": "Message",
            "target_label": "Title", "instruction": "Write a title \udcff"}
    escaped(FILES / "utf-task-surrogate.yaml", task)
    escaped(FILES / "utf-study-surrogate.yaml", {"name": "bad", "datasets": [{"name": "s", "path": "data-\ud800"}]})
    (FILES / "utf-study-not-utf8.yaml").write_bytes(b"name: caf\xe9\n")  # Latin-1, not UTF-8
    good = pd.read_parquet(FILES / "pool-good.parquet")
    raw = pa.array([t.encode() + (b"\xff" if i == 1 else b"") for i, t in enumerate(good.text)], pa.binary())
    table = pa.Table.from_pandas(good, preserve_index=False).replace_schema_metadata(None)
    table = table.set_column(table.schema.get_field_index("text"), "text",
                             pa.Array.from_buffers(pa.string(), len(raw), raw.buffers()))  # the bytes as they are
    pq.write_table(table, FILES / "utf-pool-bad-utf8.parquet")
    for name, part in {"utf-pool-dir-bad-utf8": table.select(list(POOL_COLUMNS)),
                       "disk-pool-dir": pa.Table.from_pandas(good, preserve_index=False)}.items():  # to rewrite on a full disk
        d = FILES / name
        d.mkdir()
        (d / "manifest.json").write_text('{"generation": 0, "manifest": null}\n')
        pq.write_table(part.replace_schema_metadata(None), d / "part-g0-0000000000000-1-abc123-00000.parquet")


def gguf_files() -> None:
    """A GGUF whose header is cut short: the magic is right, the first key's length runs past the end (issue 24, class 4)."""
    import struct

    torn = b"GGUF" + struct.pack("<IQQ", 3, 2, 1) + struct.pack("<Q", 1 << 20) + b"general.architecture"
    (FILES / "gguf-torn.gguf").write_bytes(torn)


def main() -> None:
    if FILES.exists():
        shutil.rmtree(FILES)
    FILES.mkdir(parents=True)
    sample = bundled_sample_dir()
    questions = read_json(sample / "dev_questions.json.gz")[:4]
    questions = [{**q, "profile": q["profile"][:3]} for q in questions]
    golds = [g for g in read_json(sample / "dev_outputs.json.gz")["golds"] if g["id"] in {q["id"] for q in questions}]
    data_dirs(questions, golds)
    task_files()
    pools(read_json(sample / "dev_questions.json.gz"))
    reward_models()
    studies()
    profiles()
    settings()
    degenerate(questions, golds)
    texts_and_disks(questions, golds)
    artifacts(questions, golds)
    gguf_files()
    round_three()
    print(f"wrote {sum(1 for _ in FILES.iterdir())} entries under {FILES}")


def artifacts(questions: list[dict], golds: list[dict]) -> None:
    """Artifacts trusted without a check, and checks made too late (issue 24, classes 2 and 4)."""
    from safetensors.numpy import load_file, save_file

    src = bundled_path("git-commits")

    def rm(name: str, config: dict | None = None, card: object = None) -> Path:
        d = FILES / name
        d.mkdir(parents=True)
        shutil.copy(src / "model.safetensors", d / "model.safetensors")
        (d / "model.safetensors").chmod(0o644)
        _json(d / "config.json", config if config is not None else meta)
        if card is not None:
            _json(d / "card.json", card)
        return d

    meta, card = json.loads((src / "config.json").read_text()), json.loads((src / "card.json").read_text())
    rm("rm-features-int", {**meta, "features": 5})
    rm("rm-hidden-huge", {**meta, "config": {**meta["config"], "hidden": 3_000_000}})
    rm("rm-format-string", {**meta, "format": "1"})
    rm("rm-sha-null", {**meta, "weights_sha256": None})
    weights = load_file(str(src / "model.safetensors"))
    save_file({**weights, "feature_std": np.zeros_like(weights["feature_std"])}, str(rm("rm-feature-std-zero") / "model.safetensors"))
    (rm("rm-training-dir") / "training.json").mkdir()
    (FILES / "rm-training-dir" / "training.json" / "README").write_text("a directory where training.json belongs\n")
    rm("rm-card-strings", card={**card, "card": {k: str(v) if isinstance(v, float) else v for k, v in card["card"].items()}})
    (rm("rm-card-dir") / "card.json").mkdir()
    (FILES / "rm-card-dir" / "card.json" / "README").write_text("a directory where card.json belongs\n")
    # a pool sampled from the bundled sample's dev split (its manifest holds the split's digest) and data it was not
    spec = PolicySpec("openai", "openai", base_url="http://127.0.0.1:9/v1")
    run = sampling_manifest(spec, load_split(bundled_sample_dir(), "dev"), m=4, seed=0)
    write_pool(pd.read_parquet(FILES / "pool-good.parquet")[list(POOL_COLUMNS)], FILES / "pool-run-digest.parquet",
               {**run, "data_dir": "src/ttpkit/_sample/git-commits"})
    _json(FILES / "data-other-contents" / "dev_questions.json", questions)
    _json(FILES / "data-other-contents" / "dev_outputs.json", {"task": "git-commits", "golds": golds})
    _json(FILES / "data-two-splits" / "train_questions.json", questions)
    _json(FILES / "data-two-splits" / "train_outputs.json", {"task": "git-commits", "golds": golds})
    # policies: a model that is no GGUF, Hugging Face directories with bad configs
    (FILES / "not-a-gguf.gguf").write_bytes(b"PK\x03\x04 a zip file renamed to .gguf\n")
    for name, text in {"hf-bad-json": '{"model_type": "gemma3",',
                       "hf-no-model-type": '{"hidden_size": 64}\n'}.items():
        (FILES / name).mkdir()
        (FILES / name / "config.json").write_text(text)
    (FILES / "hf-no-config").mkdir()
    (FILES / "hf-no-config" / "tokenizer.json").write_text("{}\n")
    base = json.loads((FILES / "study-ns-scalar.yaml").read_text())
    _json(FILES / "study-url-no-v1.yaml", {**base, "ns": [1, 2, 4], "policies": [{"name": "p", "backend": "openai",
                                                                                "base_url": "http://127.0.0.1:9"}]})


def round_three() -> None:
    """Issue 31: Hugging Face directories whose tokenizer or config files are garbage, a task file's huge token limit."""
    config = '{"model_type": "gpt2"}\n'
    for name, files in {"hf-garbage-tokenizer": {"config.json": config, "tokenizer.json": "\x89PNG\r\n garbage, not JSON"},
                        "hf-tokenizer-config-list": {"config.json": config, "tokenizer_config.json": "[1, 2, 3]\n"},
                        "hf-unknown-model-type": {"config.json": '{"model_type": "no-such-model"}\n'}}.items():
        (FILES / name).mkdir()
        for fname, text in files.items():
            (FILES / name / fname).write_text(text)
    good = {"name": "mine", "source_field": "text", "target_field": "title", "source_label": "Message", "target_label": "Title"}
    (FILES / "task-max-new-tokens-huge.yaml").write_text(json.dumps({**good, "max_new_tokens": 10**30}))


if __name__ == "__main__":
    main()
