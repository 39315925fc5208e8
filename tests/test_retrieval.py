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


def test_deterministic_across_index_rebuilds_and_prefix_consistent(sample):
    from ttpkit import retrieval

    for q in sample.queries[:4]:
        first = [it.id for it in retrieve(q, 4)]
        retrieval._index.cache_clear()  # a fresh index, as in a new process
        assert [it.id for it in retrieve(q, 4)] == first and len(first) == 4
        assert [it.id for it in retrieve(q, 2)] == first[:2]  # top-2 is the head of top-4
        assert all(it in q.profile for it in retrieve(q, 4))  # only the user's own items


def test_a_profile_without_indexable_words_gives_its_newest_items_with_a_warning(caplog):
    """Empty, stopword-only and punctuation-only sources give bm25s no vocabulary; retrieval must not crash."""
    for sources in (["", "  "], ["the and of", "it is"], ["!!!", "...", "--"]):
        q = _q("fix the parser", sources)
        with caplog.at_level("WARNING", logger="ttpkit.retrieval"):
            got = [it.id for it in retrieve(q, k=2)]
        assert got == [str(len(sources) - 1), str(len(sources) - 2)]  # newest (last stored) first
    assert "no indexable words" in caplog.text
    assert retrieve(_q("the", ["the"]), k=0) == []
