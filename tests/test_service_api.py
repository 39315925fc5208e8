"""The service's routes (ttpkit.serve._users, _auth, _personalize) through FastAPI's TestClient and a real uvicorn server."""

from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from ttpkit import retrieval
from ttpkit.data import get_task
from ttpkit.online import personalize
from ttpkit.serve import create_service
from ttpkit.serve._users import Limits

from conftest import FakeEncoder, FakeLM, items_of, live

TASK = get_task("git-commits")


class CachingEncoder(FakeEncoder):
    """FakeEncoder with the real encoder's content-keyed cache, to see what forgetting a user drops."""

    def __init__(self, layers=None):  # the bundled default RM's depth: all layers
        super().__init__(layers)
        self.cache = {}

    def _cache_key(self, text):
        return f"k:{text}"

    def encode(self, texts):
        out = super().encode(texts)
        for t, v in zip(texts, out):
            self.cache[self._cache_key(t)] = v
        return out

    def forget(self, texts):
        return sum(self.cache.pop(self._cache_key(t), None) is not None for t in texts)


def make_client(tmp_path, **kw) -> TestClient:
    kw.setdefault("encoder", FakeEncoder())
    kw.setdefault("admin_key", "")
    app = create_service(FakeLM(), f"sqlite:///{tmp_path / 'profiles.db'}", batch_window_ms=1.0, **kw)
    return TestClient(app)


def test_profile_write_read_page_and_reasons(tmp_path, sample):
    client = make_client(tmp_path, limits=Limits(max_profile_items=6, max_item_chars=5000))
    items = items_of(sample.queries[0])[:4]
    r = client.post("/v1/users/alice/items", json={"task": "git-commits", "items": items})
    assert r.status_code == 200 and r.json() == {"user_id": "alice", "added": 4, "size": 4}
    page = client.get("/v1/users/alice", params={"offset": 1, "limit": 2}).json()
    assert page["size"] == 4 and page["items"] == items[1:3]
    bad = client.post("/v1/users/alice/items", json={"items": [{"text": "no subject"}]})
    assert bad.status_code == 422 and "profile item #0 has no field 'title'" in bad.json()["detail"]
    long = client.post("/v1/users/alice/items", json={"items": [{"text": "x" * 5001, "title": "t"}]})
    assert long.status_code == 422 and "the limit is 5000" in long.json()["detail"]
    full = client.post("/v1/users/alice/items", json={"items": items[:3]})
    assert full.status_code == 413 and "would hold 7 profile items; the limit is 6" in full.json()["detail"]
    assert client.post("/v1/users/alice/items", json={"task": "nope", "items": items}).status_code == 422
    assert "known tasks" in client.post("/v1/users/alice/items", json={"task": "nope", "items": items}).json()["detail"]
    assert client.post("/v1/users/bad%20id/items", json={"items": items}).status_code == 422
    assert client.get("/v1/users/nobody").status_code == 404
    assert client.get("/v1/users/alice", params={"limit": 5000}).status_code == 422
    assert client.get("/v1/users/alice").json()["size"] == 4  # the refused writes added nothing


@pytest.mark.parametrize("seed, extra", [(0, {}), (3, {"adaptive": True, "max_n": 12, "min_round_gain": 0.0})])
def test_personalize_answers_what_the_library_answers_for_the_seed(tmp_path, sample, seed, extra):
    client = make_client(tmp_path)
    q = sample.queries[1]
    client.post("/v1/users/alice/items", json={"items": items_of(q)})
    body = {"user_id": "alice", "input": q.source, "n": 6, "seed": seed, **extra}
    got = client.post("/v1/personalize", json=body)
    assert got.status_code == 200, got.text
    got = got.json()
    want = personalize(items_of(q), q.source, task="git-commits", n=6, seed=seed, policy=FakeLM(seed), user_id="alice",
                       encoder=FakeEncoder(), **extra)
    assert [c["text"] for c in got["candidates"]] == [c.text for c in want.candidates]
    assert np.allclose([c["score"] for c in got["candidates"]], [c.score for c in want.candidates])
    assert got["text"] == want.text and got["chosen"] == want.chosen and got["rounds"] == want.rounds
    assert got["expected"]["gain"] == pytest.approx(want.expected.gain) and got["expected"]["n"] == want.n
    assert set(got["timings"]) == {"retrieval", "sampling", "scoring", "total"} and got["request_id"].startswith("pers-")
    inline = client.post("/v1/personalize", json={**body, "user_id": None, "profile": items_of(q)}).json()
    ref = personalize(items_of(q), q.source, n=6, seed=seed, policy=FakeLM(seed), encoder=FakeEncoder(), **extra)
    assert inline["text"] == ref.text and inline["user_id"] == ref.user_id


