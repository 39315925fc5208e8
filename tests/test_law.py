from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ttpkit.scaling import (
    collapsed_users,
    curves,
    expected_max_normal,
    expected_sq_max_normal,
    fit_law,
    fit_log_curve,
    hacked_queries,
    recommend_n,
)


def test_expected_max_of_normals():
    want = {1: 0.0, 2: 0.5642, 4: 1.0294, 8: 1.4236, 16: 1.7660, 32: 2.0697}
    for n, v in want.items():
        assert expected_max_normal(n) == pytest.approx(v, abs=1e-4)
    assert expected_max_normal(2) == pytest.approx(1 / np.sqrt(np.pi), abs=1e-10)


def _population(n_users=60, per_user=2, m=1500, seed=0):
    """Bivariate-normal pools; users 0-9 collapsed (constant scores), query rho ~ U(-0.4, 0.9)."""
    rng = np.random.default_rng(seed)
    frames = []
    for u in range(n_users):
        for k in range(per_user):
            mu, s, rho = rng.uniform(0.1, 0.4), rng.uniform(0.05, 0.2), rng.uniform(-0.4, 0.9)
            z1, z2 = rng.standard_normal((2, m))
            util = mu + s * z1
            score = rho * z1 + np.sqrt(1 - rho**2) * z2
            if u < 10:
                score = np.full(m, 0.5)
            frames.append(pd.DataFrame({"query_id": f"u{u}q{k}", "user_id": f"u{u}", "idx": np.arange(m),
                                        "text": "", "rougeL": util, "score_rm": score}))
    return pd.concat(frames, ignore_index=True)


def test_law_reproduces_bivariate_normal_population_with_collapse_and_hacking():
    pool = _population()
    ns = [1, 2, 4, 8, 16, 32]
    fit = fit_law(pool, "rm")
    assert fit.c == pytest.approx(10 / 60)
    assert 0 < fit.hacked < 0.4
    observed = np.array(curves(pool, ["rm"], "rougeL", ns, n_boot=10)["rm"].mean)
    predicted = fit.predict(ns, "plain")
    oracle = np.array(curves(pool, ["oracle"], "rougeL", ns, n_boot=10)["oracle"].mean)
    gain = oracle[-1] - oracle[0]
    assert np.abs(predicted - observed).max() < 0.02 * gain  # the law is exact for this population
    assert np.abs(fit.ceiling(ns) - oracle).max() < 0.02 * gain
    # the effective (tail) form agrees when the data really are normal
    assert fit.rho_eff == pytest.approx(fit.rho, abs=0.03)


def test_negative_rho_means_more_compute_hurts():
    pool = _population(n_users=12, m=2000, seed=3)
    pool["score_anti"] = -pool["rougeL"]
    fit = fit_law(pool, "anti")
    assert fit.rho < -0.9 and fit.hacked == 1.0
    assert np.all(np.diff(fit.predict([1, 2, 4, 8], "plain")) < 0)


