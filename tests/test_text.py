"""Text that is not clean UTF-8 (issue 24, class 1): refused where it enters, journals decoded per line, any terminal.

The corpus cases after "class 1" in tests/bad_inputs/cases.yaml run the same rule through the real CLI.
"""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from fastapi.testclient import TestClient

from conftest import FakeEncoder, FakeLM, write_split
from ttpkit.data import ProfileItem, load_split
from ttpkit.errors import DataError
from ttpkit.policy.base import Candidate
from ttpkit.pool import PoolWriter, read_pool
from ttpkit.text import check_text, find_bad_text, text_problem

JSON = {"content-type": "application/json"}


def test_the_rule_names_the_bad_character_and_passes_every_valid_string():
    assert text_problem("plain") is None and text_problem("café ± 😀 \U0010ffff") is None
    assert text_problem("ab\udcff") == "byte 0xff at character 2 is not UTF-8"  # argv's surrogateescape
    assert "lone surrogate \\ud800" in text_problem("\ud800x") and "character 0" in text_problem("\ud800x")
    assert text_problem("\ud83d\ude00") is not None  # a pair of escapes is two lone surrogates in Python, not 😀
    with pytest.raises(DataError, match=r"^f\.json: record #2 field 'input' is not valid UTF-8 text \(a lone"):
        check_text("x\udbff", "f.json: record #2 field 'input'")
    assert find_bad_text({"a": ["ok", {"b": "ok", "c": "\ud800"}]}) == ("a[1].c", text_problem("\ud800"))
    assert find_bad_text({"k\udcff": 1})[0] == "(the object) (a key)" and find_bad_text([1, "ok", None]) is None


def test_the_loader_refuses_a_surrogate_in_any_field_it_reads_naming_file_record_and_field(tmp_path, sample):
    q = {"id": "q1", "input": "Fix it", "user_id": "u1", "profile": [{"id": "p1", "text": "fix a", "title": "a: fix"}]}
    bad = {"input": {**q, "input": "Fix \ud800"}, "title": {**q, "profile": [{**q["profile"][0], "title": "\ud800"}]},
           "user_id": {**q, "user_id": "u\udcff"}, "profile item id": {**q, "profile": [{**q["profile"][0], "id": "\ud800"}]}}
    for field, rec in bad.items():
        d = write_split(tmp_path / field.replace(" ", "-"), [rec], split="dev")
        with pytest.raises(DataError, match=rf"dev_questions.json: record #0 \(id 'q1'\).*'{field.split()[-1]}' is not valid UTF-8"):
            load_split(d, "dev", "git-commits")
    (tmp_path / "latin1").mkdir()
    (tmp_path / "latin1" / "dev_questions.json").write_bytes(json.dumps([q]).encode().replace(b"Fix it", b"Caf\xe9"))
    with pytest.raises(DataError, match=r"not valid UTF-8 text \(byte 0xe9 at offset \d+\)"):
        load_split(tmp_path / "latin1", "dev", "git-commits")
    extra = {**q, "user_id": None, "profile": [{**q["profile"][0], "date": "\ud800"}]}  # a field ttpkit never reads
    d = write_split(tmp_path / "extra", [extra], split="dev")
    assert load_split(d, "dev", "git-commits").queries[0].user_id.startswith("user-")  # hashed, not a crash


def test_the_python_api_refuses_bad_text_before_any_model_loads(sample):
    from ttpkit import personalize
    from ttpkit.reward.encoder import Encoder

    good = [{"text": "fix the parser", "title": "parser: fix"}]
    cases = [(good, "fix \udcff", {}, "the input"), ([{**good[0], "title": "\ud800"}], "fix", {}, "field 'title'"),
             ([ProfileItem("p", "fix", "\ud800")], "fix", {}, "profile item #0 field 'target'"),
             (good, "fix", {"user_id": "u\udcff"}, "the user id")]
    for profile, text, kw, where in cases:  # rm names no model: reaching it would be another error
        with pytest.raises(DataError, match=f"{where} is not valid UTF-8"):
            personalize(profile, text, rm="/nowhere/rm", **kw)
    with pytest.raises(DataError, match="a text to embed is not valid UTF-8"):
        Encoder().encode(["ok", "half \ud83d"])  # the cache key, before MiniLM loads