def test_a_write_invalidates_the_users_cached_profile(tmp_path, sample):
    client = make_client(tmp_path)
    q = sample.queries[2]
    items = items_of(q)
    client.post("/v1/users/bob/items", json={"items": items[:2]})
    first = client.post("/v1/personalize", json={"user_id": "bob", "input": q.source, "n": 4}).json()
    profiles = client.app.state.personalizer.profiles
    assert len(profiles.items("bob", TASK)) == 2
    client.post("/v1/users/bob/items", json={"items": items[2:]})
    assert len(profiles.items("bob", TASK)) == len(items)  # read again from the store
    second = client.post("/v1/personalize", json={"user_id": "bob", "input": q.source, "n": 4}).json()
    want = personalize(items, q.source, n=4, policy=FakeLM(), user_id="bob", encoder=FakeEncoder())
    assert [c["text"] for c in second["candidates"]] == [c.text for c in want.candidates]
    assert first["candidates"] != second["candidates"]


def test_bad_personalize_requests_get_a_4xx_with_a_reason(tmp_path, sample):
    client = make_client(tmp_path, rm="default:user-pairwise")  # deterministic, for the lcb case (the default is user-prob)
    client.post("/v1/users/alice/items", json={"items": items_of(sample.queries[0])})
    ok = {"user_id": "alice", "input": "fix the parser", "n": 2}
    cases = [
        ({**ok, "profile": []}, 422, "exactly one of user_id"),
        ({"input": "x"}, 422, "exactly one of user_id"),
        ({**ok, "n": 65}, 422, "at most 64"),
        ({**ok, "n": 0}, 422, "greater than or equal to 1"),
        ({**ok, "rule": "soft:1"}, 422, "picks one answer"),
        ({**ok, "rule": "lcb:1"}, 422, "needs a probabilistic RM"),
        ({**ok, "rule": "best"}, 422, "rule"),
        ({**ok, "task": "nope"}, 422, "known tasks"),
        ({**ok, "input": ""}, 422, "at least 1 character"),
        ({**ok, "input": "x" * 20_001}, 422, "the limit is 20000"),
        ({**ok, "temperature": 2}, 422, "Extra inputs"),
        ({**ok, "user_id": "nobody"}, 404, "no user 'nobody'"),
        ({"profile": [{"text": "a"}], "input": "x"}, 422, "no field 'title'"),
    ]
    for body, status, reason in cases:
        r = client.post("/v1/personalize", json=body)
        assert r.status_code == status and reason in r.text, (body, r.status_code, r.text)
    assert client.post("/v1/personalize", content=b"{", headers={"content-type": "application/json"}).status_code == 422


def test_feedback_needs_a_logged_request(tmp_path, sample):
    client = make_client(tmp_path, log_requests=True)
    q = sample.queries[0]
    client.post("/v1/users/alice/items", json={"items": items_of(q)})
    rid = client.post("/v1/personalize", json={"user_id": "alice", "input": q.source, "n": 3}).json()["request_id"]
    assert client.post("/v1/feedback", json={"request_id": rid, "text": q.reference or "final"}).json()["recorded"]
    (logged,) = client.app.state.store.logged()
    assert logged.id == rid and len(logged.candidates) == 3 and logged.feedback
    miss = client.post("/v1/feedback", json={"request_id": "pers-nope", "text": "x"})
    assert miss.status_code == 404 and "--log-requests" in miss.json()["detail"]
    assert client.post("/v1/feedback", json={"request_id": rid, "text": ""}).status_code == 422


