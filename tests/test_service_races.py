"""Races between a profile read and a write or DELETE, on a real uvicorn server over SQLite and PostgreSQL.

Each race runs many times (bounded), so that a timing-dependent bug shows:

- a write racing a DELETE of the same user: no 5xx, and the profile is either
  gone or exactly the write's items (never a mix, never the deleted ones);
- a personalize racing a DELETE: no 5xx; afterwards no row of the user is left
  (its log row is not written, or is deleted), feedback on it is a 404, and a
  personalize from the stored profile is a 404;
- a profile cached by one request is never served after the user's DELETE or
  after a write, including a new profile under the same id.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from ttpkit.online import personalize
from ttpkit.serve import create_service

from conftest import FakeEncoder, FakeLM, items_of, live

ROUNDS = 20
ADMIN = {"Authorization": "Bearer adm"}


@pytest.fixture
def served(store_url):
    """The service (admin key 'adm', requests logged) under uvicorn on ``store_url``: ``(root, store)``."""
    app = create_service(FakeLM(), store_url, encoder=FakeEncoder(), admin_key="adm", log_requests=True,
                         batch_window_ms=1.0)
    with live(app) as root:
        yield root, app.state.store
    app.state.store.close()


def _no_5xx(*responses: httpx.Response) -> None:
    for r in responses:
        assert r.status_code < 500, (r.request.method, r.request.url.path, r.status_code, r.text)


def test_a_write_racing_a_delete_is_never_a_5xx_nor_a_mix(served, sample):
    root, store = served
    old, new = items_of(sample.queries[0])[:3], items_of(sample.queries[1])[:2]
    with httpx.Client(base_url=root, headers=ADMIN, timeout=30) as http, ThreadPoolExecutor(2) as pool:
        for i in range(ROUNDS):
            user = f"w{i}"
            assert http.post(f"/v1/users/{user}/items", json={"items": old}).status_code == 200
            wrote = pool.submit(http.post, f"/v1/users/{user}/items", json={"items": new})
            time.sleep(0.001 * (i % 4))  # the DELETE lands before, during or after the write
            gone = pool.submit(http.delete, f"/v1/users/{user}")
            wrote, gone = wrote.result(), gone.result()
            _no_5xx(wrote, gone)
            assert gone.status_code == 200 and wrote.status_code == 200
            after = http.get(f"/v1/users/{user}", params={"limit": 10})
            if after.status_code == 200:  # the write came after the DELETE: a new profile of its items only
                assert after.json()["items"] == new and after.json()["size"] == len(new) == wrote.json()["size"]
            else:
                assert after.status_code == 404 and wrote.json()["size"] == len(old) + len(new)
            assert store.size(user) == (None if after.status_code == 404 else len(new))


def test_a_personalize_racing_a_delete_leaves_nothing_of_the_user(served, sample):
    root, store = served
    q = sample.queries[2]
    with httpx.Client(base_url=root, headers=ADMIN, timeout=60) as http, ThreadPoolExecutor(2) as pool:
        for i in range(ROUNDS):
            user = f"p{i}"
            assert http.post(f"/v1/users/{user}/items", json={"items": items_of(q)}).status_code == 200
            key = http.post(f"/v1/users/{user}/keys").json()["key"]
            if i % 2:  # a user's key with the profile inline (logged under the user), else the stored profile
                body, headers = {"profile": items_of(q), "input": q.source, "n": 2, "seed": i}, {"Authorization": f"Bearer {key}"}
            else:
                body, headers = {"user_id": user, "input": q.source, "n": 2, "seed": i}, ADMIN
            asked = pool.submit(http.post, "/v1/personalize", json=body, headers=headers)
            time.sleep(0.002 * (i % 5))
            gone = pool.submit(http.delete, f"/v1/users/{user}")
            asked, gone = asked.result(), gone.result()
            _no_5xx(asked, gone)
            assert gone.status_code == 200 and asked.status_code in (200, 401, 404), asked.text
            assert not any(store.rows_of(user).values()), (i, store.rows_of(user))  # no log row survives the DELETE
            if asked.status_code == 200:
                fb = http.post("/v1/feedback", json={"request_id": asked.json()["request_id"], "text": "kept"})
                assert fb.status_code == 404, fb.text
            again = http.post("/v1/personalize", json={"user_id": user, "input": q.source, "n": 2})
            assert again.status_code == 404, again.text
    assert not any(r.user_id.startswith("p") for r in store.logged(with_feedback=False))


def test_a_cached_profile_is_never_served_after_a_delete_or_a_write(served, sample):
    root, _ = served
    q, other = sample.queries[3], sample.queries[4]
    ask = {"user_id": "carol", "input": q.source, "n": 3, "seed": 5}

    def want(items):
        return personalize(items, q.source, n=3, seed=5, policy=FakeLM(5), user_id="carol", encoder=FakeEncoder())

    with httpx.Client(base_url=root, headers=ADMIN, timeout=60) as http:
        http.post("/v1/users/carol/items", json={"items": items_of(q)})
        assert http.post("/v1/personalize", json=ask).json()["text"] == want(items_of(q)).text  # now cached
        assert http.delete("/v1/users/carol").status_code == 200
        assert http.post("/v1/personalize", json=ask).status_code == 404
        http.post("/v1/users/carol/items", json={"items": items_of(other)})  # a new profile under the same id
        got = http.post("/v1/personalize", json=ask).json()
        assert [c["text"] for c in got["candidates"]] == [c.text for c in want(items_of(other)).candidates]
        http.post("/v1/users/carol/items", json={"items": items_of(q)[:2]})  # appended: read on the next request
        got = http.post("/v1/personalize", json=ask).json()
        assert [c["text"] for c in got["candidates"]] == [c.text for c in want(items_of(other) + items_of(q)[:2]).candidates]


def test_the_largest_seed_is_logged_and_concurrent_feedback_is_one_row(served, sample):
    root, store = served
    q = sample.queries[6]
    with httpx.Client(base_url=root, headers=ADMIN, timeout=60) as http, ThreadPoolExecutor(6) as pool:
        http.post("/v1/users/erin/items", json={"items": items_of(q)})
        got = http.post("/v1/personalize", json={"user_id": "erin", "input": q.source, "n": 2, "seed": 2**63 - 1})
        assert got.status_code == 200 and got.json()["logged"], got.text
        rid = got.json()["request_id"]
        texts = [f"kept {i}" for i in range(6)]
        answers = list(pool.map(lambda t: http.post("/v1/feedback", json={"request_id": rid, "text": t}), texts))
    _no_5xx(*answers)
    assert all(a.status_code == 200 for a in answers)
    (logged,) = store.logged()
    assert logged.seed == 2**63 - 1 and logged.feedback in texts and logged.profile == tuple(items_of(q))
