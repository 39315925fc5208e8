from __future__ import annotations

import dataclasses
import json
import os
import re

import pytest
from conftest import write_split

from ttpkit.data import Query, TaskSpec, get_task, load_split, resolve_task
from ttpkit.errors import DataError

Q = [{"id": "q1", "input": "Generate a title for the following abstract of a paper: We study cats.",
      "profile": [{"id": "p1", "abstract": "dogs bark", "title": "On dogs"}]}]
O = {"task": "LaMP-5", "golds": [{"id": "q1", "output": "Cats"}]}


def test_bundled_sample_is_real_and_small(sample):
    assert sample.task.name == "git-commits"
    assert len(sample.queries) == 16
    assert len({q.user_id for q in sample.queries}) == 8
    assert all(1 <= len(q.profile) <= 20 and q.reference for q in sample.queries)
    assert all(not q.source.lower().startswith("generate") for q in sample.queries)


@pytest.mark.parametrize("gz", [False, True])
def test_load_plain_and_gzip(tmp_path, gz):
    ds = load_split(write_split(tmp_path / "d", Q, O, gz=gz), "test")
    (q,) = ds.queries
    assert isinstance(q, Query)
    assert q.source == "We study cats."
    assert q.reference == "Cats"
    assert q.profile[0].source == "dogs bark" and q.profile[0].target == "On dogs"
    with pytest.raises(AttributeError):
        q.id = "other"  # records are frozen


def test_user_id_derived_stably_from_profile(tmp_path):
    two = [Q[0], {**Q[0], "id": "q2"}, {**Q[0], "id": "q3", "profile": []}]
    ds = load_split(write_split(tmp_path, two), "test", task="LaMP-5")
    a, b, c = ds.queries
    assert a.user_id == b.user_id != c.user_id
    assert a.reference is None  # no outputs file: fine for generation
    assert load_split(tmp_path, "test", task="LaMP-5").queries[0].user_id == a.user_id


@pytest.mark.parametrize(
    "questions, needle",
    [
        ([{"input": "x", "profile": []}], "record #0 has no field 'id'"),
        ([{"id": "a", "profile": []}], "record #0 (id 'a') has no field 'input'"),
        ([{"id": "a", "input": "x", "profile": "no"}], "field 'profile' must be a list"),
        ([{"id": "a", "input": "x", "profile": [{"abstract": "s"}]}], "profile item #0 has no field 'title'"),
        ([{"id": "a", "input": "x", "profile": []}, {"id": "a", "input": "y", "profile": []}], "repeats an id"),
        ({"not": "a list"}, "expected a JSON list"),
    ],
)
def test_malformed_records_name_file_record_and_field(tmp_path, questions, needle):
    write_split(tmp_path, questions, O)
    with pytest.raises(DataError) as e:
        load_split(tmp_path, "test")
    assert needle in str(e.value)
    assert "test_questions.json" in str(e.value)


def test_missing_files_and_unknown_task(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_split(tmp_path / "nope", "test")
    write_split(tmp_path, Q, O)
    with pytest.raises(DataError, match="no dev_questions"):
        load_split(tmp_path, "dev")
    with pytest.raises(DataError, match="known tasks: .*LaMP-4"):
        get_task("LaMP-99")
    (tmp_path / "test_questions.json").write_text("[{broken")
    with pytest.raises(DataError, match="not valid JSON"):
        load_split(tmp_path, "test")


def test_bad_gold_is_reported(tmp_path):
    write_split(tmp_path, Q, {"task": "LaMP-5", "golds": [{"id": "q1"}]})
    with pytest.raises(DataError, match=r"test_outputs.json: gold #0 \(id 'q1'\) has no field 'output'"):
        load_split(tmp_path, "test")


def test_task_specs_cover_lamp_and_longlamp():
    assert (get_task("LaMP-4").source_field, get_task("LaMP-4").target_field) == ("text", "title")
    assert get_task("LongLaMP-review").target_field == "reviewText"
    assert get_task("debian-synopsis").source_field == "abstract"
    spec = get_task("git-commits")
    assert TaskSpec(**json.loads(json.dumps(dataclasses.asdict(spec)))) == spec  # a plain record: JSON round trip


def test_package_model_paths():
    from ttpkit.errors import TtpkitError
    from ttpkit.policy import resolve_model

    assert resolve_model("pkg://ttpkit/_sample/README.md").exists()
    assert str(resolve_model("some/file.gguf")) == "some/file.gguf"
    with pytest.raises(TtpkitError, match="not installed"):
        resolve_model("pkg://no_such_package_xyz/model.gguf")
    with pytest.raises(TtpkitError, match="no file"):
        resolve_model("pkg://ttpkit/missing.gguf")


def test_a_task_file_declares_a_task_everywhere_a_name_does(tmp_path):
    from ttpkit.data import load_task_file, resolve_task

    task_file = tmp_path / "notes.yaml"
    task_file.write_text("name: notes\nsource_field: body\ntarget_field: heading\nsource_label: Note\n"
                         "target_label: Heading\ninstruction: 'Write a heading for this note:'\n")
    spec = load_task_file(task_file)
    assert spec == TaskSpec("notes", "body", "heading", "Note", "Heading", "Write a heading for this note:")
    assert resolve_task(None, task_file) == spec and resolve_task("git-commits") == get_task("git-commits")
    assert resolve_task(None, None) is None
    data = tmp_path / "mydata"
    write_split(data, [{"id": "n1", "input": "Write a heading for this note: buy milk",
                        "profile": [{"id": "p1", "body": "call mum", "heading": "family"}]}])
    with pytest.raises(DataError, match="cannot tell the task; pass --task NAME .* or declare it with --task-file FILE"):
        load_split(data, "test")
    ds = load_split(data, "test", spec)
    assert ds.task == spec and ds.queries[0].source == "buy milk" and ds.queries[0].profile[0].target == "family"


@pytest.mark.parametrize(
    "text, needle",
    [("name: x\n", "lacks source_field, target_field, source_label, target_label"),
     ("[1, 2]\n", "a task file is a mapping"),
     ("name: x\nsource_field: a\ntarget_field: b\nsource_label: A\ntarget_label: B\ncolour: red\n", "unknown task file keys colour"),
     ("name: x\nsource_field: 3\ntarget_field: b\nsource_label: A\ntarget_label: B\n", "'source_field' must be a non-empty string"),
     ("name: [x\n", "not valid YAML")],
)
def test_bad_task_files_are_named(tmp_path, text, needle):
    from ttpkit.data import load_task_file

    path = tmp_path / "t.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=re.escape(needle)):
        load_task_file(path)
    with pytest.raises(DataError, match="cannot read the task file"):
        load_task_file(tmp_path / "missing.yaml")


def test_a_fifo_or_deeply_nested_json_is_a_data_error_not_a_hang_or_a_recursion_error(tmp_path):
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "dev_questions.json")  # opening it would block until a writer came
    with pytest.raises(DataError, match="not a regular file"):
        load_split(fifo, "dev", "git-commits")
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "dev_questions.json").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DataError, match="nested too deeply"):
        load_split(deep, "dev", "git-commits")
    (tmp_path / "task.yaml").write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(DataError, match="task.yaml"):
        resolve_task(None, tmp_path / "task.yaml")
