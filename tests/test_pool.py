from __future__ import annotations

import logging

import pandas as pd
import pytest
from conftest import EchoPolicy

from ttpkit.pool import PoolWriter, candidates_per_query, complete_queries, read_pool
from ttpkit.stages import sample_pool


def test_resume_after_interrupted_sample(tmp_path, sample):
    out = tmp_path / "pool.parquet"
    queries = sample.queries[:6]
    with pytest.raises(KeyboardInterrupt):
        sample_pool(queries, out, 3, EchoPolicy(fail_after=4))
    part = read_pool(out)  # the journal of the interrupted run is readable
    assert complete_queries(part, 3) == {q.id for q in sample.queries[:4]}
    resumed = EchoPolicy()
    sample_pool(queries, out, 3, resumed)
    assert resumed.calls == 2  # only the two missing queries were sampled
    full = read_pool(out)
    assert len(full) == 18 and not out.with_name(out.name + ".journal.jsonl").exists()
    assert list(full.columns[:6]) == ["query_id", "user_id", "idx", "text", "policy", "seed"]
    # a rerun with everything done samples nothing
    again = EchoPolicy()
    sample_pool(queries, out, 3, again)
    assert again.calls == 0


def test_cut_journal_line_is_ignored(tmp_path):
    out = tmp_path / "p.parquet"
    w = PoolWriter(out, fold_every=100)
    from ttpkit.policy.base import Candidate

    w.add([Candidate("a", "u", 0, "t", "p", 0)])
    with out.with_name(out.name + ".journal.jsonl").open("a") as f:
        f.write('{"query_id": "b", "us')  # interrupted mid-write
    assert list(read_pool(out)["query_id"]) == ["a"]


def test_journal_keeps_complete_records_after_a_cut_line(tmp_path):
    """A crash mid-write leaves a cut line; a resumed run appends after it. Nothing after the cut may be lost."""
    from ttpkit.policy.base import Candidate

    out = tmp_path / "p.parquet"
    w = PoolWriter(out, fold_every=100)
    w.add([Candidate("a", "u", 0, "t", "p", 0)])
    with out.with_name(out.name + ".journal.jsonl").open("a") as f:
        f.write('{"query_id": "b", "us')  # the crash
    w.add([Candidate("c", "u", 0, "t", "p", 0), Candidate("c", "u", 1, "t2", "p", 0)])  # the resumed run
    assert list(read_pool(out)["query_id"]) == ["a", "c", "c"]
    w.fold()
    assert list(read_pool(out)["query_id"]) == ["a", "c", "c"]


def test_schema_helpers():
    from ttpkit.pool import POOL_COLUMNS, QUERY_ID, ScorerRef, n_grid, score_col, std_col

    assert QUERY_ID in POOL_COLUMNS and score_col("user-prob") == "score_user-prob" and std_col("x") == "std_x"
    assert n_grid(16) == (1, 2, 4, 8, 16) and n_grid(12) == (1, 2, 4, 8) and n_grid(1) == (1,)
    s = ScorerRef.parse("user-prob@lcb:1.5")
    assert (s.name, s.rule, str(s), s.slug, s.builtin) == ("user-prob", "lcb:1.5", "user-prob@lcb:1.5", "user-prob_lcb1.5", False)
    assert ScorerRef.parse("oracle").builtin and ScorerRef.parse(" style ").rule is None
    assert [str(x) for x in ScorerRef.parse_list("oracle, random,,style@thompson")] == ["oracle", "random", "style@thompson"]


@pytest.mark.parametrize(
    "text, needle",
    [("user-prob@best", "unknown selection rule"), ("@lcb:1", "empty name"), ("oracle@lcb:1", "not to 'oracle'"),
     ("x@lcb:-2", "kappa must be >= 0"), (" , ", "no scorers given")],
)
def test_bad_scorers_are_config_errors(text, needle):
    from ttpkit.errors import ConfigError
    from ttpkit.pool import ScorerRef

    with pytest.raises(ConfigError, match=needle):
        ScorerRef.parse_list(text)


def test_read_pool_names_what_is_wrong(tmp_path):
    import pandas as pd

    from ttpkit.errors import DataError
    from ttpkit.pool import ROUGEL, write_pool

    with pytest.raises(DataError, match="is a directory"):
        read_pool(tmp_path)
    with pytest.raises(DataError, match="does not exist"):
        read_pool(tmp_path / "none.parquet")
    row = {"query_id": "a", "user_id": "u", "idx": 0, "text": "t", "policy": "p", "seed": 0}
    write_pool(pd.DataFrame([row]), tmp_path / "p.parquet")
    with pytest.raises(DataError, match=r"missing pool columns \['rougeL'\]; run `ttpkit label` first"):
        read_pool(tmp_path / "p.parquet", require=[ROUGEL])
    write_pool(pd.DataFrame([{k: v for k, v in row.items() if k != "text"}]), tmp_path / "q.parquet")
    with pytest.raises(DataError, match=r"q.parquet: missing pool columns \['text'\]"):
        read_pool(tmp_path / "q.parquet")
    write_pool(pd.DataFrame([row, {**row, "query_id": "b", "user_id": None}]), tmp_path / "n.parquet")
    with pytest.raises(DataError, match=r"n.parquet: column 'user_id' has 1 null value\(s\), first at row 1 \(query_id 'b'\)"):
        read_pool(tmp_path / "n.parquet")  # a null user would be dropped from per-user statistics without a word


def test_a_query_mixing_two_policies_is_warned(caplog):
    one = pd.DataFrame({"query_id": ["a", "a", "b", "b"], "idx": [0, 1, 0, 1], "policy": ["p", "p", "q", "q"]})
    with caplog.at_level(logging.WARNING, logger="ttpkit.pool._schema"):
        assert candidates_per_query(one) == 2  # two policies, each query from one: fine
    assert "several policies" not in caplog.text
    mixed = one.assign(policy=["p", "q", "q", "q"])
    with caplog.at_level(logging.WARNING, logger="ttpkit.pool._schema"):
        assert candidates_per_query(mixed) == 2
    assert "1 of 2 queries hold candidates of several policies (p, q)" in caplog.text