def test_forget_leaves_nothing_of_the_user(tmp_path, sample):
    enc = CachingEncoder()
    client = make_client(tmp_path, log_requests=True, encoder=enc)
    store = client.app.state.store
    theirs, others = items_of(sample.queries[0]), items_of(sample.queries[3])
    for user, items in (("alice", theirs), ("bob", others)):
        client.post(f"/v1/users/{user}/items", json={"items": items})
        client.post(f"/v1/users/{user}/keys")
        rid = client.post("/v1/personalize", json={"user_id": user, "input": items[0]["text"], "n": 3}).json()["request_id"]
        client.post("/v1/feedback", json={"request_id": rid, "text": "final words"})
    assert retrieval._index.cache_info().currsize > 0 and any(store.rows_of("alice").values())
    gone = client.delete("/v1/users/alice")
    assert gone.status_code == 200 and gone.json()["deleted"]["items"] == len(theirs)
    bobs = store.rows_of("bob")  # "profiles" holds only profiles sent inline: none here
    assert not any(store.rows_of("alice").values()) and all(n for t, n in bobs.items() if t != "profiles")
    assert retrieval._index.cache_info().currsize == 0  # no BM25 index over her items survives
    assert ("alice", "git-commits") not in client.app.state.personalizer.profiles._cache
    only_hers = {str(v) for i in theirs for v in i.values()} - {str(v) for i in others for v in i.values()}
    assert only_hers and not any(enc._cache_key(t) in enc.cache for t in only_hers)
    assert any(enc._cache_key(o["text"]) in enc.cache for o in others)  # bob's embeddings stay
    assert client.get("/v1/users/alice").status_code == 404 and client.delete("/v1/users/alice").status_code == 404


