"""The dist form of the law (scaling/_dist.py), the forecasting protocol (_forecast.py) and the synthetic populations.

Each synthetic population's true curve comes from 1,024 fresh candidates per query; the form is fitted on the
first 8 of the 64 in the pool, as the forecasting protocol does.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from ttpkit.errors import ConfigError
from ttpkit.scaling import (
    KINDS,
    diagnose,
    find_peak,
    fit_law,
    forecast,
    forecast_summary,
    gain_error,
    synthetic_pool,
    true_curve,
)
from ttpkit.scaling._bon import best_of_n
from ttpkit.scaling._dist import gpd_pwm
from ttpkit.scaling._synthetic import _draw, _effects

NS = [1, 2, 4, 8, 16, 32, 64]


@pytest.fixture(scope="module")
def populations() -> dict:
    """kind -> (pool, LawFit on M_fit=8, true curve, true oracle curve)."""
    out = {}
    for kind in KINDS:
        pool = synthetic_pool(kind, seed=0)
        r, u = _draw(kind, 400, 1024, np.random.default_rng([0, 2]), _effects(kind, 400, 0))
        out[kind] = (pool, fit_law(pool, "rm", m_fit=8, n_boot=20), true_curve(kind, NS, seed=0), best_of_n(u, u, NS).mean(0))
    return out


def _err(populations: dict, kind: str, form: str) -> float:
    pool, fit, truth, oracle = populations[kind]
    return gain_error(fit.predict(NS, form), truth, oracle)


def test_true_curves_have_the_shapes_their_names_promise(populations):
    peaks = {k: find_peak(NS, populations[k][2]) for k in KINDS}
    assert not peaks["plain"].inside and not peaks["collapsed"].inside
    assert all(peaks[k].inside for k in ("hack1", "hack2", "hack5", "falling"))
    assert peaks["hack5"].n < peaks["hack2"].n <= peaks["hack1"].n  # more hacks, earlier peak


@pytest.mark.parametrize("kind", ["hack1", "hack2", "hack5", "falling"])
def test_the_dist_form_finds_a_true_peak_within_a_factor_2(populations, kind):
    pool, fit, truth, _ = populations[kind]
    true_n, pred_n = find_peak(NS, truth).n, find_peak(NS, fit.predict(NS, "dist")).n
    assert true_n / 2 <= pred_n <= true_n * 2, (true_n, pred_n)


@pytest.mark.parametrize("kind", ["plain", "plateau", "collapsed"])
def test_on_monotone_and_collapsed_populations_the_dist_form_is_within_10_percent(populations, kind):
    assert _err(populations, kind, "dist") <= 0.10


@pytest.mark.parametrize("kind", ["hack1", "hack2", "hack5"])
def test_on_hacked_populations_the_dist_form_is_within_10_percent_and_beats_the_normal_tail_forms(populations, kind):
    """The issue's target at this seed; over seeds 10-29, 80-90% of the fits meet it (docs/results.md)."""
    dist = _err(populations, kind, "dist")
    assert all(dist < _err(populations, kind, f) for f in ("plain", "tail", "log", "bend")), kind
    assert dist <= 0.10


