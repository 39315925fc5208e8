from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from ttpkit.scaling import best_of_n, bon_weights, bootstrap_ci, curves


def brute_force(scores, utils, n):
    """Enumerate every n-subset; ties broken uniformly (mean utility of the tied maxima)."""
    vals = []
    for sub in itertools.combinations(range(len(scores)), n):
        top = max(scores[i] for i in sub)
        vals.append(np.mean([utils[i] for i in sub if scores[i] == top]))
    return float(np.mean(vals))


@pytest.mark.parametrize("seed", range(6))
def test_matches_brute_force_with_ties(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(2, 9))
    scores = rng.integers(0, 3, size=(3, m)).astype(float)  # many ties
    utils = rng.random((3, m))
    ns = list(range(1, m + 1))
    got = best_of_n(scores, utils, ns)
    for q in range(3):
        for k, n in enumerate(ns):
            assert got[q, k] == pytest.approx(brute_force(scores[q], utils[q], n), abs=1e-12)


def test_weights_are_probabilities_for_large_pools():
    w = bon_weights(5000, [1, 7, 64, 5000])
    assert np.allclose(w.sum(axis=1), 1.0)
    assert w[0].max() == pytest.approx(1 / 5000)
    assert w[3, -1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        bon_weights(4, [5])


def test_constant_scorer_gives_pool_mean_and_oracle_never_decreases():
    rng = np.random.default_rng(0)
    utils = rng.random((50, 16))
    ns = [1, 2, 3, 4, 8, 16]
    const = best_of_n(np.zeros_like(utils), utils, ns)
    assert np.allclose(const, utils.mean(axis=1, keepdims=True))
    oracle = best_of_n(utils, utils, ns)
    assert np.all(np.diff(oracle, axis=1) >= -1e-12)
    assert np.allclose(oracle[:, -1], utils.max(axis=1))
    assert np.allclose(oracle[:, 0], utils.mean(axis=1))


def test_bootstrap_interval_contains_mean():
    x = np.random.default_rng(1).random((200, 2))
    lo, hi = bootstrap_ci(x, seed=3)
    assert np.all(lo < x.mean(0)) and np.all(x.mean(0) < hi)
    assert np.array_equal(bootstrap_ci(x, seed=3)[0], lo)


def test_curves_on_a_pool_frame():
    rng = np.random.default_rng(2)
    rows = [
        {"query_id": f"q{q}", "idx": i, "rougeL": float(u), "score_style": float(-u)}
        for q in range(20)
        for i, u in enumerate(rng.random(8))
    ]
    pool = pd.DataFrame(rows)
    res = curves(pool, ["oracle", "random", "style"], "rougeL", [1, 2, 4, 8])
    mean = pool["rougeL"].mean()
    assert res["oracle"].mean[0] == pytest.approx(mean)
    assert res["oracle"].mean[-1] > res["random"].mean[-1] > res["style"].mean[-1]  # style anti-correlated here
    assert res["style"].mean[-1] == pytest.approx(pool.groupby("query_id")["rougeL"].min().mean())
    assert set(res["oracle"].as_dict()) == {"1", "2", "4", "8"}


def test_random_is_the_exact_expectation_of_random_selection():
    """Flat at the pool mean at every N, with no seed left in it (one draw would wander by +-15% of the oracle gain)."""
    rng = np.random.default_rng(3)
    pool = pd.DataFrame([{"query_id": f"q{q}", "idx": i, "rougeL": float(u)} for q in range(30) for i, u in enumerate(rng.random(16))])
    a = curves(pool, ["random"], "rougeL", [1, 2, 4, 8, 16], seed=0)["random"]
    b = curves(pool, ["random"], "rougeL", [1, 2, 4, 8, 16], seed=7)["random"]
    assert np.allclose(a.mean, pool["rougeL"].mean(), atol=1e-12) and a.mean == b.mean
    # the same as averaging best-of-N over every random order of each pool (brute force on 3 queries)
    small = pool[pool["query_id"].isin(["q0", "q1", "q2"]) & (pool["idx"] < 5)]
    u = small.pivot(index="query_id", columns="idx", values="rougeL").to_numpy()
    order_avg = np.mean([[brute_force(np.array(p, float), row, 3) for p in itertools.permutations(range(5))] for row in u])
    assert curves(small, ["random"], "rougeL", [3])["random"].mean[0] == pytest.approx(order_avg, abs=1e-12)


def test_bad_values_are_named():
    from ttpkit.errors import DataError

    pool = pd.DataFrame([{"query_id": f"q{q}", "idx": i, "rougeL": 0.5} for q in range(2) for i in range(2)])
    with pytest.raises(DataError, match="'rougeL' has 1 missing or infinite"):
        curves(pool.assign(rougeL=[0.1, np.nan, 0.2, 0.3]), ["oracle"], "rougeL", [1, 2])
    with pytest.raises(DataError, match="not numeric"):
        curves(pool.assign(rougeL=["a", "b", "c", "d"]), ["oracle"], "rougeL", [1])
    with pytest.raises(DataError, match="no candidates"):
        curves(pool.iloc[:0], ["oracle"], "rougeL", [1])


def brute_force_soft(scores, utils, n, lam):
    """Enumerate every n-subset; the answer is drawn by softmax(score / lam) among it."""
    vals = []
    for sub in itertools.combinations(range(len(scores)), n):
        s = np.array([scores[i] for i in sub])
        w = np.exp((s - s.max()) / lam)
        vals.append(float(np.dot(w / w.sum(), [utils[i] for i in sub])))
    return float(np.mean(vals))


@pytest.mark.parametrize("lam", [0.003, 0.1, 1.0, 30.0])
def test_soft_best_of_n_matches_brute_force(lam):
    from ttpkit.scaling import soft_best_of_n

    rng = np.random.default_rng(int(lam * 1000))
    scores = rng.normal(size=(3, 8))
    scores[0, :3] = scores[0, 3]  # ties
    utils = rng.random((3, 8))
    got = soft_best_of_n(scores, utils, list(range(1, 9)), lam)
    want = np.array([[brute_force_soft(scores[q], utils[q], n, lam) for n in range(1, 9)] for q in range(3)])
    assert np.abs(got - want).max() < 1e-9


def test_soft_best_of_n_limits_and_the_scorer_grammar():
    from ttpkit.scaling import soft_best_of_n

    rng = np.random.default_rng(5)
    scores, utils, ns = rng.normal(size=(4, 12)), rng.random((4, 12)), [1, 2, 4, 8, 12]
    assert np.allclose(soft_best_of_n(scores, utils, ns, 1e-4), best_of_n(scores, utils, ns), atol=1e-9)  # λ -> 0: hard
    assert np.allclose(soft_best_of_n(scores, utils, ns, 1e6), utils.mean(1, keepdims=True), atol=1e-6)  # λ -> ∞: random
    pool = pd.DataFrame([{"query_id": f"q{q}", "idx": i, "rougeL": utils[q, i], "score_rm": scores[q, i]}
                         for q in range(4) for i in range(12)])
    sd = float(np.std(scores))
    got = curves(pool, ["rm@soft:0.5"], "rougeL", ns)["rm@soft:0.5"].mean
    assert np.allclose(got, soft_best_of_n(scores, utils, ns, 0.5 * sd).mean(0))  # τ is in units of the score's std


def test_adaptive_curve_spans_one_round_to_fixed_m():
    from ttpkit.scaling import adaptive_curve

    rng = np.random.default_rng(1)
    q, m = 30, 8
    u = rng.uniform(0, 1, (q, m))
    spread = np.repeat(rng.uniform(0.01, 2.0, q)[:, None], m, 1)  # queries whose scores vary more look worth more samples
    r = u + spread * rng.standard_normal((q, m))
    pool = pd.DataFrame({"query_id": np.repeat([f"q{i}" for i in range(q)], m), "user_id": "u", "idx": np.tile(np.arange(m), q),
                         "text": "", "rougeL": u.ravel(), "score_rm": r.ravel()})
    t = adaptive_curve(pool, "rm", [1e9, 0.1, 0.0], round_size=4, n_orders=50)
    assert t["mean_n"].tolist()[0] == 4 and t["mean_n"].tolist()[-1] == 8 and 4 <= t["mean_n"][1] <= 8
    fixed = curves(pool, ["rm"], "rougeL", [4, 8])["rm"].mean
    assert t["utility"][0] == pytest.approx(fixed[0], abs=0.02)  # stop after one round: best-of-4, up to order noise
    assert t["utility"].iloc[-1] == pytest.approx(fixed[1], abs=1e-12)  # never stop: best-of-all-8, exactly
    assert (t["lo"] <= t["utility"]).all() and (t["utility"] <= t["hi"]).all()


def _old_paired(base, fix, oracle, seed, n_boot=2000):
    """regimes._paired before the one bootstrap, verbatim."""
    rng = np.random.default_rng(seed)
    q = len(oracle)

    def share(pq, idx):
        gain = oracle[idx, -1].mean() - oracle[idx, 0].mean()
        return (pq[idx, -1].mean() - pq[idx, 0].mean()) / gain if gain > 0 else np.nan

    full = np.arange(q)
    diffs = [share(fix, i) - share(base, i) for i in (rng.integers(0, q, q) for _ in range(n_boot))]
    lo, hi = np.nanquantile(diffs, [0.025, 0.975])
    return float(share(fix, full) - share(base, full)), float(lo), float(hi)


@pytest.mark.parametrize("seed", range(4))
def test_paired_share_diff_is_the_failure_studys_old_paired_bootstrap(seed):
    from ttpkit.scaling import paired_share_diff

    rng = np.random.default_rng(seed)
    q = int(rng.integers(3, 40))  # odd and even Q: the draws must be the same calls, not one big draw
    oracle = np.cumsum(rng.random((q, 4)) * (rng.random((q, 1)) < 0.7), axis=1)  # some queries gain nothing
    base, fix = oracle * rng.random((q, 1)), oracle * rng.random((q, 1)) - 0.1 * rng.random((q, 4))
    for n_boot in (50, 2000):
        assert paired_share_diff(base, fix, oracle, seed, n_boot) == _old_paired(base, fix, oracle, seed, n_boot)


@pytest.mark.parametrize("q", [7, 30])
def test_the_one_bootstrap_keeps_each_old_loops_draws(q):
    from ttpkit.scaling import bootstrap_means, curve_moves, peak_drop_ci

    rng = np.random.default_rng(q)
    pq = rng.random((q, 5))
    old_rng = np.random.default_rng(3)  # the loops of peak_drop_ci, curve_moves and fit_law
    old = np.stack([pq[old_rng.integers(0, q, q)].mean(0) for _ in range(100)])
    assert np.array_equal(bootstrap_means(pq, 100, 3), old)
    counts = np.random.default_rng(3).multinomial(q, np.full(q, 1.0 / q), size=100)  # bootstrap_ci's draws
    assert np.array_equal(bootstrap_means(pq, 100, 3, scheme="counts"), counts @ pq / q)
    lo, hi = bootstrap_ci(pq, n_boot=100, seed=3)
    assert np.array_equal(lo, np.quantile(counts @ pq / q, 0.025, axis=0)) and np.array_equal(hi, np.quantile(counts @ pq / q, 0.975, axis=0))
    diff = pq[:, 1] - pq[:, -1]
    old_rng = np.random.default_rng(2)
    means = [diff[old_rng.integers(0, len(diff), len(diff))].mean() for _ in range(1000)]
    assert peak_drop_ci(pq, 1, seed=2) == tuple(float(v) for v in np.quantile(means, [0.025, 0.975]))
    assert curve_moves(pq + np.arange(5), seed=1) and not curve_moves(np.repeat(pq[:, :1], 5, 1), seed=1)
    with pytest.raises(Exception, match="unknown bootstrap scheme 'poisson'; known schemes: indices, counts"):
        bootstrap_means(pq, 10, 0, scheme="poisson")
