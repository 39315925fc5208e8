"""The profile store (ttpkit.serve._store) on SQLite and on a real PostgreSQL server that the test starts."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import text

from ttpkit.serve._store import SCHEMA_VERSION, LoggedRequest, ProfileStore, StoreError, hash_key


def _item(i: int) -> dict:
    return {"id": f"i{i}", "text": f"commit message {i}", "title": f"subject {i}"}


def test_items_append_in_order_and_page(store_url):
    store = ProfileStore(store_url)
    assert store.size("alice") is None
    assert store.add_items("alice", [_item(0), _item(1)]) == 2
    assert store.add_items("alice", [_item(2)]) == 3
    assert store.profile("alice") == [_item(0), _item(1), _item(2)]
    assert store.profile("alice", offset=1, limit=1) == [_item(1)]
    assert store.size("alice") == 3 and store.profile("bob") == []


def test_concurrent_appends_keep_every_item(store_url):
    store = ProfileStore(store_url)
    threads = [threading.Thread(target=store.add_items, args=("u", [_item(i)])) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(p["id"] for p in store.profile("u")) == sorted(f"i{i}" for i in range(8))


def test_keys_store_only_the_hash_and_revoke_at_once(store_url):
    store = ProfileStore(store_url)
    key_id, key = store.issue_key("alice")
    assert store.key_user(key) == "alice" and store.key_user(key + "x") is None
    with store.engine.connect() as c:
        stored = [tuple(r) for r in c.execute(text("SELECT * FROM api_keys"))]
    assert key not in repr(stored) and hash_key(key) in repr(stored)
    assert not store.revoke_key("bob", key_id)  # not bob's key
    assert store.revoke_key("alice", key_id) and store.key_user(key) is None
    assert not store.revoke_key("alice", key_id)  # already revoked
    assert [k["id"] for k in store.keys("alice")] == [key_id] and store.keys("alice")[0]["revoked"] is not None


def _logged(store: ProfileStore, user: str, rid: str) -> None:
    store.log_request(LoggedRequest(rid, user, "git-commits", "fix the parser", (_item(0),),
                                    ({"idx": 0, "text": "parser: fix", "score": 0.5, "std": None},), 0, 3))


def test_feedback_joins_its_logged_request(store_url):
    store = ProfileStore(store_url)
    _logged(store, "alice", "r1")
    _logged(store, "alice", "r2")
    assert store.add_feedback("r1", "parser: fix the crash") and not store.add_feedback("nope", "x")
    got = list(store.logged())
    assert [(r.id, r.feedback) for r in got] == [("r1", "parser: fix the crash")]
    assert got[0].profile == (_item(0),) and got[0].candidates[0]["text"] == "parser: fix" and got[0].seed == 3
    assert {r.id for r in store.logged(with_feedback=False)} == {"r1", "r2"}


def test_forget_leaves_nothing_of_the_user(store_url):
    store = ProfileStore(store_url)
    for user in ("alice", "bob"):
        store.add_items(user, [_item(0), _item(1)])
        store.issue_key(user)
        _logged(store, user, f"r-{user}")
        store.add_feedback(f"r-{user}", "final")
    assert all(store.rows_of("alice").values())
    deleted = store.forget("alice")
    assert deleted == {"feedback": 1, "profiles": 1, "requests": 1, "api_keys": 1, "items": 2, "users": 1}
    assert not any(store.rows_of("alice").values())
    with store.engine.connect() as c:  # nothing anywhere mentions alice
        for table in ("users", "items", "api_keys", "requests", "profiles", "feedback"):
            assert "alice" not in repr(list(c.execute(text(f"SELECT * FROM {table}"))))
    assert store.rows_of("bob") == {"users": 1, "items": 2, "api_keys": 1, "requests": 1, "profiles": 1, "feedback": 1}


def test_a_store_from_a_newer_ttpkit_is_refused_with_both_versions(store_url):
    ProfileStore(store_url).close()
    store = ProfileStore(store_url)  # reopening a current store is fine
    with store.engine.begin() as c:
        c.execute(text("UPDATE meta SET value = :v WHERE key = 'schema_version'"), {"v": str(SCHEMA_VERSION + 1)})
    store.close()
    with pytest.raises(StoreError, match=rf"schema version {SCHEMA_VERSION + 1}.*reads schema version {SCHEMA_VERSION}"):
        ProfileStore(store_url)


def test_sqlite_runs_in_wal_mode(tmp_path):
    store = ProfileStore(f"sqlite:///{tmp_path / 'p.db'}")
    with store.engine.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"


@pytest.mark.parametrize("url, reason", [("nonsense", "not a database URL"), ("mysql://x/y", "sqlite or postgresql"),
                                         ("sqlite:////nonexistent-dir/x/p.db", "cannot open it")])
def test_bad_urls_say_why(url, reason):
    with pytest.raises(StoreError, match=reason):
        ProfileStore(url)


def _schema_1(url: str) -> None:
    """A store as ttpkit's schema 1 wrote it: its DDL, two users, a key, two logged requests (one with feedback)."""
    from sqlalchemy import JSON, Column, Float, ForeignKey, Integer, MetaData, String, Table, Text, create_engine

    from ttpkit.serve._store import _engine_url

    m = MetaData()
    meta = Table("meta", m, Column("key", String(64), primary_key=True), Column("value", Text, nullable=False))
    users = Table("users", m, Column("id", String(200), primary_key=True), Column("created", Float, nullable=False))
    items = Table("items", m, Column("user_id", String(200), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
                  Column("seq", Integer, primary_key=True), Column("fields", JSON, nullable=False))
    keys = Table("api_keys", m, Column("id", String(32), primary_key=True), Column("user_id", String(200), nullable=False, index=True),
                 Column("hash", String(64), nullable=False, unique=True), Column("created", Float, nullable=False),
                 Column("revoked", Float))
    requests = Table("requests", m, Column("id", String(64), primary_key=True),
                     Column("user_id", String(200), nullable=False, index=True), Column("task", String(100), nullable=False),
                     Column("input", Text, nullable=False), Column("profile", JSON, nullable=False),
                     Column("candidates", JSON, nullable=False), Column("chosen", Integer, nullable=False),
                     Column("seed", Integer, nullable=False), Column("created", Float, nullable=False))
    feedback = Table("feedback", m, Column("request_id", String(64), ForeignKey("requests.id", ondelete="CASCADE"), primary_key=True),
                     Column("user_id", String(200), nullable=False, index=True), Column("text", Text, nullable=False),
                     Column("created", Float, nullable=False))
    engine = create_engine(_engine_url(url))
    m.create_all(engine)
    cands = [{"idx": 0, "text": "parser: fix", "score": 0.5, "std": None}]
    with engine.begin() as c:
        c.execute(meta.insert(), [{"key": "schema_version", "value": "1"}, {"key": "written_by", "value": "0.1"}])
        c.execute(users.insert(), [{"id": "alice", "created": 1.0}, {"id": "bob", "created": 2.0}])
        c.execute(items.insert(), [{"user_id": u, "seq": i, "fields": _item(i)} for u in ("alice", "bob") for i in range(3)])
        c.execute(keys.insert().values(id="k1", user_id="alice", hash=hash_key("ttpk_old"), created=1.0))
        c.execute(requests.insert(), [
            {"id": f"r{j}", "user_id": "alice", "task": "git-commits", "input": f"fix {j}", "profile": [_item(0), _item(1)],
             "candidates": cands, "chosen": 0, "seed": 7, "created": 10.0 + j} for j in range(2)])
        c.execute(feedback.insert().values(request_id="r0", user_id="alice", text="parser: fix it", created=11.0))
    engine.dispose()


def test_a_schema_1_store_is_migrated_in_place_when_it_opens(store_url):
    _schema_1(store_url)
    store = ProfileStore(store_url)
    with store.engine.connect() as c:
        assert c.execute(text("SELECT value FROM meta WHERE key = 'schema_version'")).scalar() == str(SCHEMA_VERSION)
        assert c.execute(text("SELECT count(*) FROM profiles")).scalar() == 1  # the two requests' one profile, once
    assert store.profile("alice") == [_item(i) for i in range(3)] and store.size("bob") == 3
    assert store.key_user("ttpk_old") == "alice"
    got = list(store.logged(with_feedback=False))
    assert [(r.id, r.feedback, r.seed, r.profile) for r in got] == [("r0", "parser: fix it", 7, (_item(0), _item(1))),
                                                                    ("r1", None, 7, (_item(0), _item(1)))]
    assert store.add_items("alice", [_item(3)]) == 4 and store.profile("alice")[-1] == _item(3)  # numbering goes on
    big = LoggedRequest("r-big", "alice", "git-commits", "x", (_item(0),), got[0].candidates, 0, 2**63 - 1)
    assert store.log_request(big) and [r.seed for r in store.logged(with_feedback=False) if r.id == "r-big"] == [2**63 - 1]
    store.close()
    assert ProfileStore(store_url).size("alice") == 4  # and it opens again as it is


def test_logged_requests_keep_a_stored_profile_by_its_size_and_an_inline_one_once(store_url):
    store = ProfileStore(store_url)
    store.add_items("alice", [_item(0), _item(1)])
    at_two = store.stamp("alice")
    store.add_items("alice", [_item(2)])
    cands = ({"idx": 0, "text": "parser: fix", "score": 0.5, "std": None},)
    assert store.log_request(LoggedRequest("r1", "alice", "git-commits", "x", (_item(0), _item(1)), cands, 0, 1), at_two)
    for rid in ("r2", "r3"):  # the same inline profile twice: one copy
        assert store.log_request(LoggedRequest(rid, "alice", "git-commits", "x", (_item(9),), cands, 0, 1))
    assert [r.profile for r in store.logged(with_feedback=False)] == [(_item(0), _item(1)), (_item(9),), (_item(9),)]
    assert store.rows_of("alice")["profiles"] == 1
    store.forget("alice")
    store.add_items("alice", [_item(5)])  # a new profile under the same id: the old stamp is not it
    assert not store.log_request(LoggedRequest("r4", "alice", "git-commits", "x", (_item(0),), cands, 0, 1), at_two)
    assert list(store.logged(with_feedback=False)) == []


def test_feedback_is_an_upsert_under_concurrency(store_url):
    store = ProfileStore(store_url)
    _logged(store, "alice", "r1")
    texts = [f"final {i}" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(lambda t: store.add_feedback("r1", t), texts))  # an error in a thread raises here
    (got,) = store.logged()
    assert got.feedback in texts and store.rows_of("alice")["feedback"] == 1