def _hack_labels(kind: str, m: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(scores, utilities, hacked) of the first m candidates of a synthetic population, in draw order."""
    eff = _effects(kind, 400, seed)
    r, u = _draw(kind, 400, 64, np.random.default_rng([seed, 1]), eff)
    hacked = np.isclose(u, eff["mu"] - 2.0 * eff["s"]) if kind.startswith("hack") else np.zeros_like(u, dtype=bool)
    return r[:, :m], u[:, :m], hacked[:, :m]


@pytest.mark.parametrize("kind", ["hack1", "hack2", "hack5"])
def test_the_hacked_cluster_is_found_from_score_and_utility_jointly(kind):
    """With 8 candidates a hack's z is noisy (a second hack inflates its query's spread): the score alone misses 12-41%
    of the hacks here and takes bulk candidates instead; the joint rule finds 97-100%, and 82-96% of what it finds are
    hacks (against 68-86%)."""
    from ttpkit.scaling._dist import PRIOR_DOF, _loo
    from ttpkit.scaling._tails import hack_cluster, top_cluster

    r, u, hacked = _hack_labels(kind, 8)
    loc, scale = _loo(r, PRIOR_DOF, float(np.median(r.std(1, ddof=1))))
    z, d = (r - loc) / scale, u - (u.sum(1, keepdims=True) - u) / 7
    by_score = top_cluster(z.ravel()).reshape(z.shape)
    joint = hack_cluster(z, d, r)
    recall = lambda found: (found & hacked).sum() / hacked.sum()  # noqa: E731
    precision = lambda found: (found & hacked).sum() / found.sum()  # noqa: E731
    assert recall(joint) >= 0.95 and precision(joint) >= 0.8, (recall(joint), precision(joint))
    assert recall(joint) > recall(by_score) and precision(joint) > precision(by_score)


@pytest.mark.parametrize("kind", ["plain", "plateau"])
def test_a_top_cluster_with_the_bulks_utility_is_left_as_the_score_found_it(kind):
    from ttpkit.scaling._dist import PRIOR_DOF, _loo
    from ttpkit.scaling._tails import hack_cluster, top_cluster

    r, u, _ = _hack_labels(kind, 8)
    loc, scale = _loo(r, PRIOR_DOF, float(np.median(r.std(1, ddof=1))))
    z, d = (r - loc) / scale, u - (u.sum(1, keepdims=True) - u) / 7
    assert (hack_cluster(z, d, r).ravel() == top_cluster(z.ravel())).all()


def test_the_failure_modes_are_quantities_of_the_fit(populations):
    hacked = populations["hack2"][1].dist
    assert hacked.p == pytest.approx(0.02, abs=0.01) and hacked.h < 0 and hacked.tail_drop > 1.0
    assert populations["plain"][1].dist.tail_drop < 1.0
    assert populations["collapsed"][1].dist.live == pytest.approx(2 / 3, abs=0.08)  # a third of the users collapsed
    summary = populations["hack2"][1].as_dict()
    assert {"dist_mu", "dist_c", "dist_sigma", "dist_rho", "dist_tail_drop"} <= set(summary)
    json.dumps(summary, allow_nan=False)


def test_the_best_of_n_integral_equals_brute_force_on_a_small_discrete_distribution():
    """E[g(best of N)] by enumerating every N-tuple of draws from 3 score values and a top cluster, against DistFit.gain."""
    import itertools

    from ttpkit.scaling._dist import DistFit

    z, g, p, h = np.array([-1.0, 0.0, 2.0]), np.array([0.1, 0.3, 0.2]), 0.1, -0.5  # g falls at the top; a hacked cluster
    body = np.repeat(z, 4000)  # F: a third of the bulk on each value (the linear quantile rule is flat between repeats)
    fit = DistFit(mu=0.0, live=1.0, body=body, threshold=2.0, level=1.0, xi=0.0, beta=1e-9, knots_z=z, knots_g=g,
                  tail_slope=0.0, widen=1.0, sigma=0.1, rho=0.0, tail_drop=0.0, spread=1.0, n_points=len(body), p=p, h=h)
    values, probs = [*g, h], [(1 - p) / 3] * 3 + [p]  # the cluster (index 3) beats every bulk value

    def brute(n: int) -> float:
        return sum(np.prod([probs[i] for i in t]) * values[max(t)] for t in itertools.product(range(4), repeat=n))

    ns = [2, 3, 4, 5]
    assert fit.gain(ns) == pytest.approx([brute(n) - brute(1) for n in ns], abs=2e-4)


def test_probability_weighted_moments_recover_a_generalized_pareto():
    rng = np.random.default_rng(0)
    xi, beta = gpd_pwm(rng.exponential(2.0, 20000))
    assert xi == pytest.approx(0.0, abs=0.03) and beta == pytest.approx(2.0, rel=0.05)
    from scipy.stats import genpareto

    xi, beta = gpd_pwm(genpareto.rvs(0.2, scale=1.0, size=20000, random_state=1))
    assert xi == pytest.approx(0.2, abs=0.05) and beta == pytest.approx(1.0, rel=0.1)


def test_forecast_scores_every_form_with_a_band_and_refuses_what_it_cannot_hold_out():
    pool = synthetic_pool("hack2", queries=120, seed=3)
    table = forecast(pool, ["oracle", "rm"], m_fit=8, n_boot=20)
    assert list(table["scorer"]) == ["rm"]  # the oracle is the unit of error, not a row
    row = table.iloc[0]
    assert 0 <= row["in_band"] <= 1 and row["peak_lo"] <= row["peak_hi"] and row["m"] == 64
    assert row["trusted"] == "dist"  # a hacked cluster: no form is judged on it at N <= 8, only dist models it
    plain = fit_law(synthetic_pool("plain", queries=120, seed=3), "rm", m_fit=8, n_boot=5).dist
    assert plain.p == 0 or plain.h >= 0  # no hacked cluster there: the pick is left to the held-out comparison
    summary = forecast_summary(table.assign(source="synthetic"))
    assert set(summary["form"]) >= {"dist", "tail"} and summary["err_ok"].between(0, 1).all()
    with pytest.raises(ConfigError, match=r"m_fit must be in \[3, 63\]"):
        forecast(pool, ["rm"], m_fit=64)


def test_the_noise_floor_is_the_first_candidates_own_curve_against_all_and_shrinks_with_queries():
    from ttpkit.pool import IDX
    from ttpkit.scaling import curves

    def floor(queries: int) -> float:
        pool = synthetic_pool("plain", queries=queries, m=16, seed=5)
        row = forecast(pool, ["rm"], m_fit=8, n_boot=2).iloc[0]
        ns = [1, 2, 4, 8]
        first, whole = curves(pool[pool[IDX] < 8], ["oracle", "rm"], "rougeL", ns), curves(pool, ["oracle", "rm"], "rougeL", ns)
        o, e, w = whole["oracle"].mean, first["rm"].mean, whole["rm"].mean
        by_hand = max(abs((e[i] - e[0]) - (w[i] - w[0])) / (o[i] - o[0]) for i in range(1, 4))
        assert row["err_floor"] == pytest.approx(by_hand, rel=1e-9)
        return row["err_floor"]

    assert floor(200) < floor(10)  # the observed curve's own candidate noise falls with more queries
    summary = forecast_summary(forecast(synthetic_pool("plain", queries=40, m=16, seed=5), ["rm"], m_fit=8, n_boot=2).assign(source="s"))
    assert summary["floor_over"].between(0, 1).all()


def test_diagnose_trusts_the_form_with_the_least_held_out_error_and_gives_the_peak_a_band():
    pool = synthetic_pool("hack5", queries=200, seed=4)
    diag = diagnose(pool, ["rm"], m_fit=8, max_n=64, n_band=20)
    d = diag.scorers["rm"]
    assert d.holdout_error and d.trusted == min(d.holdout_error, key=d.holdout_error.get)
    assert d.predicted_peak.inside and d.predicted_peak.n <= 8
    lo, hi = d.peak_band
    assert lo <= hi and len(d.band[0]) == len(diag.ns_pred)
    assert all(a <= b + 1e-12 for a, b in zip(*d.band))
    law = diag.as_dict()["scorers"]["rm"]
    assert law["trusted"] == d.trusted and set(law["dist_band"]) == {"lower", "upper", "peak_n"}


def test_an_unknown_population_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known: plain, hack1"):
        synthetic_pool("hack7")
