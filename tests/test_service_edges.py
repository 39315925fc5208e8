"""The service's edges under a hostile client (issue 34, classes 2-6): a real uvicorn on loopback, SQLite and PostgreSQL.

Each class is tried with several cases: values no store can hold, non-finite numbers and rules, deep JSON, huge
offsets, bodies over the limit (declared and chunked), long echoes, unexpected errors, store failures, keys in
URLs, docs without a key, open servers over issued keys, and metrics under random methods and paths. Every 4xx
case is also checked to leave no traceback in the server log.
"""

from __future__ import annotations

import json
import logging
import contextlib
import random
import socket
import string

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from ttpkit.errors import ConfigError
from ttpkit.serve import MAX_BODY_BYTES, create_service
from ttpkit.serve._errors import MAX_ERRORS
from ttpkit.serve._personalize import rm_name
from ttpkit.serve._store import ProfileStore

from conftest import FakeEncoder, FakeLM, live

ITEM = {"text": "fix the parser on empty input", "title": "parser: fix empty input"}
JSON_HEADERS = {"content-type": "application/json"}
MAX_ERROR_BYTES = 32 << 10  # what these tests allow a 422 to weigh (the service bounds it by MAX_ERRORS and cuts)


class ServerLog(logging.Handler):
    """Every record of the server's loggers (uvicorn's and ttpkit's) while the block runs."""

    NAMES = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "ttpkit", "ttpkit.serve")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.records)

    def attach(self) -> None:
        """Listen to every logger (again: starting uvicorn replaces the handlers of its own loggers)."""
        for name in self.NAMES:
            logging.getLogger(name).addHandler(self)

    def tracebacks(self) -> list[logging.LogRecord]:
        return [r for r in self.records if r.exc_info or "Traceback" in r.getMessage()]


@pytest.fixture
def server_log():
    handler = ServerLog()
    levels = {name: logging.getLogger(name).level for name in ServerLog.NAMES}
    handler.attach()
    yield handler
    for name in ServerLog.NAMES:
        logging.getLogger(name).removeHandler(handler)
        logging.getLogger(name).setLevel(levels[name])


@contextlib.contextmanager
def serving(app, log: ServerLog | None = None):
    """``live(app)``, with ``log`` listening to the started server's loggers."""
    with live(app) as root:
        if log is not None:
            log.attach()
        yield root


def _no_traceback(server_log: ServerLog, capfd) -> None:
    """The 4xx cases left no traceback in the log, nor on stderr."""
    assert not server_log.tracebacks(), [r.getMessage() for r in server_log.tracebacks()]
    assert "Traceback" not in capfd.readouterr().err


def _service(url: str, policy=None, **kw):
    kw.setdefault("admin_key", "")
    return create_service(policy or FakeLM(), url, encoder=FakeEncoder(), batch_window_ms=1.0, **kw)


def _post(root: str, path: str, body, headers=None) -> httpx.Response:
    """POST ``body`` (JSON text as it is when a str, else ``json.dumps``, which writes NaN and Infinity)."""
    content = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return httpx.post(root + path, content=content, headers={**JSON_HEADERS, **(headers or {})}, timeout=60)


