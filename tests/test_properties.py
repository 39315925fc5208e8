"""Property tests (hypothesis): the best-of-N estimator, the loaders and `curves` on arbitrary input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from test_scaling import brute_force
from ttpkit.errors import DataError, TtpkitError
from ttpkit.scaling import best_of_n, curves

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def pools(draw, max_m=7):
    """One query's scores (with ties) and utilities."""
    m = draw(st.integers(1, max_m))
    scores = draw(st.lists(st.integers(-3, 3), min_size=m, max_size=m))
    utils = draw(st.lists(st.floats(0, 1, allow_nan=False), min_size=m, max_size=m))
    return np.array(scores, dtype=float), np.array(utils)


@FAST
@given(pools(), st.data())
def test_best_of_n_matches_brute_force(pool, data):
    scores, utils = pool
    n = data.draw(st.integers(1, len(scores)))
    got = best_of_n(scores[None], utils[None], [n])[0, 0]
    assert got == pytest.approx(brute_force(scores, utils, n), abs=1e-9)


@FAST
@given(pools(), st.randoms(use_true_random=False))
def test_best_of_n_is_invariant_to_candidate_order_and_monotone_transforms(pool, rnd):
    scores, utils = pool
    ns = list(range(1, len(scores) + 1))
    base = best_of_n(scores[None], utils[None], ns)
    order = list(range(len(scores)))
    rnd.shuffle(order)
    assert best_of_n(scores[order][None], utils[order][None], ns) == pytest.approx(base, abs=1e-12)
    for f in (lambda x: 3 * x + 7, np.exp, lambda x: x**3):  # strictly increasing: same ranks, same ties
        assert best_of_n(f(scores)[None], utils[None], ns) == pytest.approx(base, abs=1e-12)


@FAST
@given(pools())
def test_a_constant_scorer_gives_the_mean(pool):
    _, utils = pool
    ns = list(range(1, len(utils) + 1))
    assert best_of_n(np.zeros((1, len(utils))), utils[None], ns)[0] == pytest.approx(np.full(len(ns), utils.mean()), abs=1e-12)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(
        ["id", "input", "profile", "user_id", "text", "title", "golds", "output", "task", "x"]), children, max_size=5),
    max_leaves=20,
)


@FAST
@given(questions=json_values, outputs=json_values)
def test_arbitrary_json_given_to_the_loader_is_data_or_a_data_error(tmp_path_factory, questions, outputs):
    from ttpkit.data import load_split

    d = tmp_path_factory.mktemp("data")
    (d / "test_questions.json").write_text(json.dumps(questions))
    (d / "test_outputs.json").write_text(json.dumps(outputs))
    try:
        ds = load_split(d, "test", "git-commits")
    except DataError:
        return
    assert all(isinstance(q.id, str) and isinstance(q.source, str) for q in ds.queries)


cell = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.none(), st.text(max_size=3))


@FAST
@example(rows=[("q1", 0, 0.0, 0.0), ("q1", 0, 0.0, None)], ns=[1])  # found by hypothesis: duplicate rows crashed pivot
@example(rows=[("q1", 0, 0.0, "")], ns=[1])  # found by hypothesis: a text score crashed float conversion
@given(rows=st.lists(st.tuples(st.sampled_from(["q1", "q2", "q3"]), st.integers(0, 4), cell, cell), max_size=15),
       ns=st.lists(st.integers(-1, 6), min_size=1, max_size=3))
def test_arbitrary_pools_given_to_curves_are_curves_or_a_ttpkit_error(rows, ns):
    pool = pd.DataFrame(rows, columns=["query_id", "idx", "rougeL", "score_rm"])
    pool["user_id"], pool["text"] = "u", "t"
    try:
        res = curves(pool, ["oracle", "random", "rm"], "rougeL", ns, n_boot=5)
    except TtpkitError:
        return
    for c in res.values():
        assert len(c.mean) == len(ns) and np.isfinite(c.mean).all()
