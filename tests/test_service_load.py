"""The service under concurrent load (a real uvicorn server on a free loopback port, the fast FakeLM).

- The personalize requests of one decode batch are scored in one RM pass
  (:mod:`ttpkit.serve._scoring`), and each gets the scores a solo request gets.
- 50 concurrent clients each write a profile and ask for N=8: no 5xx, every
  write present afterwards, every answer equal to a solo request's.
"""

from __future__ import annotations

import threading
import time

import httpx
from fastapi.testclient import TestClient

from ttpkit.data import get_task
from ttpkit.serve import create_service

from conftest import FakeEncoder, FakeLM, items_of, live

TASK = get_task("git-commits")


def _service(tmp_path, name: str, **kw):
    kw.setdefault("admin_key", "")
    kw.setdefault("rm", "default:user-prob")  # a feature RM: these tests count its encoder passes
    return create_service(FakeLM(), f"sqlite:///{tmp_path / name}", encoder=FakeEncoder(), **kw)


def _count_rm_passes(app) -> list[int]:
    """Wrap the app's loaded RM so that each pass over a pool (``features``: the encoder's batch) appends its rows."""
    model = app.state.personalizer.rm_for(TASK).model
    calls, features = [], model.features

    def counted(pool, by_id, encoder=None):
        calls.append(len(pool))
        return features(pool, by_id, encoder=encoder)

    model.features = counted
    return calls


def _storm(jobs, deadline_s: float) -> list:
    """Run each zero-argument job in its own daemon thread at once; their results, or a failure past the deadline."""
    results: list = [None] * len(jobs)
    go = threading.Barrier(len(jobs))

    def run(i: int) -> None:
        go.wait(timeout=deadline_s)
        try:
            results[i] = jobs[i]()
        except Exception as e:  # noqa: BLE001 - reported by the test
            results[i] = e

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(jobs))]
    end = time.monotonic() + deadline_s
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    stuck = sum(t.is_alive() for t in threads)
    assert not stuck, f"{stuck} of {len(jobs)} clients still running after {deadline_s:.0f} s"
    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, f"{len(errors)} clients failed, the first with {errors[0]!r}"
    return results


def _same_answer(got: dict, solo: dict) -> None:
    keys = ("text", "chosen", "n", "user_id")
    assert {k: got[k] for k in keys} == {k: solo[k] for k in keys}
    assert got["candidates"] == solo["candidates"]  # texts, score means and stds, exactly


def test_one_decode_batch_is_scored_in_one_rm_pass_and_each_request_scores_as_solo(tmp_path, sample):
    # max_batch = the 4 one-prompt requests: the batch decodes as soon as the last arrives (the window is a ceiling)
    app = _service(tmp_path, "batched.db", batch_window_ms=5000, max_batch=4)
    calls, lm = _count_rm_passes(app), app.state.policy
    queries = sample.queries[:4]
    bodies = [{"user_id": f"u{i}", "input": q.source, "n": 4, "seed": 10 + i} for i, q in enumerate(queries)]
    with live(app) as root:
        for b, q in zip(bodies, queries):
            assert httpx.post(f"{root}/v1/users/{b['user_id']}/items", json={"items": items_of(q)}).status_code == 200
        answers = _storm([lambda b=b: httpx.post(f"{root}/v1/personalize", json=b, timeout=30) for b in bodies], 40)
        metrics = httpx.get(f"{root}/metrics").text
    assert [r.status_code for r in answers] == [200] * 4, [r.text for r in answers]
    assert lm.batches == [4] and calls == [16]  # one decode batch, one RM pass over every request's 4 candidates
    assert "ttpkit_score_requests_sum 4.0" in metrics and "ttpkit_score_rows_sum 16.0" in metrics
    solo = TestClient(_service(tmp_path, "solo.db", batch_window_ms=0))
    solo_calls = _count_rm_passes(solo.app)
    for b, q, got in zip(bodies, queries, answers):
        solo.post(f"/v1/users/{b['user_id']}/items", json={"items": items_of(q)})
        _same_answer(got.json(), solo.post("/v1/personalize", json=b).json())
    assert solo_calls == [4] * 4


