"""ttpkit.personalize / `ttpkit personalize`: one query in, the chosen answer out."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ttpkit.errors import ConfigError, DataError
from ttpkit.online import personalize
from ttpkit.reward.bundled import DEFAULT_VARIANTS, MODELS_DIR, bundled_path, load_card, resolve_rm

from conftest import EchoPolicy, FakeEncoder


def _profile(query):
    return [{"id": p.id, "text": p.source, "title": p.target} for p in query.profile]


@pytest.mark.parametrize("group", ["git-commits", "debian-synopsis", "any"])
def test_the_shipped_cards_are_what_measure_card_gives_on_the_committed_test_pools(group):
    from dataclasses import asdict
    from pathlib import Path

    import pandas as pd

    from ttpkit.pool import read_pool
    from ttpkit.reward.bundled import measure_card

    results = Path(__file__).resolve().parent.parent / "results" / "bundled"
    tasks = ["git-commits", "debian-synopsis"] if group == "any" else [group]
    test = pd.concat([read_pool(results / t / "test.parquet") for t in tasks], ignore_index=True)
    for variant in ("user-pairwise", "user-prob"):
        card, extra = measure_card(test, f"bundled-{group}-{variant}" if group == "any" else f"bundled-{variant}", group, variant)
        shipped = json.loads((MODELS_DIR / group / variant / "card.json").read_text())
        assert asdict(card) == shipped["card"]
        assert (extra["lo"], extra["hi"]) == (shipped["cv"]["test"]["lo"], shipped["cv"]["test"]["hi"])


@pytest.mark.parametrize("task", ["git-commits", "debian-synopsis"])
def test_default_is_the_stacked_ranker_chosen_against_greedy_with_its_card(task):
    from ttpkit.reward import load_rm
    from ttpkit.reward.stack import StackedScorer

    path = resolve_rm("default", task)
    assert path == MODELS_DIR / task / DEFAULT_VARIANTS[task] == MODELS_DIR / task / "stacked"
    model = load_rm(path)
    assert isinstance(model, StackedScorer) and model.task == task and model.rm_model == "default:user-prob"
    card = load_card(path)
    assert card.task == task and card.n == 16
    cv = json.loads((path / "card.json").read_text())["cv"]  # the CV against greedy that chose it, on dev users
    assert cv["chosen"] and cv["split"] == "dev" and cv["lo"] <= cv["gain"] <= cv["hi"] and cv["gain_n4"] >= 0
    readme = (path / "README.md").read_text()
    assert f"{cv['gain']:+.3f}" in readme and f"{cv['test']['gain']:+.3f}" in readme  # both gains over greedy stated
    assert cv["test"]["lo"] <= cv["test"]["gain"] <= cv["test"]["hi"]


@pytest.mark.parametrize("task", ["git-commits", "debian-synopsis"])
def test_the_rm_behind_the_default_is_the_tasks_bundled_model_with_a_card(task):
    path = resolve_rm("default:user-prob", task)
    card = load_card(path)
    assert card.task == task and 0 < card.share < 1 and card.n == 16
    readme = (path / "README.md").read_text()
    assert readme.count(f"{card.share:.0%}") >= 1  # the model card states the measured share
    cv = json.loads((path / "card.json").read_text())["cv"]  # and the cross-validation that chose it as the default
    assert cv["chosen"] and cv["lo"] <= cv["share"] <= cv["hi"] and f"{cv['share']:.0%} of the oracle gain" in readme
    assert cv["test"]["lo"] <= card.share == cv["test"]["share"] <= cv["test"]["hi"]
    for variant in ("user-pairwise", "user-prob"):
        assert resolve_rm(f"default:{variant}", task).name == variant
    size = sum(f.stat().st_size for f in MODELS_DIR.rglob("*") if f.is_file())
    assert size < 3_000_000  # a few MB at most inside the wheel


def test_an_unknown_task_falls_back_to_the_task_agnostic_model():
    assert bundled_path("LaMP-5").parent.name == "any"


def test_personalize_picks_the_rms_best_candidate(sample):
    q = sample.queries[0]
    res = personalize(_profile(q), q.source, task=sample.task, n=6, policy=EchoPolicy(), encoder=FakeEncoder())
    scores = [c.score for c in res.candidates]
    assert res.n == 6 and res.chosen == int(np.argmax(scores)) and res.text == res.candidates[res.chosen].text
    assert res.expected is not None and res.expected.n == 6 and res.task == "git-commits"
    record = json.loads(json.dumps(res.as_dict()))
    assert record["n"] == 6 and record["text"] == res.text and len(record["candidates"]) == 6


def test_lcb_uses_the_std_of_a_probabilistic_rm(sample):
    q = sample.queries[1]
    res = personalize(_profile(q), q.source, task="git-commits", rm="default:user-prob", rule="lcb:2", n=5,
                      policy=EchoPolicy(), encoder=FakeEncoder())
    sel = [c.score - 2 * c.std for c in res.candidates]
    assert all(c.std > 0 for c in res.candidates) and res.chosen == int(np.argmax(sel))


def test_adaptive_sampling_stops_early_or_at_max_n(sample):
    q = sample.queries[2]
    kw = dict(task="git-commits", policy=EchoPolicy(), encoder=FakeEncoder(), adaptive=True, max_n=12)
    eager = personalize(_profile(q), q.source, min_round_gain=10.0, **kw)  # nothing is worth a second round
    assert eager.n == 4 and eager.rounds == 1
    greedy = personalize(_profile(q), q.source, min_round_gain=0.0, **kw)  # everything is
    assert greedy.n == 12 and greedy.rounds == 3
    with pytest.warns(DeprecationWarning, match="min_gain"):  # the old name, for one release
        old = personalize(_profile(q), q.source, min_gain=10.0, **kw)
    assert (old.n, old.rounds, old.text, old.candidates) == (eager.n, eager.rounds, eager.text, eager.candidates)


def test_bad_input_keeps_working_with_a_warning_or_fails_clearly(sample):
    q = sample.queries[3]
    kw = dict(task="git-commits", n=3, policy=EchoPolicy(), encoder=FakeEncoder())
    res = personalize([], q.source, **kw)
    assert res.n == 3 and any("empty profile" in w for w in res.warnings)
    res = personalize(_profile(q), "word " * 5000, **kw)
    assert any("5000 words" in w and "first 200" in w for w in res.warnings)
    with pytest.raises(DataError, match=r"profile item #1 has no field 'title'"):
        personalize([{"text": "a", "title": "b"}, {"text": "c"}], q.source, **kw)
    with pytest.raises(ConfigError, match="unknown selection rule"):
        personalize(_profile(q), q.source, rule="best", **kw)
    with pytest.raises(ConfigError, match="needs a probabilistic RM"):  # the default is user-prob here: name a deterministic RM
        personalize(_profile(q), q.source, rule="lcb:1", rm="default:user-pairwise", **kw)
    with pytest.raises(ConfigError, match="trained on git-commits, not on debian-synopsis"):
        personalize([{"abstract": "a", "title": "b"}], "text", **{**kw, "task": "debian-synopsis",
                    "rm": str(MODELS_DIR / "git-commits" / "user-pairwise")})
    with pytest.raises(DataError, match="input is empty"):
        personalize(_profile(q), "  ", **kw)


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ttpkit.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env={**__import__("os").environ, "COLUMNS": "80"})


def test_cli_bad_input_exits_2_with_one_line(tmp_path, sample):
    profile = tmp_path / "user.json"
    profile.write_text(json.dumps([{"text": "a"}]))
    task_file = tmp_path / "task.yaml"
    task_file.write_text("name: notes\nsource_field: body\n")
    for args, want in [
        (["--profile", str(profile), "--input", "x"], "has no field 'title'"),
        (["--profile", str(profile), "--input", "x", "--rule", "best"], "unknown selection rule"),
        (["--profile", str(profile), "--input", "x", "--task-file", str(task_file)], "lacks target_field, source_label, target_label"),
        (["--profile", str(tmp_path / "nope.json"), "--input", "x"], "no such file"),
        (["--profile", str(sample.path / "dev_questions.json.gz"), "--input", "x"], "pass --user ID"),
    ]:
        res = _cli("personalize", *args)
        assert res.returncode == 2, (args, res.stderr)
        assert want in res.stderr and "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr


@pytest.mark.slow
def test_personalize_end_to_end_with_the_embedded_model_and_the_real_encoder(tmp_path, sample):
    q = sample.queries[0]
    profile = tmp_path / "user.json"
    profile.write_text(json.dumps(_profile(q)))
    res = _cli("personalize", "--profile", str(profile), "--input", q.source, "--n", "3", "--json")
    assert res.returncode == 0, res.stderr
    record = json.loads(res.stdout)
    assert record["n"] == 3 and record["text"] == record["candidates"][record["chosen"]]["text"]
    assert record["rm"].endswith(f"git-commits/{DEFAULT_VARIANTS['git-commits']}") and record["expected"]["n"] == 3
    res = _cli("personalize", "--profile", str(sample.path / "dev_questions.json.gz"), "--user", q.user_id,
               "--input", q.source, "--n", "2", "--rm", "default:user-prob", "--rule", "lcb:1")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].strip() and "◀" in res.stdout and "2 candidates, rule lcb:1" in res.stdout
    assert "the law expects best-of-2" in res.stderr or "collapsed" in res.stderr


@pytest.mark.slow
def test_a_custom_task_file_works_through_every_command(tmp_path):
    """A task ttpkit does not know, declared in YAML, on a tiny data set made here: label, train-rm, score,
    diagnose and personalize (embedded model, task-agnostic bundled RM) all take --task-file."""
    import pandas as pd

    from conftest import write_split
    from ttpkit.pool import write_pool

    task_file = tmp_path / "recipes.yaml"
    task_file.write_text("name: recipes\nsource_field: steps\ntarget_field: dish\nsource_label: Steps\n"
                         "target_label: Dish\ninstruction: 'Name the dish:'\n")
    rng = np.random.default_rng(0)
    words = "tomato basil pasta garlic onion rice beans lemon chicken curry soup bread".split()
    questions, golds, rows = [], [], []
    for i in range(12):
        dish = " ".join(rng.choice(words, 2))
        profile = [{"id": f"p{i}{j}", "steps": f"cook {' '.join(rng.choice(words, 5))}", "dish": " ".join(rng.choice(words, 2))}
                   for j in range(3)]
        questions.append({"id": f"r{i}", "user_id": f"u{i // 3}", "input": f"Name the dish: mix {dish} and serve", "profile": profile})
        golds.append({"id": f"r{i}", "output": dish})
        for k in range(4):
            rows.append({"query_id": f"r{i}", "user_id": f"u{i // 3}", "idx": k, "text": " ".join(rng.choice(words, 2)),
                         "policy": "fake", "seed": 0})
    data = write_split(tmp_path / "recipes", questions, {"golds": golds}, split="train")
    write_pool(pd.DataFrame(rows), tmp_path / "pool.parquet")
    tf = ["--task-file", str(task_file)]
    res = _cli("label", "--pool", str(tmp_path / "pool.parquet"), "--data", str(data), "--split", "train")
    assert res.returncode == 2 and "--task-file FILE" in res.stderr  # the data do not say their task
    for cmd in (["label", "--pool", str(tmp_path / "pool.parquet"), "--data", str(data), "--split", "train", *tf],
                ["train-rm", "--pool", str(tmp_path / "pool.parquet"), "--data", str(data), "--out", str(tmp_path / "rm"),
                 "--variant", "user-pairwise", "--encoder-layers", "2", *tf],
                ["score", "--rm", str(tmp_path / "rm"), "--pool", str(tmp_path / "pool.parquet"), "--data", str(data), *tf],
                ["diagnose", "--pool", str(tmp_path / "pool.parquet"), "--out", str(tmp_path / "diag"), "--scorers",
                 "oracle,user-pairwise", "--data", str(data), *tf]):
        res = _cli(*cmd)
        assert res.returncode == 0, (cmd[0], res.stderr)
    assert json.loads((tmp_path / "rm" / "config.json").read_text())["tasks"] == ["recipes"]
    profile = tmp_path / "user.json"
    profile.write_text(json.dumps(questions[0]["profile"]))
    res = _cli("personalize", "--profile", str(profile), "--input", "mix rice and beans", "--n", "2", "--json", *tf)
    assert res.returncode == 0, res.stderr
    record = json.loads(res.stdout)
    assert record["task"] == "recipes" and record["rm"].endswith("any/user-pairwise") and record["n"] == 2
    (tmp_path / "gc.json").write_text(json.dumps([{"text": "fix a bug", "title": "fix"}]))
    res = _cli("personalize", "--profile", str(tmp_path / "gc.json"), "--input", "x", "--rm", str(tmp_path / "rm"), "--task", "git-commits")
    assert res.returncode == 2 and "trained on recipes, not on git-commits" in res.stderr
