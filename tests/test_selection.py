from __future__ import annotations

import numpy as np
import pytest

from ttpkit.errors import ConfigError, DataError, TtpkitError
from ttpkit.selection import Rule, apply_rule


def test_rules():
    mu, sd = np.array([0.5, 0.4, 0.6]), np.array([0.0, 0.1, 0.3])
    assert np.array_equal(apply_rule(mu, sd, "mean"), mu)
    assert np.allclose(apply_rule(mu, sd, "lcb:1"), [0.5, 0.3, 0.3])
    assert np.allclose(apply_rule(mu, sd, "ucb:2"), [0.5, 0.6, 1.2])
    assert int(np.argmax(apply_rule(mu, sd, "lcb:1"))) == 0  # risk-averse picks the sure one
    assert int(np.argmax(apply_rule(mu, sd, "ucb:1"))) == 2


def test_thompson_is_seeded_and_rules_needing_a_std_refuse_deterministic_rms():
    mu, sd = np.linspace(0, 1, 50), np.full(50, 0.2)
    a, b = apply_rule(mu, sd, "thompson", seed=4), apply_rule(mu, sd, "thompson", seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, apply_rule(mu, sd, "thompson", seed=5))
    assert np.std(a - mu) == pytest.approx(0.2, rel=0.3)
    for rule in ("lcb:3", "ucb:3", "thompson"):
        with pytest.raises(ConfigError, match="standard deviations"):
            apply_rule(mu, None, rule)  # it would silently equal the mean
    with pytest.raises(DataError, match=">= 0"):
        apply_rule(mu, -sd, "lcb:1")
    assert np.array_equal(apply_rule(mu, None, "soft:0.1"), mu)


@pytest.mark.parametrize("bad", ["best", "lcb:x", "ucb:-1", "mean:2"])
def test_bad_rules_list_known_ones(bad):
    with pytest.raises(TtpkitError, match="known rules|kappa"):
        Rule.parse(bad)


def test_next_round_gain_matches_monte_carlo_and_shrinks_with_a_high_best():
    from ttpkit.selection import next_round_gain

    rng = np.random.default_rng(0)
    seen = rng.standard_normal(6)
    m, s = seen.mean(), seen.std(ddof=1)
    draws = rng.normal(m, s, (400_000, 4)).max(1)
    assert next_round_gain(seen, 4) == pytest.approx(np.maximum(draws - seen.max(), 0).mean() / s, rel=0.01)
    assert next_round_gain(seen, 4, scale=2 * s) == pytest.approx(next_round_gain(seen, 4) / 2)
    high = np.append(seen, m + 4 * s)  # a very good candidate already in hand: little left to gain
    assert next_round_gain(high, 4) < next_round_gain(seen, 4) and next_round_gain(seen, 8) > next_round_gain(seen, 4)
    assert next_round_gain(np.ones(4), 4) == 0.0 and next_round_gain(seen, 0) == 0.0


def test_one_stopping_rule_is_what_personalize_and_the_offline_replay_did():
    from ttpkit.selection import next_round, next_round_gain, round_gain

    rng = np.random.default_rng(0)
    for _ in range(200):
        max_n, round_size = int(rng.integers(2, 20)), int(rng.integers(1, 6))
        round_size = min(round_size, max_n)
        k, t = int(rng.integers(1, max_n + 1)), float(rng.choice([0.0, 0.02, 0.1, 0.5, 10.0]))
        values, scale = rng.standard_normal(k), float(rng.choice([0.5, 1.0]))
        step = min(round_size, max_n - k)
        # online.personalize before: stop at max_n, else when 2+ seen and the gain of the next step is below t
        old_stop = k >= max_n or (k >= 2 and next_round_gain(values, step, scale) < t)
        assert next_round(values, max_n, round_size, t, scale) == (0 if old_stop else step)
        if k >= 2:  # scaling.adaptive_curve before (it also stopped after one candidate, which now takes another round)
            old_gain = next_round_gain(values, step, scale) if k < max_n else -np.inf
            assert round_gain(values, max_n, round_size, scale) == old_gain
    assert round_gain(np.ones(1), 8, 1) == np.inf and next_round(np.ones(1), 8, 1, 0.1) == 1
    assert next_round(np.arange(8.0), 8, 4, -np.inf) == 0  # max_n stops whatever the threshold