def test_detectors_on_constructed_cases():
    rows = []
    for u in range(4):
        for q in range(2):
            for i in range(6):
                util = i / 10
                score = 0.3 if u == 0 else (-util if (u, q) == (1, 1) else util + 0.01 * q)
                rows.append({"query_id": f"u{u}q{q}", "user_id": f"u{u}", "idx": i, "text": f"cand {i}",
                             "rougeL": util, "score_rm": score})
    pool = pd.DataFrame(rows)
    col = collapsed_users(pool, "rm")
    assert list(col["user_id"]) == ["u0"] and col["score_std"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    hacked = hacked_queries(pool, "rm", references={"u1q1": "the ref"})
    assert list(hacked["query_id"]) == ["u1q1"]
    row = hacked.iloc[0]
    assert row["rho"] == pytest.approx(-1.0) and row["top_scored"] == "cand 0" and row["best"] == "cand 5"
    assert row["reference"] == "the ref"


def test_log_fit_and_compute_aware_n():
    ns = [1, 2, 4, 8, 16]
    a, b, r2 = fit_log_curve(ns, [0.1 + 0.05 * np.log(n) for n in ns])
    assert (a, b, r2) == pytest.approx((0.1, 0.05, 1.0))
    curve = [0.10, 0.15, 0.18, 0.19, 0.195]
    assert recommend_n(curve, ns, cost_per_sample=1.0, min_gain_per_cost=0.01) == 4
    assert recommend_n(curve, ns, cost_per_sample=1.0, min_gain_per_cost=0.0) == 16
    assert recommend_n([0.1] * 5, ns) == 1  # flat (collapsed) curve: N=1


def test_diagnose_writes_the_report(tmp_path):
    from typer.testing import CliRunner

    from ttpkit.cli import app
    from ttpkit.pool import write_pool

    pool = _population(n_users=16, m=32, seed=5)  # users 0-9 collapsed, 10-15 not
    pool["policy"], pool["seed"] = "p", 0
    write_pool(pool, tmp_path / "pool.parquet")
    res = CliRunner().invoke(app, ["diagnose", "--pool", str(tmp_path / "pool.parquet"), "--scorers", "oracle,random,rm",
                                   "--out", str(tmp_path / "report")], env={"COLUMNS": "80"})
    assert res.exit_code == 0, res.output
    out = tmp_path / "report"
    for name in ("report.md", "law.json", "rho_hist.png", "law_rm.png", "law_oracle.png", "collapsed_rm.csv", "hacked_rm.csv"):
        assert (out / name).exists(), name
    import json

    law = json.loads((out / "law.json").read_text())
    rm = law["scorers"]["rm"]
    assert set(rm["quantities"]) >= {"mu", "c", "sigma", "rho"} and rm["quantities"]["m_fit"] == 4
    assert set(rm["predicted"]["plain"]) == {"1", "2", "4", "8", "16", "32"}
    assert {r["user_id"] for r in rm["collapsed_users"]} == {f"u{u}" for u in range(10)}
    assert rm["quantities"]["c"] == pytest.approx(10 / 16)
    per_user = rm["compute"]["per_user_n"]
    assert {per_user[f"u{u}"] for u in range(10)} == {1}  # collapsed users get N=1 ...
    assert max(per_user[f"u{u}"] for u in range(10, 16)) > 1  # ... users whose scores track utility get more
    hacked = {h["query_id"] for h in rm["hacked_queries"]}
    assert all(int(q[1:].split("q")[0]) >= 10 for q in hacked)  # ... and no collapsed user's query counts as hacked
    report = (out / "report.md").read_text()
    assert "Collapsed users (10)" in report and f"Hacked queries (ρ_q < -0.1): {len(hacked)} of 32" in report
    assert law["scorers"]["random"]["observed"]["32"] == pytest.approx(law["scorers"]["random"]["observed"]["1"])
    assert all(len(line) <= 80 for line in res.stdout.splitlines())
    assert " oracle " in res.stdout and " random " in res.stdout


ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def test_diagnosis_of_a_committed_pool_matches_the_recorded_output():
    """`ttpkit diagnose` on results/git-commits/test.parquet gives what it gave before the stage layer
    (tests/data/diagnose_git-commits_before.json) for every recorded quantity and form; `random` changed on
    purpose (exact expectation); the bend and mixture forms were added later (keys not in the record)."""
    import json

    from ttpkit.scaling import diagnose

    before = json.loads((ROOT / "tests" / "data" / "diagnose_git-commits_before.json").read_text())
    pool = pd.read_parquet(ROOT / "results" / "git-commits" / "test.parquet")
    diag = diagnose(pool, ["oracle", "random", *[s for s in before["scorers"] if s != "oracle"]])
    law = diag.as_dict()
    assert law["settings"] == before["settings"]
    for name, want in before["scorers"].items():
        got, d = law["scorers"][name], diag.scorers[name]
        for key in ("quantities", "r2", "max_error_frac_of_oracle_gain", "observed"):
            recorded = {k: got[key][k] for k in want[key]}
            assert recorded == pytest.approx(want[key], abs=1e-12, nan_ok=True), (name, key)
        assert d.recommended_n == want["recommended_n"]
        assert sorted(d.hacked_queries["query_id"]) == want["hacked"] and sorted(d.collapsed_users["user_id"]) == want["collapsed"]
    rnd = diag.scorers["random"]
    assert np.allclose(rnd.observed.mean, pool["rougeL"].mean()) and rnd.recommended_n == 1
    assert diag.frac_oracle_gain("oracle") == pytest.approx(1.0) and diag.frac_oracle_gain("random") == pytest.approx(0.0, abs=1e-12)


def test_diagnose_refuses_settings_the_pool_cannot_support():
    from ttpkit.errors import ConfigError
    from ttpkit.scaling import diagnose

    pool = _population(n_users=4, m=8, seed=1)
    with pytest.raises(ConfigError, match=r"m_fit must be in \[2, 8\].*got 16"):
        diagnose(pool, ["rm"], m_fit=16)
    with pytest.raises(ConfigError, match="N=16 is larger than the pools"):
        diagnose(pool, ["rm"], ns=[1, 16])
    assert list(diagnose(pool, ["rm"]).scorers) == ["oracle", "rm"]  # the oracle is always there: it is the unit of error


def _bending_population(n_queries=400, m=64, a=0.06, b=-0.015, p=0.0, h=-0.1, bent_users=None, seed=0):
    """Pools whose utility responds to the score's normal quantile z as a z + b (z² - 1) (the bend form);
    with p > 0, a share p of candidates is ranked above everyone else with centred utility h (the mixture)."""
    rng = np.random.default_rng(seed)
    frames = []
    for q in range(n_queries):
        user = f"u{q // 4}"
        mu = rng.uniform(0.15, 0.35)
        z = rng.standard_normal(m)
        bq = b if bent_users is None or user in bent_users else 0.0
        util = mu + a * z + bq * (z**2 - 1) + 0.02 * rng.standard_normal(m)
        score = z.copy()
        if p > 0:
            hacked = rng.random(m) < p
            score[hacked] = 10 + rng.random(hacked.sum())
            util[hacked] = mu + h
        frames.append(pd.DataFrame({"query_id": f"q{q}", "user_id": user, "idx": np.arange(m), "text": "",
                                    "rougeL": util, "score_rm": score}))
    return pd.concat(frames, ignore_index=True)


def test_bend_form_recovers_a_known_curvature_and_its_peak():
    from ttpkit.scaling import find_peak

    ns = [1, 2, 4, 8, 16, 32, 64]
    pool = _bending_population()
    fit = fit_law(pool, "rm", m_fit=8)
    assert fit.bend_a == pytest.approx(0.06, abs=0.01) and fit.bend_b == pytest.approx(-0.015, abs=0.004)
    assert fit.form == "bend" and fit.bend_b_hi < 0
    observed = np.array(curves(pool, ["rm"], "rougeL", ns, n_boot=10)["rm"].mean)
    gain = float(np.ptp(observed))
    assert np.abs(fit.predict(ns, "bend") - observed).max() < 0.15 * gain  # from 8 candidates out to 64
    true = 0.06 * np.array([expected_max_normal(n) for n in ns]) - 0.015 * (np.array([expected_sq_max_normal(n) for n in ns]) - 1)
    want = find_peak(ns, true)
    got = find_peak(ns, fit.predict(ns, "bend"))
    assert want.inside and got.inside and want.n / 2 <= got.n <= want.n * 2
    # the monotone forms cannot bend: they keep rising past the peak
    assert not find_peak(ns, fit.predict(ns, "tail")).inside


def test_mixture_form_recovers_a_known_hacked_share():
    pool = _bending_population(n_queries=300, b=0.0, p=0.08, h=-0.12, seed=1)
    fit = fit_law(pool, "rm", m_fit=8)
    assert fit.mix_p == pytest.approx(0.08, abs=0.03)
    assert fit.mix_h == pytest.approx(-0.12, abs=0.04)
    ns = [1, 2, 4, 8, 16, 32, 64]
    observed = np.array(curves(pool, ["rm"], "rougeL", ns, n_boot=10)["rm"].mean)
    assert np.abs(fit.predict(ns, "mixture") - observed).max() < 0.15 * np.ptp(observed)  # from 8 candidates out to 64


def test_the_bending_forms_reduce_to_todays_law_without_a_bend():
    pool = _bending_population(n_queries=300, b=0.0, seed=2)
    fit = fit_law(pool, "rm", m_fit=8)
    ns = [1, 2, 4, 8, 16, 32, 64]
    assert abs(fit.bend_b) < 0.003 and fit.form == "tail"  # no measurable curvature: the diagnosis keeps today's form
    assert fit.predict(ns, fit.form) == pytest.approx(fit.predict(ns, "tail"), abs=0)
    assert fit.mix_p * abs(fit.mix_h) < 0.003  # no hacked share worth the name
    tail, bend = fit.predict(ns, "tail"), fit.predict(ns, "bend")
    assert np.abs(bend - tail).max() < 0.01
    # with b = 0 (p = 0) the bend (mixture) form *is* the tail form: the same slope on e_N
    from dataclasses import replace

    slope = fit.rho_eff * fit.sigma_eff * (1 - fit.c)
    assert replace(fit, bend_a=slope, bend_b=0.0).predict(ns, "bend") == pytest.approx(tail, abs=1e-12)
    assert replace(fit, mix_k=slope, mix_p=0.0).predict(ns, "mixture") == pytest.approx(tail, abs=1e-12)


def test_expected_square_of_the_max_of_normals():
    rng = np.random.default_rng(0)
    for n in (1, 2, 8, 32):
        draws = rng.standard_normal((200_000, n)).max(1)
        assert expected_sq_max_normal(n) == pytest.approx(float((draws**2).mean()), rel=0.01)
    assert expected_sq_max_normal(1) == 1.0 and expected_sq_max_normal(2) == pytest.approx(1.0)  # E[max(X,Y)²] = E[X²]


@pytest.mark.parametrize(
    "curve, n, inside",
    [([0.1, 0.2, 0.3, 0.35], 8, False),  # monotone: the peak is the last N
     ([0.1, 0.2, 0.25, 0.22], 4, True),  # peaks at N=4 and falls
     ([0.1, 0.2, 0.2, 0.2], 2, False),  # a plateau is not a fall
     ([0.3, 0.2, 0.1, 0.05], 1, True)],  # falls from the start
)
def test_find_peak_on_constructed_curves(curve, n, inside):
    from ttpkit.scaling import find_peak

    peak = find_peak([1, 2, 4, 8], curve)
    assert (peak.n, peak.inside) == (n, inside)
    assert peak.drop == pytest.approx(max(curve) - curve[-1])
    assert not find_peak([1, 2, 4, 8], [0.1, 0.2, 0.25, 0.24], tol=0.02).inside  # a drop within the tolerance


def test_diagnosis_stops_at_the_predicted_peak_and_names_who_bends():
    from ttpkit.scaling import diagnose

    bent = {f"u{i}" for i in range(0, 50, 2)}
    pool = _bending_population(n_queries=200, b=-0.03, bent_users=bent, seed=4)
    diag = diagnose(pool, ["rm"], m_fit=8, max_n=64)
    d = diag.scorers["rm"]
    assert d.fit.form == "bend" and d.predicted_peak.inside
    assert d.recommended_n <= d.predicted_peak.n
    assert set(d.bend_users["user_id"].head(10)) <= bent  # the users that bend come first
    assert d.bend_queries["b"].is_monotonic_increasing
    law = diag.as_dict()["scorers"]["rm"]
    assert law["form"] == "bend" and law["peak"]["predicted"]["n"] == d.predicted_peak.n


def test_max_n_is_the_name_and_n_max_still_works_with_a_warning():
    from ttpkit.scaling import diagnose, tail_gain

    pool = _population(n_users=6, m=8, seed=2)
    new = diagnose(pool, ["rm"], "rougeL", 4, 16)  # positional order unchanged: m_fit, then max_n
    with pytest.warns(DeprecationWarning, match="n_max"):
        old = diagnose(pool, ["rm"], n_max=16)
    assert new.max_n == old.max_n == 16 and new.ns_pred == old.ns_pred and max(new.ns_pred) == 16
    assert repr(new.as_dict()) == repr(old.as_dict()) and new.as_dict()["settings"]["m"] == 8  # repr: NaN R²s compare equal
    assert tail_gain(0.5, 0.1, 8) == 0.5 * 0.1 * expected_max_normal(8) and tail_gain(0.5, 0.1, 1) == 0.0
