"""Failure measures and back-off on constructed pools where the right answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ttpkit.scaling import backoff_scores, capped_curve, curves, failure_measures, hack_suspects, within_query_share


def _pool():
    """4 users x 3 queries x 6 candidates. The RM ranks user 0's queries but not their candidates (collapsed for u0);
    for the others its score tracks utility. The fallback tracks utility for everyone."""
    rows = []
    for u in range(4):
        for q in range(3):
            for i in range(6):
                util = i / 10
                rm = 0.5 + 0.3 * q if u == 0 else util + 0.01 * q
                rows.append({"query_id": f"u{u}q{q}", "user_id": f"u{u}", "idx": i, "text": "", "rougeL": util,
                             "score_rm": rm, "score_fb": util + 0.05})
    return pd.DataFrame(rows)


def test_within_query_share_sees_collapse_that_the_global_spread_misses():
    pool = _pool()
    share = within_query_share(pool["user_id"].to_numpy(), pool["query_id"].to_numpy(), pool["score_rm"].to_numpy())
    by_user = dict(zip(share["user_id"], share["within_share"]))
    assert by_user["u0"] == pytest.approx(0.0) and all(by_user[f"u{u}"] > 0.9 for u in (1, 2, 3))
    assert share.set_index("user_id").loc["u0", "score_std"] > 0.2  # a large spread: the spread rule says "fine"
    m = failure_measures(pool, "rm", "rougeL")
    assert m["collapsed_share"] == pytest.approx(0.25) and m["c"] == 0.0 and m["hacked"] == 0.0


def test_backoff_uses_the_fallback_exactly_for_collapsed_users():
    pool = _pool()
    scores, backed = backoff_scores(pool, "rm", pool["score_fb"].to_numpy())
    assert set(pool.loc[backed, "user_id"]) == {"u0"}
    assert np.array_equal(scores[backed], pool.loc[backed, "score_fb"]) and np.array_equal(scores[~backed], pool.loc[~backed, "score_rm"])
    before = curves(pool, ["rm", "oracle"], "rougeL", [1, 6])
    after = curves(pool.assign(score_bo=scores), ["bo"], "rougeL", [1, 6])["bo"]
    assert after.mean[1] == pytest.approx(before["oracle"].mean[1])  # back-off closes the gap ...
    assert before["rm"].mean[1] < before["oracle"].mean[1] - 0.05  # ... that the collapsed user left


def test_hack_suspects_and_capping():
    pool = _pool()
    pool.loc[pool["query_id"] == "u1q2", "score_rm"] *= -1  # the RM runs against consensus on one query
    assert hack_suspects(pool, pool["score_rm"].to_numpy(), pool["score_fb"].to_numpy()) == {"u1q2"}
    qids = ["a", "b"]
    per_query = np.array([[0.1, 0.2, 0.3], [0.1, 0.05, 0.0]])
    assert np.array_equal(capped_curve(qids, per_query, [1, 2, 4], {"b": 1}), [[0.1, 0.2, 0.3], [0.1, 0.1, 0.1]])


def test_capped_scorer_curve_is_the_failure_studys_capped_curve():
    from ttpkit.scaling import bootstrap_ci, capped_scorer_curve, per_query_curve

    rng = np.random.default_rng(0)
    pool = _pool().assign(score_rm=lambda d: d["score_rm"] + 0.01 * rng.standard_normal(len(d)))
    ns, cap = (1, 2, 4), 3  # a cap outside the grid is added to it, then dropped
    suspects = {"u1q2", "u2q0"}
    got = capped_scorer_curve(pool, "rm", "rougeL", ns, {q: cap for q in suspects}, seed=0)
    grid = sorted(set(ns) | {cap})  # regimes._capped before the move, minus its suspect detection
    qids, pq = per_query_curve(pool, "rm", "rougeL", grid, 0)
    pq = capped_curve(qids, pq, grid, {q: cap for q in suspects})[:, [grid.index(n) for n in ns]]
    lo, hi = bootstrap_ci(pq, seed=0)
    assert got.scorer == "rm+cap" and got.ns == ns and got.n_queries == pq.shape[0]
    assert got.mean == tuple(pq.mean(0)) and got.lo == tuple(lo) and got.hi == tuple(hi)
    assert np.array_equal(got.per_query, pq) and got.query_ids == tuple(qids)
    plain = curves(pool, ["rm"], "rougeL", ns)["rm"]
    assert capped_scorer_curve(pool, "rm", "rougeL", ns, {}).mean == pytest.approx(plain.mean, abs=1e-15)  # no caps: the plain curve
    row = list(qids).index("u1q2")
    assert got.per_query[row, 2] == pytest.approx(per_query_curve(pool, "rm", "rougeL", [3])[1][row, 0])  # N=4 gets N=3