def test_a_journal_cut_inside_a_character_loses_only_that_record(tmp_path, caplog):
    out = tmp_path / "p.parquet"
    w = PoolWriter(out, fold_every=100)
    w.add([Candidate("a", "u", 0, "café ±", "p", 0)])
    journal = out.with_name(out.name + ".journal.jsonl")
    line = json.dumps({"query_id": "b", "user_id": "u", "idx": 0, "text": "déjà vu", "policy": "p", "seed": 0},
                      ensure_ascii=False).encode()
    with journal.open("ab") as f:
        f.write(line[: line.index("é".encode()) + 1])  # a kill between the two bytes of "é"
    w.add([Candidate("c", "u", 0, "naïve", "p", 0)])  # the resumed run appends after the cut
    with journal.open("ab") as f:
        f.write(b'{"query_id": "d", "user_id": "u", "idx": 0, "text": "\\ud800", "policy": "p", "seed": 0}\n')
    with caplog.at_level(logging.WARNING):
        assert list(read_pool(out)["text"]) == ["café ±", "naïve"]
    assert "skipped 2 damaged journal line(s)" in caplog.text
    w.fold()
    assert list(read_pool(out)["query_id"]) == ["a", "c"] and not journal.exists()
    with pytest.raises(DataError, match=r"policy p's candidate 0 of query 'e' is not valid UTF-8"):
        w.add([Candidate("e", "u", 0, "half \ud83d", "p", 0)])  # never written, so never a damaged line


def test_serve_answers_a_422_naming_the_field_never_a_500(tmp_path, sample):
    from ttpkit.serve import create_app
    from ttpkit.serve import create_service

    def post(client, url, body):  # json.dumps escapes the surrogate, as any client's JSON encoder may
        return client.post(url, content=json.dumps(body).encode(), headers=JSON)

    openai = TestClient(create_app(FakeLM()))
    service = TestClient(create_service(FakeLM(), f"sqlite:///{tmp_path / 'p.db'}", encoder=FakeEncoder(2), admin_key=""))
    item = {"text": "fix a", "title": "a: fix"}
    cases = [(openai, "/v1/completions", {"prompt": "x\ud800"}, "prompt is not valid UTF-8"),
             (openai, "/v1/completions", {"prompt": ["ok", "x\udcff"]}, "prompt[1]"),
             (openai, "/v1/chat/completions", {"messages": [{"role": "user", "content": "\ud800"}]}, "messages[0].content"),
             (service, "/v1/users/alice/items", {"items": [{**item, "title": "\ud800"}]}, "items[0].title"),
             (service, "/v1/personalize", {"profile": [item], "input": "fix \ud800"}, "input is not valid UTF-8"),
             (service, "/v1/personalize", {"profile": [{**item, "text": "\ud800"}], "input": "fix"}, "profile[0].text"),
             (service, "/v1/feedback", {"request_id": "r", "text": "\udcff"}, "text is not valid UTF-8")]
    for client, url, body, reason in cases:
        r = post(client, url, body)
        assert r.status_code == 422 and reason in r.json()["error"]["message"], (url, body, r.status_code, r.text)
    r = openai.post("/v1/completions", content=b'{"prompt": "caf\xe9"}', headers=JSON)  # Latin-1 bytes
    assert r.status_code == 422 and "not valid UTF-8 text (byte 0xe9 at offset 15)" in r.json()["detail"]
    assert post(service, "/v1/users/alice/items", {"items": [item]}).status_code == 200  # the service is unharmed


def test_a_terminal_that_cannot_encode_a_character_gets_ascii_not_a_crash(tmp_path, monkeypatch):
    from ttpkit.cli import main
    from ttpkit.cli._common import setup_streams

    streams = {name: io.TextIOWrapper(io.BytesIO(), encoding="ascii") for name in ("stdout", "stderr")}
    for name, stream in streams.items():
        monkeypatch.setattr(sys, name, stream)
    setup_streams()
    print("0.535 ±0.099 café \udcff")
    sys.stdout.flush()
    assert streams["stdout"].buffer.getvalue() == b"0.535 +/-0.099 caf\\xe9 \\udcff\n"
    pool = "tests/bad_inputs/files/pool-good.parquet"
    monkeypatch.setattr(sys, "argv", ["ttpkit", "curves", "--pool", pool, "--plot", str(tmp_path / "c.png")])
    with pytest.raises(SystemExit) as done:
        main()  # PYTHONIOENCODING=ascii ttpkit curves
    sys.stdout.flush()
    assert done.value.code == 0 and b"0.535 +/-0.099" in streams["stdout"].buffer.getvalue()
