from __future__ import annotations

import numpy as np
import pytest

from ttpkit.reward.calibration import calibration


def test_calibrated_predictions_cover_their_intervals_and_rank_their_errors():
    rng = np.random.default_rng(0)
    sd = rng.uniform(0.01, 0.3, 20000)
    mean = rng.random(20000)
    u = mean + sd * rng.standard_normal(20000)
    cal = calibration(mean, sd, u)
    assert cal.coverage50 == pytest.approx(0.5, abs=0.02) and cal.coverage90 == pytest.approx(0.9, abs=0.02)
    assert cal.spearman_std_error > 0.4
    assert np.allclose(cal.bins_rmse, cal.bins_std, rtol=0.1)  # reliability: error grows with σ as predicted
    over = calibration(mean, sd * 5, u)  # over-dispersed: covers too much, worse likelihood
    assert over.coverage50 > 0.9 and over.nll > cal.nll
    const = calibration(mean, np.full(20000, 0.1), u)
    assert np.isnan(const.spearman_std_error) and len(const.bins_std) == 1