def test_keys_admin_own_user_other_user_no_key_and_revoked(tmp_path, sample):
    client = make_client(tmp_path, admin_key="admin-secret")
    admin = {"Authorization": "Bearer admin-secret"}
    items = items_of(sample.queries[0])
    assert client.get("/health").status_code == 200  # the one open route
    assert client.post("/v1/users/alice/items", json={"items": items}).status_code == 401
    assert client.get("/v1/models").status_code == 401 and client.get("/metrics").status_code == 401
    assert client.get("/v1/users/alice", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/v1/users/alice", headers={"Authorization": "Basic admin-secret"}).status_code == 401
    for user in ("alice", "bob"):
        assert client.post(f"/v1/users/{user}/items", json={"items": items}, headers=admin).status_code == 200
    issued = client.post("/v1/users/alice/keys", headers=admin)
    assert issued.status_code == 201
    key_id, key = issued.json()["key_id"], issued.json()["key"]
    mine = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/users/alice", headers=mine).status_code == 200
    assert client.post("/v1/personalize", json={"user_id": "alice", "input": "fix it", "n": 2}, headers=mine).status_code == 200
    for method, url, body in [("get", "/v1/users/bob", None), ("post", "/v1/users/bob/items", {"items": items}),
                              ("delete", "/v1/users/bob", None), ("post", "/v1/personalize", {"user_id": "bob", "input": "x"})]:
        r = client.request(method, url, json=body, headers=mine)
        assert r.status_code == 403 and "may not act for 'bob'" in r.json()["detail"], (method, url)
    assert client.post("/v1/users/alice/keys", headers=mine).status_code == 403  # only the admin issues keys
    assert key not in repr(client.get("/v1/users/alice/keys", headers=admin).json())
    assert client.delete(f"/v1/users/alice/keys/{key_id}", headers=admin).status_code == 200
    assert client.get("/v1/users/alice", headers=mine).status_code == 401  # at once
    assert client.get("/v1/users/bob", headers=admin).status_code == 200


def test_the_feedback_loop_log_feedback_export_then_train_rm(tmp_path, sample):
    from typer.testing import CliRunner

    from ttpkit import stages
    from ttpkit.cli import app
    from ttpkit.pool import ROUGEL, read_pool
    from ttpkit.reward import RMConfig
    from ttpkit.utility import rouge

    client = make_client(tmp_path, log_requests=True)
    for q in sample.queries:  # each query's user writes their profile, asks, and keeps the real subject line
        client.post(f"/v1/users/{q.user_id}/items", json={"items": items_of(q)})
        rid = client.post("/v1/personalize", json={"user_id": q.user_id, "input": q.source, "n": 4}).json()["request_id"]
        assert client.post("/v1/feedback", json={"request_id": rid, "text": q.reference}).status_code == 200
    db, out = f"sqlite:///{tmp_path / 'profiles.db'}", tmp_path / "pool.parquet"
    res = CliRunner().invoke(app, ["export-pool", "--db", db, "--out", str(out)])
    assert res.exit_code == 0, res.output
    pool = read_pool(out, require=[ROUGEL])
    assert len(pool) == 4 * len(sample.queries) and pool["query_id"].nunique() == len(sample.queries)
    data = stages.dataset_for_pool(tmp_path / "pool-data", pool)
    first = pool.iloc[0]
    assert first[ROUGEL] == pytest.approx(rouge(first["text"], data.by_id()[first["query_id"]].reference)[ROUGEL])
    assert {q.source for q in data.queries} == {q.source for q in sample.queries}  # the input, without the instruction
    rm = stages.train_rm(RMConfig(variant="user-pairwise", max_epochs=5, seed=0), pool, data, encoder=FakeEncoder(),
                         out=tmp_path / "rm")
    assert (tmp_path / "rm" / "model.safetensors").exists() and rm.tasks_ == ("git-commits",)
    empty = CliRunner().invoke(app, ["export-pool", "--db", f"sqlite:///{tmp_path / 'other.db'}", "--out", str(out)])
    assert empty.exit_code == 2 and "no logged request" in empty.output


@pytest.fixture
def live_server(tmp_path):
    """The service under a real uvicorn on a free 127.0.0.1 port (admin key 'adm'), stopped after the test."""
    app = create_service(FakeLM(), f"sqlite:///{tmp_path / 'live.db'}", encoder=FakeEncoder(), admin_key="adm",
                         log_requests=True, batch_window_ms=1.0)
    with live(app) as root:
        yield root


def test_a_real_server_serves_every_endpoint_through_the_client(live_server, sample):
    from ttpkit.client import Client, ServiceError

    q = sample.queries[0]
    with Client(live_server, api_key="adm") as admin:
        assert admin.health() == {"status": "ok"} and admin.models()["data"]
        assert admin.add_items("alice", items_of(q))["size"] == len(q.profile)
        assert admin.profile("alice", offset=0, limit=2)["items"] == items_of(q)[:2]
        issued = admin.issue_key("alice")
        assert [k["id"] for k in admin.keys("alice")] == [issued["key_id"]]
        assert len(admin.complete("Subject line:", n=3, seed=1)["choices"]) == 3
        assert admin.chat([{"role": "user", "content": "hi"}], n=2)["choices"]
    with Client(live_server, api_key=issued["key"]) as alice:
        got = alice.personalize(q.source, user_id="alice", n=4, seed=2)
        want = personalize(items_of(q), q.source, n=4, seed=2, policy=FakeLM(2), user_id="alice", encoder=FakeEncoder())
        assert got["text"] == want.text and [c["text"] for c in got["candidates"]] == [c.text for c in want.candidates]
        assert alice.feedback(got["request_id"], q.reference)["recorded"]
        with pytest.raises(ServiceError, match="403: .*may not act for 'bob'"):
            alice.profile("bob")
    with Client(live_server, api_key="adm") as admin:
        assert "ttpkit_requests" in admin.metrics()
        assert admin.revoke_key("alice", issued["key_id"])["revoked"]
        with pytest.raises(ServiceError, match="401"):
            Client(live_server, api_key=issued["key"]).profile("alice")
        assert admin.forget("alice")["deleted"]["feedback"] == 1
    with pytest.raises(ServiceError, match="401: missing API key"):
        Client(live_server).profile("alice")
