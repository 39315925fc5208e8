"""Is a probabilistic reward model's variance any good? Likelihood, coverage, ranking and reliability.

For predicted means μ, standard deviations σ and observed utilities u:

- NLL: mean Gaussian negative log-likelihood, 0.5 ln(2πσ²) + (u − μ)² / 2σ²;
- coverage: the fraction of utilities inside the central 50% and 90% intervals
  μ ± z σ (calibrated: 0.50 and 0.90);
- ρ(σ, |u − μ|): Spearman correlation of the predicted std with the error
  (does the model know when it is wrong?);
- reliability: for bins of predicted σ, the observed root-mean-square error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Calibration", "calibration"]


@dataclass(frozen=True)
class Calibration:
    """Calibration of (μ, σ) against utilities (see the module docstring)."""

    nll: float
    coverage50: float
    coverage90: float
    spearman_std_error: float
    bins_std: tuple[float, ...]  # mean predicted σ per bin (quantile bins of σ)
    bins_rmse: tuple[float, ...]  # observed RMS error per bin

    def as_dict(self) -> dict[str, float]:
        """The scalar measures."""
        return {"nll": self.nll, "coverage50": self.coverage50, "coverage90": self.coverage90,
                "spearman_std_error": self.spearman_std_error}


def calibration(mean: np.ndarray, std: np.ndarray, utility: np.ndarray, bins: int = 10) -> Calibration:
    """Calibration measures of predicted means and stds against utilities (all (R,))."""
    from scipy.stats import norm, spearmanr

    mu, sd, u = (np.asarray(a, float) for a in (mean, std, utility))
    sd = np.maximum(sd, 1e-9)
    err = u - mu
    nll = float(np.mean(0.5 * np.log(2 * np.pi * sd**2) + err**2 / (2 * sd**2)))
    cover = {p: float(np.mean(np.abs(err) <= norm.ppf(0.5 + p / 2) * sd)) for p in (0.5, 0.9)}
    rho = spearmanr(sd, np.abs(err)).statistic if np.ptp(sd) > 0 else float("nan")
    edges = np.unique(np.quantile(sd, np.linspace(0, 1, bins + 1)))
    which = np.clip(np.searchsorted(edges, sd, side="right") - 1, 0, len(edges) - 2) if len(edges) > 1 else np.zeros(len(sd), int)
    b_sd, b_rmse = [], []
    for b in range(max(len(edges) - 1, 1)):
        sel = which == b
        if sel.any():
            b_sd.append(float(sd[sel].mean()))
            b_rmse.append(float(np.sqrt(np.mean(err[sel] ** 2))))
    return Calibration(nll, cover[0.5], cover[0.9], float(rho), tuple(b_sd), tuple(b_rmse))