def test_two_requests_with_one_query_id_in_one_batch_keep_their_own_profiles(tmp_path, sample):
    # alice's key with two inline profiles and one input: one user id and one query id, two profiles
    a, b = sample.queries[0], sample.queries[5]
    bodies = [{"profile": items_of(q), "input": a.source, "n": 3, "seed": 1} for q in (a, b)]
    admin = {"Authorization": "Bearer adm"}
    app = _service(tmp_path, "same.db", batch_window_ms=5000, max_batch=2, admin_key="adm")
    app_solo = _service(tmp_path, "solo.db", batch_window_ms=0, admin_key="adm")
    calls = _count_rm_passes(app)
    with live(app) as root:
        key = httpx.post(f"{root}/v1/users/alice/keys", headers=admin).json()["key"]
        auth = {"Authorization": f"Bearer {key}"}
        answers = _storm([lambda x=x: httpx.post(f"{root}/v1/personalize", json=x, headers=auth, timeout=30)
                          for x in bodies], 40)
    got = [r.json() for r in answers]
    assert calls == [6] and got[0]["user_id"] == got[1]["user_id"] == "alice"
    solo = TestClient(app_solo)
    auth = {"Authorization": f"Bearer {solo.post('/v1/users/alice/keys', headers=admin).json()['key']}"}
    for x, g in zip(bodies, got):
        _same_answer(g, solo.post("/v1/personalize", json=x, headers=auth).json())
    assert got[0]["candidates"] != got[1]["candidates"]


CLIENTS, N = 50, 8


def test_fifty_concurrent_clients_write_then_personalize(tmp_path, sample):
    app = _service(tmp_path, "load.db", batch_window_ms=5, max_batch=16, log_requests=True)
    queries = [sample.queries[i % len(sample.queries)] for i in range(CLIENTS)]
    items = [items_of(q) + [{"id": f"own-{i}", "text": f"client {i} change", "title": f"client {i}: own item"}]
             for i, q in enumerate(queries)]  # every profile differs from every other
    bodies = [{"user_id": f"user-{i}", "input": q.source, "n": N, "seed": 100 + i} for i, q in enumerate(queries)]
    start = time.monotonic()

    def client(i: int) -> tuple[int, httpx.Response]:
        with httpx.Client(base_url=root, timeout=30) as c:
            wrote = c.post(f"/v1/users/user-{i}/items", json={"items": items[i]})
            return wrote.status_code, c.post("/v1/personalize", json=bodies[i])

    with live(app) as root:
        results = _storm([lambda i=i: client(i) for i in range(CLIENTS)], 45)
        statuses = [s for s, _ in results] + [r.status_code for _, r in results]
        assert not [s for s in statuses if s >= 500], statuses  # no 5xx at all
        assert statuses == [200] * (2 * CLIENTS), [r.text for _, r in results if r.status_code != 200][:3]
        with httpx.Client(base_url=root, timeout=30) as c:
            for i in range(CLIENTS):
                page = c.get(f"/v1/users/user-{i}", params={"limit": 1000}).json()
                assert page["size"] == len(items[i]) and page["items"] == items[i], i
            solos = [c.post("/v1/personalize", json=b) for b in bodies]  # after the storm, one at a time
            metrics = c.get("/metrics").text
    for (_, got), solo in zip(results, solos):
        assert solo.status_code == 200
        assert len(got.json()["candidates"]) == N
        _same_answer(got.json(), solo.json())
    assert f"ttpkit_score_requests_sum {2 * CLIENTS}.0" in metrics  # every request scored exactly once
    assert len(list(app.state.store.logged(with_feedback=False))) == 2 * CLIENTS  # concurrent log writes all kept
    assert time.monotonic() - start < 60
