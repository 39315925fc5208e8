from __future__ import annotations

import pytest
from conftest import EchoPolicy

from ttpkit.cli import run_sample
from ttpkit.pool import PoolWriter, complete_queries, read_pool


def test_resume_after_interrupted_sample(tmp_path, sample):
    from ttpkit.data import bundled_sample_dir

    out = tmp_path / "pool.parquet"
    with pytest.raises(KeyboardInterrupt):
        run_sample(bundled_sample_dir(), "dev", 3, out, limit=6, policy=EchoPolicy(fail_after=4))
    part = read_pool(out)  # the journal of the interrupted run is readable
    assert complete_queries(part, 3) == {q.id for q in sample.queries[:4]}
    resumed = EchoPolicy()
    run_sample(bundled_sample_dir(), "dev", 3, out, limit=6, policy=resumed)
    assert resumed.calls == 2  # only the two missing queries were sampled
    full = read_pool(out)
    assert len(full) == 18 and not out.with_name(out.name + ".journal.jsonl").exists()
    assert list(full.columns[:6]) == ["query_id", "user_id", "idx", "text", "policy", "seed"]
    # a rerun with everything done samples nothing
    again = EchoPolicy()
    run_sample(bundled_sample_dir(), "dev", 3, out, limit=6, policy=again)
    assert again.calls == 0


def test_cut_journal_line_is_ignored(tmp_path):
    out = tmp_path / "p.parquet"
    w = PoolWriter(out, fold_every=100)
    from ttpkit.policy.base import Candidate

    w.add([Candidate("a", "u", 0, "t", "p", 0)])
    with out.with_name(out.name + ".journal.jsonl").open("a") as f:
        f.write('{"query_id": "b", "us')  # interrupted mid-write
    assert list(read_pool(out)["query_id"]) == ["a"]