def test_values_no_store_can_hold_are_422_naming_the_field_before_any_work(store_url, server_log, capfd):
    policy = FakeLM()
    with serving(_service(store_url, policy), server_log) as root:
        cases = [  # (route, body, the field the 422 names)
            ("/v1/users/alice/items", {"items": [{"text": "a\x00b", "title": "t"}]}, "items[0].text"),
            ("/v1/users/alice/items", {"items": [ITEM, {"text": "x", "title": "\x00"}]}, "items[1].title"),
            ("/v1/users/alice/items", {"items": [{**ITEM, "no\x00te": "x"}]}, "items[0] (a key)"),
            ("/v1/users/alice/items", {"task": "git-commits\x00", "items": [ITEM]}, "task"),
            ("/v1/users/alice/items", {"items": [{**ITEM, "id": 2**70}]}, "items[0].id"),
            ("/v1/users/alice/items", {"items": [{**ITEM, "score": float("nan")}]}, "items[0].score"),
            ("/v1/personalize", {"profile": [ITEM], "input": "fix\x00 it"}, "input"),
            ("/v1/personalize", {"profile": [{**ITEM, "title": "a\x00"}], "input": "fix it"}, "profile[0].title"),
            ("/v1/personalize", {"profile": [ITEM], "input": "fix it", "min_round_gain": float("inf")}, "min_round_gain"),
            ("/v1/personalize", {"profile": [ITEM], "input": "fix it", "min_round_gain": 1e300}, "min_round_gain"),
            ("/v1/personalize", '{"profile": [], "input": "fix it", "min_round_gain": 1e999}', "min_round_gain"),
            ("/v1/personalize", {"profile": [ITEM], "input": "fix it", "seed": 2**63}, "seed"),
            ("/v1/personalize", '{"profile": [], "input": "fix it", "seed": 1%s}' % ("0" * 5000), "body"),
            ("/v1/personalize", {"profile": [ITEM], "input": "fix it", "round_size": 10**30}, "round_size"),
            ("/v1/personalize", {"profile": [ITEM], "input": "fix it", "rule": "lcb:" + "1" * 100}, "rule"),
            ("/v1/feedback", {"request_id": "pers-1", "text": "kept\x00"}, "text"),
            ("/v1/feedback", {"request_id": "pers-\x001", "text": "kept"}, "request_id"),
            ("/v1/completions", {"prompt": ["ok", "no\x00"]}, "prompt[1]"),
            ("/v1/completions", '{"prompt": "x", "temperature": 1e999}', "temperature"),
            ("/v1/completions", {"prompt": "x", "top_p": float("nan")}, "top_p"),
            ("/v1/completions", {"prompt": "x", "temperature": float("-inf")}, "temperature"),
            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "\x00"}]}, "messages[0].content"),
        ]
        for path, body, field in cases:
            r = _post(root, path, body)
            assert r.status_code == 422 and field in r.json()["error"]["message"], (path, field, r.text[:500])
        assert policy.batches == []  # refused before any sampling
        for path in ("/v1/users/al%00ice", "/v1/users/alice/keys/a%00b", "/v1/users/alice/keys/" + "a" * 33):
            r = httpx.request("DELETE" if "keys" in path else "GET", root + path)
            assert r.status_code == 422, (path, r.text)
        assert httpx.get(f"{root}/v1/users/alice").status_code == 404  # and nothing was written
        assert httpx.get(f"{root}/v1/users/alice", params={"offset": 2**63 - 1}).status_code == 404
    _no_traceback(server_log, capfd)


@pytest.mark.parametrize("rule", ["lcb:inf", "lcb:nan", "ucb:Infinity", "lcb:-inf", "ucb:1e999", "ucb:-nan", "soft:inf"])
def test_a_rule_with_a_non_finite_parameter_is_422_naming_the_rule(tmp_path, rule, server_log, capfd):
    policy = FakeLM()
    with serving(_service(f"sqlite:///{tmp_path / 'p.db'}", policy, rm="default:user-prob"), server_log) as root:
        r = _post(root, "/v1/personalize", {"profile": [ITEM], "input": "fix it", "rule": rule})
        ok = _post(root, "/v1/personalize", {"profile": [ITEM], "input": "fix it", "rule": "lcb:1.5", "n": 2})
    assert r.status_code == 422 and repr(rule) in r.json()["detail"], r.text
    assert ok.status_code == 200 and policy.batches  # a finite kappa is served
    _no_traceback(server_log, capfd)


def test_deep_json_and_offsets_past_64_bits_are_422(store_url, server_log, capfd):
    with serving(_service(store_url), server_log) as root:
        assert _post(root, "/v1/users/alice/items", {"items": [ITEM, ITEM]}).status_code == 200
        for depth in (20, 300, 900, 20_000):  # the last is past what Python's JSON parser recurses to
            nested = "[" * depth + "]" * depth
            for path, body in [("/v1/personalize", '{"input": "x", "profile": %s}' % nested),
                               ("/v1/users/alice/items", '{"items": [{"text": %s}]}' % nested),
                               ("/v1/completions", '{"prompt": "x", "logit_bias": {"a": %s}}' % nested),
                               ("/v1/personalize", nested)]:
                r = _post(root, path, body)
                assert r.status_code == 422 and "nested" in r.json()["error"]["message"], (depth, path, r.text[:300])
                assert len(r.content) < MAX_ERROR_BYTES
        for offset in (2**63, 2**64, 10**30, -1):
            r = httpx.get(f"{root}/v1/users/alice", params={"offset": offset})
            assert r.status_code == 422 and "offset" in r.json()["error"]["message"], r.text
        assert httpx.get(f"{root}/v1/users/alice", params={"limit": 2**63}).status_code == 422
        last = httpx.get(f"{root}/v1/users/alice", params={"offset": 2**63 - 1})  # the largest offset: an empty page
        assert last.status_code == 200 and last.json()["items"] == [] and last.json()["size"] == 2
    _no_traceback(server_log, capfd)


