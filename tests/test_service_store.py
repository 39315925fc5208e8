"""The profile store (ttpkit.serve._store) on SQLite and on a real PostgreSQL server that the test starts."""

from __future__ import annotations

import threading

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
