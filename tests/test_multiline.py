"""Multi-line tasks (debian-description, LongLaMP): prompts, stopping, the rougeLsum utility, end to end."""

from __future__ import annotations

import pytest

from ttpkit.data import bundled_sample_dir, get_task, load_split
from ttpkit.policy.prompt import PromptBuilder, cut_completion, starts_new_example
from ttpkit.utility import rouge


@pytest.fixture(scope="module")
def long_sample():
    return load_split(bundled_sample_dir("debian-description"), "dev")


def test_the_long_form_task_is_registered_and_detected(long_sample):
    task = get_task("debian-description")
    assert long_sample.task == task and task.multiline and task.max_new_tokens == 192
    assert (task.source_field, task.target_field) == ("title", "abstract")
    assert all("\n" not in q.source for q in long_sample.queries)  # inputs are synopses
    assert any("\n" in q.reference for q in long_sample.queries)  # references keep their line breaks
    assert not get_task("git-commits").multiline and get_task("LongLaMP-abstract").multiline


def test_a_multiline_completion_ends_where_the_next_example_starts():
    long, short = get_task("debian-description"), get_task("git-commits")
    text = "A tool.\n\nIt does things,\nwell.\n\nSynopsis: another package\nPackage description: ..."
    assert cut_completion(text, long) == "A tool.\n\nIt does things,\nwell."
    assert cut_completion(text, short) == "A tool."
    assert starts_new_example(text, long) and not starts_new_example("A tool.\n\nNote: a colon", long)
    assert cut_completion("  Line one\nline two  \n", long) == "Line one\nline two"  # EOS or token limit: kept whole
    assert cut_completion("x\n  Package description : y", long) == "x"  # the label with stray blanks


def test_few_shot_prompts_keep_a_multiline_targets_line_breaks_up_to_a_stated_limit(long_sample):
    q = next(q for q in long_sample.queries if any("\n" in p.target for p in q.profile))
    prompt = PromptBuilder(long_sample.task, k=2)(q)
    assert prompt.rstrip().endswith("Package description:") and prompt.count("Synopsis:") == 3
    shots = prompt.split("Synopsis:")[1:-1]
    assert any(s.count("\n") > 3 for s in shots)  # a shot's description spans lines
    clipped = PromptBuilder(long_sample.task, k=2, max_target_words=5)(q)
    for shot in clipped.split("Synopsis:")[1:-1]:
        body = shot.split("Package description:")[1]
        assert len(body.replace("...", "").split()) <= 5
    one_line = PromptBuilder(get_task("git-commits"), k=1)  # one-line tasks: targets stay on one line, unclipped
    assert one_line._target("a\nb  c") == "a b c"


def test_rougelsum_equals_rougel_on_one_line_and_credits_lines_in_any_order():
    one = rouge("fix the parser crash", "parser: fix crash on empty lines")
    assert one["rougeLsum"] == pytest.approx(one["rougeL"])
    ref = "The tool parses logs.\nIt writes reports to disk."
    swapped = "It writes reports to disk.\nThe tool parses logs."
    r = rouge(swapped, ref)
    assert r["rougeLsum"] == pytest.approx(1.0) and r["rougeL"] < 0.7  # one LCS across lines cannot match both


def test_task_files_may_declare_a_multiline_task(tmp_path):
    from ttpkit.data import load_task_file
    from ttpkit.errors import DataError

    path = tmp_path / "t.yaml"
    path.write_text("name: essays\nsource_field: t\ntarget_field: e\nsource_label: Title\ntarget_label: Essay\n"
                    "multiline: true\nmax_new_tokens: 256\n")
    spec = load_task_file(path)
    assert spec.multiline and spec.max_new_tokens == 256
    path.write_text("name: essays\nsource_field: t\ntarget_field: e\nsource_label: Title\ntarget_label: Essay\nmultiline: yes please\n")
    with pytest.raises(DataError, match="'multiline' must be true or false"):
        load_task_file(path)


@pytest.mark.slow
def test_a_multiline_task_end_to_end_with_the_embedded_model(tmp_path, long_sample):
    from ttpkit.policy import SamplingConfig
    from ttpkit.policy.local import LocalPolicy
    from ttpkit.scaling import curves
    from ttpkit.stages import label_pool, sample_pool

    policy = LocalPolicy.embedded(long_sample.task, SamplingConfig(seed=0, max_new_tokens=48))
    out = tmp_path / "pool.parquet"
    sample_pool(long_sample.queries[:1], out, 2, policy)
    pool = label_pool(out, long_sample)
    assert len(pool) == 2 and all(t.strip() for t in pool["text"])
    assert not any(starts_new_example(t, long_sample.task) for t in pool["text"])  # cut before any next example
    assert pool["rougeLsum"].between(0, 1).all() and (pool["rougeLsum"] >= pool["rougeL"] - 1e-9).all()
    res = curves(pool, ["oracle", "random"], "rougeLsum", [1, 2])
    assert res["oracle"].mean[1] >= res["oracle"].mean[0]


@pytest.mark.slow
def test_debian_description_through_every_command(tmp_path, long_sample):
    """label, train-rm (multi-line features on by default), score, curves, diagnose and personalize on the
    bundled long-form sample; the pool's candidates are the users' own past descriptions, shuffled."""
    import json
    import os
    import subprocess
    import sys

    import numpy as np
    import pandas as pd

    from ttpkit.pool import write_pool

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "ttpkit.cli", *args], capture_output=True, text=True,
                              env={**os.environ, "COLUMNS": "80"})

    rng = np.random.default_rng(0)
    targets = [p.target for q in long_sample.queries for p in q.profile]
    rows = [{"query_id": q.id, "user_id": q.user_id, "idx": i, "text": targets[int(rng.integers(len(targets)))],
             "policy": "fake", "seed": 0} for q in long_sample.queries for i in range(4)]
    pool = tmp_path / "pool.parquet"
    write_pool(pd.DataFrame(rows), pool)
    data = str(bundled_sample_dir("debian-description"))
    for cmd in (["label", "--pool", str(pool), "--data", data, "--split", "dev"],
                ["train-rm", "--pool", str(pool), "--data", data, "--out", str(tmp_path / "rm"), "--variant", "user-pairwise",
                 "--encoder-layers", "2"],
                ["score", "--rm", str(tmp_path / "rm"), "--pool", str(pool), "--data", data],
                ["curves", "--pool", str(pool), "--utility", "rougeLsum", "--scorers", "oracle,random,user-pairwise", "--format", "json"],
                ["diagnose", "--pool", str(pool), "--out", str(tmp_path / "diag"), "--scorers", "oracle,user-pairwise"]):
        res = cli(*cmd)
        assert res.returncode == 0, (cmd[0], res.stderr)
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert config["config"]["long_form"] and "repeat_frac" in config["features"] and config["tasks"] == ["debian-description"]
    assert {"rougeL", "rougeLsum", "score_user-pairwise"} <= set(pd.read_parquet(pool).columns)
    profile = tmp_path / "user.json"
    profile.write_text(json.dumps([{"title": p.source, "abstract": p.target} for p in long_sample.queries[0].profile]))
    res = cli("personalize", "--profile", str(profile), "--input", "command-line tool to resize images", "--n", "2",
              "--task", "debian-description", "--rm", str(tmp_path / "rm"), "--json")
    assert res.returncode == 0, res.stderr
    record = json.loads(res.stdout)
    assert record["task"] == "debian-description" and record["n"] == 2 and record["text"].strip()