def _chunks(total: int, chunk: int = 256 << 10):
    """A body sent chunked (no Content-Length): JSON padded with spaces to ``total`` bytes."""
    head = b'{"input": "x", "profile": []'
    yield head
    left = total - len(head) - 1
    while left > 0:
        yield b" " * min(chunk, left)
        left -= chunk
    yield b"}"


def test_the_body_limit_counts_what_is_received(store_url, server_log, capfd):
    policy = FakeLM()
    with serving(_service(store_url, policy), server_log) as root:
        for path in ("/v1/personalize", "/v1/users/alice/items", "/v1/completions", "/v1/feedback", "/nowhere"):
            for size in (MAX_BODY_BYTES + 1, 5 << 20, 12 << 20):
                chunked = httpx.post(root + path, content=_chunks(size), headers=JSON_HEADERS, timeout=60)
                assert chunked.status_code == 413 and "limit" in chunked.json()["detail"], (path, size, chunked.text)
                assert "content-length" not in chunked.request.headers  # it was sent chunked
            declared = httpx.post(root + path, content=b"{" + b" " * (5 << 20) + b"}", headers=JSON_HEADERS, timeout=60)
            assert declared.status_code == 413 and str(5 << 20 | 2) in declared.json()["detail"]
        under = httpx.post(root + "/v1/personalize", content=_chunks(MAX_BODY_BYTES - 1024), headers=JSON_HEADERS,
                           timeout=60)
        assert under.status_code == 200, under.text[:300]  # a chunked body under the limit is read whole and served
        assert httpx.get(f"{root}/health").status_code == 200
    assert not server_log.tracebacks()


def test_a_422_never_echoes_the_whole_body(tmp_path, server_log, capfd):
    big = "x" * 1_000_000
    with serving(_service(f"sqlite:///{tmp_path / 'p.db'}"), server_log) as root:
        cases = [
            {"input": big + "\x00", "profile": [ITEM] * 500},  # a body-level error: its input is the whole body
            {"input": big, "profile": {"not": "a list", "big": big}},
            {"input": "x", "profile": {f"k{i}": ["y" * 300] * 8 for i in range(8)}},  # wide, two levels
            {"input": "x", "profile": [ITEM], "y" * 100_000: 1},  # an unknown field with a long name
            {"prompt": [1] * 20_000},  # 20,000 errors
            {"prompt": "x", "stop": [big[:300_000]] * 9},
        ]
        for i, body in enumerate(cases):
            path = "/v1/completions" if "prompt" in body else "/v1/personalize"
            r = _post(root, path, body)
            assert r.status_code == 422 and len(r.content) < MAX_ERROR_BYTES, (i, r.status_code, len(r.content))
            assert len(r.json()["detail"]) <= MAX_ERRORS if isinstance(r.json()["detail"], list) else True
            assert "cut" in r.text or "more" in r.text, (i, r.text[:400])
        many = _post(root, "/v1/completions", {"prompt": [1] * 20_000}).json()
        assert len(many["detail"]) == MAX_ERRORS and "19991 more errors" in many["error"]["message"]  # str, then each item
        task = _post(root, "/v1/users/alice/items", {"task": big, "items": [ITEM]})
        assert task.status_code == 422 and len(task.content) < MAX_ERROR_BYTES and "cut" in task.text
    _no_traceback(server_log, capfd)


class Broken(FakeLM):
    """A served policy with a bug: its error names a path of the server."""

    def complete_many(self, prompts, n, seeds):
        raise RuntimeError("decoder crashed reading /srv/secret/model.bin")


