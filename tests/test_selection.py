from __future__ import annotations

import numpy as np
import pytest

from ttpkit.errors import TtpkitError
from ttpkit.selection import Rule, apply_rule


def test_rules():
    mu, sd = np.array([0.5, 0.4, 0.6]), np.array([0.0, 0.1, 0.3])
    assert np.array_equal(apply_rule(mu, sd, "mean"), mu)
    assert np.allclose(apply_rule(mu, sd, "lcb:1"), [0.5, 0.3, 0.3])
    assert np.allclose(apply_rule(mu, sd, "ucb:2"), [0.5, 0.6, 1.2])
    assert int(np.argmax(apply_rule(mu, sd, "lcb:1"))) == 0  # risk-averse picks the sure one
    assert int(np.argmax(apply_rule(mu, sd, "ucb:1"))) == 2


def test_thompson_is_seeded_and_deterministic_rms_reduce_to_mean():
    mu, sd = np.linspace(0, 1, 50), np.full(50, 0.2)
    a, b = apply_rule(mu, sd, "thompson", seed=4), apply_rule(mu, sd, "thompson", seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, apply_rule(mu, sd, "thompson", seed=5))
    assert np.std(a - mu) == pytest.approx(0.2, rel=0.3)
    for rule in ("lcb:3", "ucb:3", "thompson"):
        assert np.array_equal(apply_rule(mu, None, rule), mu)


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
