"""Pool directories (ttpkit.pool._parts): append-only part files, the same rows as a pool file, resume without rewrites."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from conftest import EchoPolicy
from test_kill import _cli, _finish, _kill_when, _rows, _sample_args, server  # noqa: F401  (server is a fixture)

from ttpkit import stages
from ttpkit.errors import ConfigError, DataError
from ttpkit.manifest import stamp
from ttpkit.policy.base import Candidate
from ttpkit.pool import (
    IDX,
    QUERY_ID,
    ROUGEL,
    PartWriter,
    PoolWriter,
    is_partitioned,
    pool_manifest,
    pool_writer,
    read_pool,
    write_pool,
)


def _parts(path: Path) -> dict[str, tuple[int, int, bytes]]:
    """Each part's (inode, mtime in ns, bytes): a rewritten part differs in at least one."""
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(path.glob("part-*.parquet"))}


def _manifest(sample, seed: int = 0) -> dict:
    return stamp("pool", {"task": sample.task.name, "split": sample.split, "m": 3, "seed": seed, "policy": {"name": "echo"}})


def test_the_layout_rule(tmp_path):
    assert not is_partitioned(tmp_path / "p.parquet") and is_partitioned(tmp_path / "pool")
    (tmp_path / "old.pq").write_bytes(b"")  # an existing file is a file pool, whatever its name
    assert not is_partitioned(tmp_path / "old.pq") and is_partitioned(tmp_path)
    assert isinstance(pool_writer(tmp_path / "p.parquet"), PoolWriter) and isinstance(pool_writer(tmp_path / "d"), PartWriter)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "x.txt").write_text("mine")
    with pytest.raises(ConfigError, match="is a directory but not a ttpkit pool"):
        pool_writer(tmp_path / "notes")  # a user's folder is never taken over
    with pytest.raises(DataError, match="is a directory"):
        read_pool(tmp_path / "notes")


def test_a_directory_pool_has_the_rows_of_a_file_pool(tmp_path, sample):
    queries = sample.queries[:12]
    stages.sample_pool(queries, tmp_path / "one.parquet", 3, EchoPolicy())
    assert stages.sample_pool(queries, tmp_path / "dir", 3, EchoPolicy()) == 12
    pd.testing.assert_frame_equal(read_pool(tmp_path / "dir"), read_pool(tmp_path / "one.parquet"))
    names = sorted(p.name for p in (tmp_path / "dir").iterdir())
    assert names[0] == "manifest.json" and len(names) == 3  # 12 queries: a part of 8 and one of 4
    assert all(n.startswith("part-g0-") for n in names[1:])


def test_an_interrupted_run_resumes_without_rewriting_a_part(tmp_path, sample):
    queries, out = sample.queries, tmp_path / "pool"
    stages.sample_pool(queries, tmp_path / "ref.parquet", 3, EchoPolicy())
    with pytest.raises(KeyboardInterrupt):
        stages.sample_pool(queries, out, 3, EchoPolicy(fail_after=11), manifest=None)
    before = _parts(out)
    assert len(before) == 2 and read_pool(out)[QUERY_ID].nunique() == 11  # 8 flushed, and 3 kept at the interrupt
    resumed = EchoPolicy()
    stages.sample_pool(queries, out, 3, resumed)
    assert resumed.calls == 5  # only the missing queries
    after = _parts(out)
    assert {k: after[k] for k in before} == before and len(after) == 3  # earlier parts untouched; one part added
    got = read_pool(out)
    pd.testing.assert_frame_equal(got, read_pool(tmp_path / "ref.parquet"))
    assert not got.duplicated([QUERY_ID, IDX]).any()


def test_a_torn_temporary_part_and_an_uncommitted_generation_are_ignored(tmp_path, sample):
    out = tmp_path / "pool"
    stages.sample_pool(sample.queries[:4], out, 3, EchoPolicy())
    good = read_pool(out)
    (out / ".part-g0-1-2-abc-00000.parquet.tmp").write_bytes(b"PAR1\x00torn")  # a writer killed mid-write
    (out / "part-g1-1-2-abc-00000.parquet").write_bytes(b"PAR1\x00torn")  # a rewrite killed before its commit
    pd.testing.assert_frame_equal(read_pool(out), good)
    stages.label_pool(out, sample)  # the next rewrite replaces the stale generation
    assert ROUGEL in read_pool(out).columns and all(n.startswith("part-g1-") for n in _parts(out))