def test_an_unexpected_error_is_a_json_500_with_a_request_id_and_the_traceback_only_in_the_log(tmp_path, server_log):
    with serving(_service(f"sqlite:///{tmp_path / 'p.db'}", Broken()), server_log) as root:
        answers = [_post(root, "/v1/completions", {"prompt": "x"}),
                   _post(root, "/v1/personalize", {"profile": [ITEM], "input": "fix it", "n": 2})]
        others = [httpx.get(f"{root}/health"), httpx.get(f"{root}/nowhere"), _post(root, "/v1/completions", {"n": 0}),
                  httpx.post(f"{root}/v1/completions", content=b"{" + b" " * (5 << 20) + b"}", headers=JSON_HEADERS)]
    for r in answers:
        rid = r.headers["x-request-id"]
        assert r.status_code == 500 and r.json()["request_id"] == rid and rid in r.json()["error"]["message"]
        assert "secret" not in r.text and "Traceback" not in r.text and "RuntimeError" not in r.text
        logged = [x for x in server_log.records if rid in x.getMessage()]
        assert logged and logged[0].exc_info and "secret" in logging.Formatter().format(logged[0])
    ids = [r.headers.get("x-request-id") for r in answers + others]
    assert all(ids) and len(set(ids)) == len(ids)  # every answer, whatever its status, carries its own id


def test_a_store_failure_answers_a_generic_reason_and_logs_the_drivers(store_url, server_log, capfd, monkeypatch):
    store = ProfileStore(store_url)
    driver = 'connection to server on socket "/run/postgresql/.s.PGSQL.5432" failed: host db.internal'

    def down(*_args, **_kwargs):
        raise OperationalError("SELECT", {}, Exception(driver))

    with serving(_service(store), server_log) as root:
        assert _post(root, "/v1/users/alice/items", {"items": [ITEM]}).status_code == 200
        for method in ("size", "profile", "add_items", "read_profile"):
            monkeypatch.setattr(store, method, down)
        answers = [httpx.get(f"{root}/v1/users/alice"), _post(root, "/v1/users/alice/items", {"items": [ITEM]}),
                   _post(root, "/v1/personalize", {"user_id": "bob", "input": "fix it", "n": 2})]
        monkeypatch.undo()
        assert httpx.get(f"{root}/v1/users/alice").json()["size"] == 1  # reachable again: served as before
    for r in answers:
        rid = r.headers["x-request-id"]
        assert r.status_code == 503 and r.json()["request_id"] == rid, r.text
        assert "socket" not in r.text and "/run" not in r.text and "db.internal" not in r.text
        assert any(rid in x.getMessage() and "db.internal" in x.getMessage() for x in server_log.records)
    _no_traceback(server_log, capfd)


def test_docs_need_the_key_and_an_open_server_warns_or_refuses(store_url, caplog, server_log, capfd):
    with serving(_service(store_url, admin_key="adm"), server_log) as root:
        for path in ("/docs", "/redoc", "/openapi.json"):
            assert httpx.get(root + path).status_code == 401, path
            assert httpx.get(root + path, headers={"Authorization": "Bearer nope"}).status_code == 401, path
            assert httpx.get(root + path, headers={"Authorization": "Bearer adm"}).status_code == 200, path
        assert httpx.get(root + "/health").status_code == 200
        paths = httpx.get(root + "/openapi.json", headers={"Authorization": "Bearer adm"}).json()["paths"]
        assert "/v1/personalize" in paths and "/docs" not in paths
        key = httpx.post(root + "/v1/users/alice/keys", headers={"Authorization": "Bearer adm"}).json()["key"]
        assert httpx.get(root + "/docs", headers={"Authorization": f"Bearer {key}"}).status_code == 200  # any live key
    with pytest.raises(ConfigError, match=r"holds issued API keys \(1\).*--open \(allow_open=True\)"):
        _service(store_url)
    with caplog.at_level(logging.WARNING, logger="ttpkit.serve"):
        _service(store_url, allow_open=True)
    warned = [r.getMessage() for r in caplog.records if r.name == "ttpkit.serve"]
    assert len(warned) == 1 and "every route" in warned[0] and "issued keys (1) are ignored" in warned[0]
    _no_traceback(server_log, capfd)


def test_an_open_server_over_a_store_without_keys_warns_once(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="ttpkit.serve"):
        app = _service(f"sqlite:///{tmp_path / 'p.db'}")
        with live(app) as root:
            assert httpx.get(root + "/docs").status_code == 200 and httpx.get(root + "/v1/models").status_code == 200
    warned = [r.getMessage() for r in caplog.records if r.name == "ttpkit.serve"]
    assert len(warned) == 1 and "TTPKIT_API_KEY is not set: every route" in warned[0]


