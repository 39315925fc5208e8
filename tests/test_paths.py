"""Full or read-only disks (issue 24, class 7): one line naming the path, the previous file intact, no temporary left.

Tests run as root, which ignores permissions, so a read-only place and a full disk are fault-injected
(an ``OSError`` with ``EROFS`` or ``ENOSPC`` where the write happens); the corpus cases after "class 7"
in tests/bad_inputs/cases.yaml inject them through the real CLI (``TTPKIT_FAULT=write:ENOSPC``).
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pandas as pd
import pytest
from fastapi.testclient import TestClient

from conftest import FakeEncoder, FakeLM
from ttpkit import jsonio
from ttpkit.errors import ConfigError, StorageError
from ttpkit.paths import check_cache_dir, write_atomic
from ttpkit.policy.base import Candidate
from ttpkit.pool import PoolWriter, read_pool, write_pool

GOOD = Path(__file__).parent / "bad_inputs" / "files" / "pool-good.parquet"


def _full(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_cache_root_that_cannot_be_a_directory_is_refused_in_one_line(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("x")
    for root, said in ((tmp_path / "file", "is a file, not a directory"), (tmp_path / "file" / "c", "a parent of it is a file")):
        monkeypatch.setenv("TTPKIT_CACHE_DIR", str(root))
        with pytest.raises(ConfigError, match=f"^TTPKIT_CACHE_DIR {root}: {said}"):
            check_cache_dir()
    monkeypatch.setenv("TTPKIT_CACHE_DIR", str(tmp_path / "new"))
    assert check_cache_dir().is_dir()  # created
    monkeypatch.setenv("TTPKIT_CACHE_DIR", str(tmp_path / "ro" / "cache"))
    real = Path.mkdir

    def read_only(self, *args, **kwargs):
        if "ro" in self.parts:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(ConfigError, match="cannot create it \\(read-only file system\\)"):
        check_cache_dir()


def test_a_full_disk_while_writing_a_pool_file_keeps_the_old_one_and_no_temporary(tmp_path, monkeypatch):
    pool = tmp_path / "p.parquet"
    pool.write_bytes(GOOD.read_bytes())
    before = pool.read_bytes()
    df = read_pool(pool)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", lambda self, path, **kw: (Path(path).write_bytes(b"PAR1 half"), _full()))
    with pytest.raises(StorageError, match=f"^pool {pool}: cannot write it \\(no space left on device\\); the pool on disk is unchanged"):
        write_pool(df.assign(extra=1.0), pool)
    assert pool.read_bytes() == before and _left(tmp_path) == ["p.parquet"]


def test_a_full_disk_while_journaling_cuts_the_journal_back_to_its_whole_records(tmp_path, monkeypatch):
    out = tmp_path / "p.parquet"
    w = PoolWriter(out, fold_every=100)
    w.add([Candidate("a", "u", 0, "first", "p", 0)])
    journal = out.with_name(out.name + ".journal.jsonl")
    size = journal.stat().st_size
    real = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real(fd, bytes(data[:7])) if len(data) > 7 else _full())
    with pytest.raises(StorageError, match=f"pool journal {journal}: cannot write it \\(no space left on device\\); every query"):
        w.add([Candidate("b", "u", 0, "second, longer than seven bytes", "p", 0)])  # 7 bytes land, then the disk is full
    monkeypatch.setattr(os, "write", real)
    assert journal.stat().st_size == size  # no half record
    w.add([Candidate("c", "u", 0, "third", "p", 0)])  # room again: the run resumes
    assert list(read_pool(out)["query_id"]) == ["a", "c"]


def test_a_full_disk_while_rewriting_a_pool_directory_leaves_the_committed_generation(tmp_path, monkeypatch):
    import pyarrow.parquet as pq

    from ttpkit.pool import write_parts

    out = tmp_path / "pool"
    write_parts(read_pool(GOOD), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(pq, "write_table", _full)
    monkeypatch.setattr(pd.DataFrame, "to_parquet", _full)
    with pytest.raises(StorageError, match="pool part .*part-g1-.*: cannot write it \\(no space left on device\\)"):
        write_parts(read_pool(out).assign(extra=1.0), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no g1 part, no temporary, same manifest


def test_json_and_reward_model_files_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from ttpkit.reward._io import save_atomic

    target = jsonio.write_json({"a": 1}, tmp_path / "law.json")
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: (Path.write_bytes(self, b'{"a": '), _full()))
    with pytest.raises(StorageError, match="law.json: cannot write it \\(no space left on device\\); the file on disk is unchanged"):
        jsonio.write_json({"a": 2}, target)
    assert json.loads(target.read_bytes()) == {"a": 1} and _left(tmp_path) == ["law.json"]
    rm = tmp_path / "rm"
    rm.mkdir()
    with pytest.raises(StorageError, match="reward model weights .*model.safetensors: cannot write it \\(no space"):
        save_atomic(rm, [("model.safetensors", lambda p: (p.write_bytes(b"half"), _full()))], {"config": {}})
    assert _left(rm) == []
    assert write_atomic(tmp_path / "ok.txt", lambda p: p.write_bytes(b"ok"), "file").read_bytes() == b"ok"


def test_the_cli_names_the_path_of_any_write_that_fails_where_no_write_site_did(tmp_path, monkeypatch, capsys):
    import typer

    from ttpkit.cli._common import friendly

    monkeypatch.setenv("TTPKIT_CACHE_DIR", str(tmp_path))
    gguf = tmp_path / "gguf" / "m.gguf"

    @friendly
    def command() -> None:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(gguf))  # a cache file written by a library

    with pytest.raises(typer.Exit) as done:
        command()
    err = capsys.readouterr().err
    assert done.value.exit_code == 2 and err.count("\n") == 1
    assert f"error: {gguf}: read-only file system (in ttpkit's cache {tmp_path}; set TTPKIT_CACHE_DIR" in " ".join(err.split())

    @friendly
    def a_bug() -> None:
        raise OSError(errno.ECONNREFUSED, "refused")  # not a disk: still a traceback, never hidden

    with pytest.raises(OSError):
        a_bug()


def test_serve_answers_507_with_the_reason_when_its_store_cannot_write(tmp_path, monkeypatch):
    from sqlalchemy.exc import OperationalError

    from ttpkit.serve import create_service
    from ttpkit.serve._store import ProfileStore

    store = ProfileStore(f"sqlite:///{tmp_path / 'p.db'}")
    client = TestClient(create_service(FakeLM(), store, encoder=FakeEncoder(2), admin_key=""))
    body = {"items": [{"text": "fix a", "title": "a: fix"}]}

    def full(*_args, **_kwargs):
        raise OperationalError("INSERT INTO items", {}, Exception("database or disk is full"))

    monkeypatch.setattr(store, "add_items", full)
    r = client.post("/v1/users/alice/items", json=body)
    assert r.status_code == 507 and "database or disk is full" in r.json()["error"]["message"]
    monkeypatch.undo()
    assert client.post("/v1/users/alice/items", json=body).json()["size"] == 1  # room again: served as before
