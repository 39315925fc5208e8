"""Several server processes on one store: replicas on PostgreSQL, one server per SQLite file, ``GET /ready``.

Two replicas are two independent services (each its own engine, item lock and
profile cache) under two uvicorn servers on one PostgreSQL database, as two
``ttpkit serve`` processes behind a load balancer would be.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from sqlalchemy import create_engine

from ttpkit.online import personalize
from ttpkit.serve import ProfileStore, StoreError, create_service

from conftest import FakeEncoder, FakeLM, items_of, live

ADMIN = {"Authorization": "Bearer adm"}
WRITERS, WRITES = 4, 8  # writers per replica, one-item writes each


def _replica(url: str):
    return create_service(FakeLM(), url, encoder=FakeEncoder(), admin_key="adm", log_requests=True, batch_window_ms=1.0)


@pytest.fixture
def replicas(store_url):
    """Two replicas on one fresh PostgreSQL database: ``(root_a, root_b, url)``."""
    a, b = _replica(store_url), _replica(store_url)
    with live(a) as root_a, live(b) as root_b:
        yield root_a, root_b, store_url
    a.state.store.close()
    b.state.store.close()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_two_replicas_number_every_write_once_in_order(replicas):
    root_a, root_b, url = replicas

    def writer(who: tuple[str, int]) -> list[int]:
        root, w = who
        with httpx.Client(base_url=root, headers=ADMIN, timeout=30) as http:
            sizes = []
            for k in range(WRITES):
                r = http.post("/v1/users/shared/items", json={"items": [{"id": f"{w}-{k}", "text": f"w{w} k{k}", "title": "t"}]})
                assert r.status_code == 200, (root, r.status_code, r.text)
                sizes.append(r.json()["size"])
            return sizes

    jobs = [(root, 2 * w + j) for w in range(WRITERS) for j, root in enumerate((root_a, root_b))]
    with ThreadPoolExecutor(len(jobs)) as pool:
        sizes = [s for got in pool.map(writer, jobs) for s in got]
    total = len(jobs) * WRITES
    assert sorted(sizes) == list(range(1, total + 1))  # each write numbered once, no position twice
    ids = [i["id"] for i in ProfileStore(url).profile("shared")]
    assert sorted(ids) == sorted(f"{w}-{k}" for _, w in jobs for k in range(WRITES))  # every acknowledged item, once
    for _, w in jobs:  # each writer's items in the order it wrote them
        mine = [i for i in ids if i.startswith(f"{w}-")]
        assert mine == [f"{w}-{k}" for k in range(WRITES)]


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_each_replica_serves_the_others_last_write_keys_and_feedback(replicas, sample):
    root_a, root_b, _ = replicas
    q, more = sample.queries[0], sample.queries[5]
    ask = {"user_id": "dana", "input": q.source, "n": 3, "seed": 4}

    def want(items):
        return [c.text for c in personalize(items, q.source, n=3, seed=4, policy=FakeLM(4), user_id="dana",
                                            encoder=FakeEncoder()).candidates]

    with httpx.Client(base_url=root_a, headers=ADMIN, timeout=60) as a, httpx.Client(base_url=root_b, headers=ADMIN, timeout=60) as b:
        a.post("/v1/users/dana/items", json={"items": items_of(q)})
        assert [c["text"] for c in b.post("/v1/personalize", json=ask).json()["candidates"]] == want(items_of(q))
        assert [c["text"] for c in a.post("/v1/personalize", json=ask).json()["candidates"]] == want(items_of(q))  # both cached
        b.post("/v1/users/dana/items", json={"items": items_of(more)[:3]})
        answer = a.post("/v1/personalize", json=ask).json()  # A serves B's write
        assert [c["text"] for c in answer["candidates"]] == want(items_of(q) + items_of(more)[:3])
        assert b.post("/v1/feedback", json={"request_id": answer["request_id"], "text": "kept"}).status_code == 200
        key = a.post("/v1/users/dana/keys").json()
        mine = {"Authorization": f"Bearer {key['key']}"}
        assert b.get("/v1/users/dana", headers=mine).status_code == 200
        assert b.delete(f"/v1/users/dana/keys/{key['key_id']}").status_code == 200
        assert a.get("/v1/users/dana", headers=mine).status_code == 401  # revoked on B, refused on A at once
        assert b.delete("/v1/users/dana").status_code == 200
        assert a.post("/v1/personalize", json=ask).status_code == 404  # A's cached profile is not served
        assert a.get("/v1/users/dana").status_code == 404


def test_ready_answers_while_the_store_does_and_names_no_host(store_url):
    app = _replica(store_url)
    with live(app) as root:
        assert httpx.get(f"{root}/ready").json() == {"status": "ready"}  # open, like /health
        store = app.state.store
        socket_dir = "/nonexistent-ttpkit-socket"
        bad = ("postgresql+psycopg://nobody@/nodb?host=" + socket_dir if store.dialect == "postgresql"
               else f"sqlite:///{socket_dir}/p.db")
        good, store.engine = store.engine, create_engine(bad)
        r = httpx.get(f"{root}/ready")
        assert r.status_code == 503 and "does not answer" in r.json()["detail"] and socket_dir not in r.text
        store.engine = good
        assert httpx.get(f"{root}/ready").status_code == 200
    app.state.store.close()


def test_a_second_server_on_one_sqlite_file_is_refused_naming_it(tmp_path):
    from typer.testing import CliRunner

    from ttpkit.cli import app

    db = tmp_path / "held.db"
    holder = subprocess.Popen(  # another process that serves the file (it claims it as ttpkit serve does)
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys
            from ttpkit.serve import ProfileStore
            store = ProfileStore("sqlite:///{db}")
            store.claim()
            print("held", flush=True)
            sys.stdin.read()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match=f"{db}: another ttpkit serve process holds this SQLite store"):
            ProfileStore(f"sqlite:///{db}").claim()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        res = CliRunner().invoke(app, ["serve", "--db", f"sqlite:///{db}", "--port", str(port)])
        assert res.exit_code == 2 and str(db) in res.output and "another ttpkit serve" in res.output, res.output
        assert len(ProfileStore(f"sqlite:///{db}").profile("anyone")) == 0  # others (export-pool) still read it
    finally:
        holder.communicate("", timeout=30)
    second = ProfileStore(f"sqlite:///{db}")
    second.claim()  # the holder's lock went with its process
    second.close()