def test_serve_refuses_to_start_open_over_issued_keys_in_one_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from ttpkit.cli import app

    db = f"sqlite:///{tmp_path / 'p.db'}"
    ProfileStore(db).issue_key("alice")
    monkeypatch.delenv("TTPKIT_API_KEY", raising=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    res = CliRunner().invoke(app, ["serve", "--db", db, "--port", str(port)])
    assert res.exit_code == 2 and "--open" in res.output and "issued API keys (1)" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1


def test_the_answer_names_the_reward_model_not_its_path(tmp_path, server_log):
    with serving(_service(f"sqlite:///{tmp_path / 'p.db'}"), server_log) as root:
        answer = _post(root, "/v1/personalize", {"profile": [ITEM], "input": "fix it", "n": 2}).json()
        refused = _post(root, "/v1/personalize", {"profile": [ITEM], "input": "fix it", "rule": "lcb:1"}).json()
    assert answer["rm"] == "default"
    assert "default" in refused["detail"] and "/" not in refused["detail"]  # the rule needs a probabilistic RM
    assert rm_name("/srv/models/my-rm") == "my-rm" and rm_name("default:user-prob") == "default:user-prob"


def test_a_key_in_the_url_is_refused_and_never_reaches_the_access_log(tmp_path, server_log, capfd):
    with serving(_service(f"sqlite:///{tmp_path / 'p.db'}", admin_key="adm"), server_log) as root:
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)  # live() runs uvicorn quiet
        secret = "ttpk_" + "s3cr3t" * 6
        for query in ({"api_key": secret}, {"key": secret}, {"API_KEY": secret}, {"token": secret, "offset": 1},
                      {"access_token": secret}):
            r = httpx.get(f"{root}/v1/users/alice", params=query)
            assert r.status_code == 401 and "Authorization" in r.json()["detail"] and secret not in r.text, r.text
        posted = httpx.post(f"{root}/v1/completions?key={secret}", json={"prompt": "x"})
        assert posted.status_code == 401
        ok = httpx.get(f"{root}/v1/users/alice", params={"offset": 1}, headers={"Authorization": "Bearer adm"})
        assert ok.status_code == 404  # a keyed request with a plain query is served as before
    access = [r.getMessage() for r in server_log.records if r.name == "uvicorn.access"]
    assert len(access) >= 7 and any("[redacted]" in line for line in access)
    assert secret not in server_log.text() and secret not in capfd.readouterr().err
    _no_traceback(server_log, capfd)


def _series(text: str) -> set[tuple]:
    """The request metrics' label sets (a histogram's buckets, sum and count are one series here)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {(fam.name, tuple(sorted((k, v) for k, v in s.labels.items() if k != "le")))
            for fam in text_string_to_metric_families(text)
            if fam.name.startswith("ttpkit_request") and not fam.name.endswith("_created")
            for s in fam.samples}


def test_metrics_labels_come_from_a_closed_set(tmp_path, server_log, capfd):
    rng = random.Random(0)
    admin = {"Authorization": "Bearer adm"}
    with serving(_service(f"sqlite:///{tmp_path / 'p.db'}", admin_key="adm"), server_log) as root:
        httpx.get(f"{root}/nowhere")  # the series an unknown path adds, once
        before = _series(httpx.get(f"{root}/metrics", headers=admin).text)
        with httpx.Client(timeout=30) as client:
            for i in range(200):
                method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 12)))
                path = "/" + "/".join("".join(rng.choices(string.ascii_lowercase + string.digits, k=6))
                                      for _ in range(rng.randint(1, 4)))
                if i % 4 == 0:
                    path = f"/v1/users/u{i}"  # a real route, with a method it does not have and no key
                client.request(method, root + path)
        after = _series(httpx.get(f"{root}/metrics", headers=admin).text)
    added = after - before
    assert len(added) <= 8, "\n".join(map(str, sorted(added)))  # a few (route, method="other", status) series, not 200
    labels = [dict(s[1]) for s in after]
    assert {x["method"] for x in labels if "method" in x} <= {"GET", "other"}, sorted(added)
    assert {x["route"] for x in labels} <= {"unmatched", "/metrics", "/v1/users/{user_id}"}, sorted(added)
    _no_traceback(server_log, capfd)