def test_a_damaged_part_or_manifest_is_a_clear_error(tmp_path, sample):
    out = tmp_path / "pool"
    stages.sample_pool(sample.queries[:2], out, 3, EchoPolicy())
    part = next(iter(out.glob("part-*.parquet")))
    part.write_bytes(b"garbage")
    with pytest.raises(DataError, match="not a readable Parquet part"):
        read_pool(out)
    (out / "manifest.json").write_text("{")
    with pytest.raises(DataError, match="manifest is damaged"):
        read_pool(out)
    (out / "manifest.json").unlink()
    (out / "manifest.json").mkdir()
    with pytest.raises(DataError, match="is a directory, not a file"):
        read_pool(out)


def test_a_mismatched_manifest_is_refused(tmp_path, sample):
    out = tmp_path / "pool"
    stages.sample_pool(sample.queries[:2], out, 3, EchoPolicy(), manifest=_manifest(sample))
    assert pool_manifest(read_pool(out))["seed"] == 0
    with pytest.raises(ConfigError, match="seed=0"):
        stages.sample_pool(sample.queries[:4], out, 3, EchoPolicy(), manifest=_manifest(sample, seed=1))
    assert stages.sample_pool(sample.queries[:4], out, 3, EchoPolicy(), manifest=_manifest(sample, seed=1), force_new=True) == 4
    assert pool_manifest(read_pool(out))["seed"] == 1 and len(read_pool(out)) == 12


def test_label_and_score_rewrite_a_directory_as_a_new_generation(tmp_path, sample):
    stages.sample_pool(sample.queries[:10], tmp_path / "f.parquet", 3, EchoPolicy())
    stages.sample_pool(sample.queries[:10], tmp_path / "d", 3, EchoPolicy(), manifest=_manifest(sample))
    file_labelled, dir_labelled = stages.label_pool(tmp_path / "f.parquet", sample), stages.label_pool(tmp_path / "d", sample)
    pd.testing.assert_frame_equal(read_pool(tmp_path / "d"), read_pool(tmp_path / "f.parquet"))
    pd.testing.assert_frame_equal(dir_labelled, file_labelled)
    assert pool_manifest(read_pool(tmp_path / "d")) == _manifest(sample) | {"created": pool_manifest(read_pool(tmp_path / "d"))["created"]}
    scored = read_pool(tmp_path / "d").assign(score_x=1.5)
    write_pool(scored, tmp_path / "d")
    assert read_pool(tmp_path / "d")["score_x"].tolist() == [1.5] * 30
    assert all(n.startswith("part-g2-") for n in _parts(tmp_path / "d"))  # earlier generations are gone


def test_many_writers_fill_one_pool(tmp_path, sample):
    out, qs = tmp_path / "pool", sample.queries[:6]
    a, b = PartWriter(out, flush_every=2, writer="a"), PartWriter(out, flush_every=2, writer="b")
    a.begin()
    for i, q in enumerate(qs):  # interleaved, as two actors would be
        (a if i % 2 else b).add([Candidate(q.id, q.user_id, j, f"t{j}", "echo", 0) for j in range(2)])
    a.fold()
    b.fold()
    got = read_pool(out)
    assert sorted(got[QUERY_ID].unique()) == sorted(q.id for q in qs) and len(got) == 12
    assert {p[:8] for p in _parts(out)} == {"part-g0-"} and len(_parts(out)) == 4


def test_sample_killed_resumes_from_the_parts(server: str, tmp_path: Path) -> None:  # noqa: F811
    ref = tmp_path / "ref.parquet"
    _finish(_cli(*_sample_args(server, ref)))
    out, mark = tmp_path / "pool", tmp_path / "mark"
    _kill_when(_cli(*_sample_args(server, out)), lambda: len(list(out.glob("part-*.parquet"))) >= 1)
    before = _parts(out)
    _kill_when(_cli(*_sample_args(server, out), fault="write", mark=mark), mark.exists)  # a part written, not renamed
    assert list(out.glob(".part-*.tmp")) and {k: v for k, v in _parts(out).items() if k in before} == before
    _finish(_cli(*_sample_args(server, out)))
    after = _parts(out)
    assert {k: after[k] for k in before} == before  # no part was rewritten
    pd.testing.assert_frame_equal(_rows(out), _rows(ref))
    assert not read_pool(out).duplicated([QUERY_ID, IDX]).any()
    assert os.path.exists(out / "manifest.json")
