from __future__ import annotations

from ttpkit.data import ProfileItem, Query
from ttpkit.retrieval import retrieve


def _q(source, items):
    return Query("q", "u", source, source, tuple(ProfileItem(str(i), s, f"t{i}") for i, s in enumerate(items)))


def test_most_relevant_first():
    q = _q("fix the rebase conflict marker", ["update docs for clone", "rebase: detect conflict marker", "typo"])
    assert [it.id for it in retrieve(q, k=2)][0] == "1"


def test_ties_keep_profile_order_and_k_caps():
    q = _q("zebra", ["alpha", "beta", "gamma"])  # no overlap: all tie at 0
    assert [it.id for it in retrieve(q, k=2)] == ["0", "1"]
    assert len(retrieve(q, k=10)) == 3
    assert retrieve(q, k=0) == []


def test_deterministic(sample):
    q = sample.queries[0]
    assert retrieve(q, 4) == retrieve(q, 4)
    assert len(retrieve(q, 4)) == 4
