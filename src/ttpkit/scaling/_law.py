"""The four-quantity law of best-of-N: its forms, their fit, the peak and compute-aware N (re-exported by :mod:`ttpkit.scaling`).

For query q with utilities u and scores r over its pool: mu_q = mean(u),
s_q = std(u), rho_q = corr(r, u). If (u, r) were bivariate normal, best-of-N by
r would give mu_q + rho_q * s_q * e_N with e_N = E[max of N iid N(0, 1)].
Averaging over queries and splitting off the collapsed ones:

    E_N = mu + (1 - c) * rho * sigma * e_N,      ceiling: mu + sigma * e_N

- mu: mean utility; c: fraction of queries whose user is collapsed (score spread
  below tau times the global spread); sigma: mean s_q over the other queries;
  rho: their s-weighted mean rho_q.

Pearson rho over the whole pool misses the tail that best-of-N selects from, so
:class:`LawFit` also carries *effective* quantities fitted to the exact small-N
curves of the same candidates (N <= M_fit): sigma_eff from the oracle curve and
rho_eff from the scorer's curve. The ``tail`` form uses them with e_N; the
``log`` form replaces sigma * e_N by the fitted logarithmic ceiling b * ln N.
All forms keep the law's meaning: rho < 0 means more compute hurts.

Two forms can bend (peak, then fall, or flatten), fitted on the same small-N
curves (docs/theory.md derives both):

- ``bend``: the utility of the kept candidate responds to its score's normal
  quantile z as a z + b (z^2 - 1), so E_N = mu + a e_N + b (v_N - 1) with
  v_N = E[max^2 of N standard normals]. b < 0 is a tail correlation that falls
  as the score rises (b = 0 is the ``tail`` form). :attr:`LawFit.form` picks it
  only when b is below 0 with 95% confidence over a bootstrap of the queries.
- ``mixture``: a share p of candidates is ranked above the bulk with mean
  centred utility h; E_N = mu + w (d + k e_N) + (1 - w) h with w = (1 - p)^N and
  d = -p h / (1 - p) (p = 0 is the ``tail`` form).

The sixth form, ``dist``, is not regressed on the curve at all: it is the
exact best-of-N expectation under the candidates' fitted joint distribution of
score and utility (:mod:`ttpkit.scaling._dist`); ``tails``, its Best-of-Tails-style
baseline, fits each query's own score tail and slope without pooling.

e_N and v_N come from :mod:`ttpkit.scaling._normal`, the per-query quantities
from :mod:`ttpkit.scaling._stats`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ttpkit.errors import ConfigError
from ttpkit.pool import ScorerRef
from ttpkit.scaling._bon import best_of_n
from ttpkit.scaling._bootstrap import bootstrap_means
from ttpkit.scaling._dist import DistFit, fit_dist, tails_gain
from ttpkit.scaling._normal import _e, _v, expected_max_normal
from ttpkit.scaling._stats import HACK_THRESHOLD, QueryStats, query_stats

__all__ = ["FORMS", "LawFit", "Peak", "bend_coefficients", "find_peak", "fit_law", "is_monotone", "oracle_share", "predict", "recommend_n", "tail_gain"]

FORMS = ("plain", "tail", "log", "bend", "mixture", "dist", "tails")


def _bend_design(ns: Sequence[int]) -> np.ndarray:
    """(len(ns), 2) regressors of the bend form: e_N and v_N - 1 (both 0 at N = 1)."""
    return np.stack([_e(ns), _v(ns) - 1.0], axis=1)


def _mixture_term(ns: Sequence[int], k: float, p: float, h: float) -> np.ndarray:
    """E_N - mu of the hacking mixture: w (d + k e_N) + (1 - w) h, w = (1 - p)^N, d = -p h / (1 - p)."""
    n = np.asarray(ns, dtype=np.float64)
    w = (1.0 - p) ** n
    return w * (-p * h / (1.0 - p) + k * _e(ns)) + (1.0 - w) * h


def _fit_mixture(ns: Sequence[int], centred: np.ndarray) -> tuple[float, float, float]:
    """Least-squares (k, p, h) of the mixture on a centred small-N curve (multi-start; p in [0, .5])."""
    from scipy.optimize import least_squares

    e = _e(ns)
    n = np.asarray(ns, dtype=np.float64)

    def residual(t: np.ndarray) -> np.ndarray:  # _mixture_term(ns, *t) - centred, with e_N computed once
        k, p, h = t
        w = (1.0 - p) ** n
        return w * (-p * h / (1.0 - p) + k * e) + (1.0 - w) * h - centred

    def jacobian(t: np.ndarray) -> np.ndarray:  # (len(ns), 3): d residual / d (k, p, h), exact
        k, p, h = t
        w, dw = (1.0 - p) ** n, -n * (1.0 - p) ** (n - 1)
        inner = -p * h / (1.0 - p) + k * e
        return np.stack([w * e, dw * (inner - h) - w * h / (1.0 - p) ** 2, 1.0 - w - w * p / (1.0 - p)], axis=1)

    e_last = float(e[-1])
    k0 = float(np.clip(centred[-1] / e_last, -0.9, 0.9)) if e_last > 0 else 0.0
    best = None
    for p0 in (0.01, 0.05, 0.15, 0.3):
        for h0 in (-0.05, 0.0, 0.05):
            sol = least_squares(residual, [k0, p0, h0], jac=jacobian, bounds=([-1, 0, -1], [1, 0.5, 1]))
            if best is None or sol.cost < best.cost:
                best = sol
    k, p, h = (float(x) for x in best.x)
    return k, p, h


def bend_coefficients(per_query: np.ndarray, ns: Sequence[int]) -> np.ndarray:
    """(Q, 2) least-squares (a_q, b_q) of each query's centred small-N curve on the bend form.

    Averaging the rows gives the population's (a, b); the queries with the most
    negative b_q are the ones that make the curve bend.
    """
    return per_query @ np.linalg.pinv(_bend_design(ns)).T


@dataclass(frozen=True)
class Peak:
    """Where a curve over a grid of N stops rising.

    Attributes:
        n: The N of the highest value (the first one on ties).
        value: The curve there.
        end_n: The largest N of the grid.
        drop: Curve at ``n`` minus curve at ``end_n`` (>= 0).
        inside: True when the peak is before ``end_n`` and the curve falls by more than the tolerance.
    """

    n: int
    value: float
    end_n: int
    drop: float
    inside: bool


def find_peak(ns: Sequence[int], curve: Sequence[float], tol: float = 0.0) -> Peak:
    """The peak of a curve: argmax N, and whether it falls by more than ``tol`` after it before the grid ends."""
    ns, y = [int(n) for n in ns], np.asarray(curve, dtype=np.float64)
    if len(ns) != len(y) or not len(ns):
        raise ConfigError(f"find_peak needs one value per N, got {len(ns)} N and {len(y)} values")
    k = int(np.argmax(y >= y.max() - 1e-12))
    drop = float(y[k] - y[-1])
    return Peak(n=ns[k], value=float(y[k]), end_n=ns[-1], drop=drop, inside=bool(k < len(ns) - 1 and drop > tol))


def oracle_share(curve: Sequence[float], oracle: Sequence[float]) -> float:
    """A curve's gain from its first to its last N as a share of the oracle curve's (NaN if the oracle gains nothing)."""
    gain = oracle[-1] - oracle[0]
    return float((curve[-1] - curve[0]) / gain) if gain > 0 else float("nan")


def is_monotone(curve: Sequence[float], tol: float = 1e-9) -> bool:
    """Whether a curve never falls by more than ``tol`` from one N to the next."""
    return bool(np.all(np.diff(np.asarray(curve, dtype=np.float64)) >= -tol))


@dataclass(frozen=True)
class LawFit:
    """The law's quantities for one scorer, measured on ``m_fit`` candidates per query.

    Attributes:
        scorer: Scorer name.
        mu: Mean utility.
        c: Fraction of queries whose user is collapsed.
        sigma: Mean utility std over non-collapsed queries.
        rho: s-weighted mean Pearson rho_q over non-collapsed queries.
        sigma_eff: sigma fitted to the exact oracle curve at N <= m_fit.
        rho_eff: rho fitted to the scorer's exact curve at N <= m_fit.
        log_b: Slope b of the oracle's a + b ln N fitted at N <= m_fit.
        rho_log: rho fitted to the scorer's curve on (1 - c) * rho * b ln N at N <= m_fit.
        n_queries: Queries measured.
        m_fit: Candidates per query used.
        hacked: Fraction of queries with rho_q < -0.1.
        bend_a, bend_b: (a, b) of the ``bend`` form at N <= m_fit.
        bend_b_hi: One-sided 95% upper bound of b over a bootstrap of the queries.
        mix_k, mix_p, mix_h: (k, p, h) of the ``mixture`` form at N <= m_fit.
        dist: The ``dist`` form's fitted distribution (:mod:`ttpkit.scaling._dist`), on the same candidates.
        stats: Those candidates' per-query statistics, which the ``tails`` baseline fits each query's own tail on.
    """

    scorer: str
    mu: float
    c: float
    sigma: float
    rho: float
    sigma_eff: float
    rho_eff: float
    log_b: float
    rho_log: float
    n_queries: int
    m_fit: int
    hacked: float
    bend_a: float = 0.0
    bend_b: float = 0.0
    bend_b_hi: float = 0.0
    mix_k: float = 0.0
    mix_p: float = 0.0
    mix_h: float = 0.0
    dist: DistFit | None = field(default=None, repr=False, compare=False)
    stats: QueryStats | None = field(default=None, repr=False, compare=False)

    @property
    def form(self) -> str:
        """The form the diagnosis trusts: ``bend`` when its curvature is measurably negative, else ``tail``."""
        return "bend" if self.bend_b_hi < 0 else "tail"

    def predict(self, ns: Sequence[int], form: str = "plain") -> np.ndarray:
        """Predicted E_N for each N under a form of :data:`FORMS`."""
        return predict(self, ns, form)

    def ceiling(self, ns: Sequence[int], form: str = "plain") -> np.ndarray:
        """Oracle ceiling for each N under a form."""
        if form == "log":
            return self.mu + self.log_b * np.log(np.asarray(ns, float))
        return self.mu + (self.sigma_eff if form == "tail" else self.sigma) * _e(ns)

    def as_dict(self) -> dict[str, float | int | str]:
        """The quantities as a JSON-ready dict (the ``dist`` form's as ``dist_<quantity>``)."""
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("dist", "stats")}
        if self.dist is not None:
            out.update({f"dist_{k}": v for k, v in self.dist.summary().items()})
        return out


def tail_gain(rho_eff: float, sigma_eff: float, n: int) -> float:
    """The tail form's gain of best-of-N over one sample: rho_eff * sigma_eff * e_N (for one user, c = 0)."""
    return rho_eff * sigma_eff * expected_max_normal(n)


def predict(fit: LawFit, ns: Sequence[int], form: str = "plain") -> np.ndarray:
    """E_N under one form: plain, tail (effective rho and sigma), log (b ln N), bend or mixture (see the module docstring)."""
    if form not in FORMS:
        raise ConfigError(f"unknown law form {form!r}; known forms: {', '.join(FORMS)}")
    if form == "bend":
        return fit.mu + _bend_design(ns) @ np.array([fit.bend_a, fit.bend_b])
    if form == "mixture":
        return fit.mu + _mixture_term(ns, fit.mix_k, fit.mix_p, fit.mix_h)
    if form == "dist":
        if fit.dist is None:
            raise ConfigError("this law fit has no dist form (fit it with fit_law)")
        return fit.dist.predict(ns)
    if form == "tails":
        if fit.stats is None:
            raise ConfigError("this law fit has no candidates for the tails form (fit it with fit_law)")
        return fit.mu + tails_gain(fit.stats, ns)
    if form == "plain":
        return fit.mu + (1 - fit.c) * fit.rho * fit.sigma * _e(ns)
    if form == "tail":
        return fit.mu + (1 - fit.c) * fit.rho_eff * fit.sigma_eff * _e(ns)
    return fit.mu + (1 - fit.c) * fit.rho_log * fit.log_b * np.log(np.asarray(ns, float))


def fit_law(
    pool: pd.DataFrame,
    scorer: str | ScorerRef,
    utility: str = "rougeL",
    m_fit: int | None = None,
    tau: float = 0.05,
    seed: int = 0,
    n_boot: int = 200,
) -> LawFit:
    """Measure the law's quantities for one scorer.

    Args:
        pool: Labelled pool (with the scorer's column).
        scorer: Scorer name.
        utility: Utility column.
        m_fit: Candidates per query to measure on (the first by idx); all by default.
        tau: Collapse threshold.
        seed: Seed of the ``thompson`` rule and of the bootstrap of the bend's curvature.
        n_boot: Bootstrap resamples of the queries for :attr:`LawFit.bend_b_hi`.
    """
    qs = query_stats(pool, scorer, utility, tau, seed, m_fit)
    m = qs.utils.shape[1]
    keep = ~qs.collapsed
    c = float(qs.collapsed.mean())
    sigma = float(qs.s[keep].mean()) if keep.any() else 0.0
    ssum = float(qs.s[keep].sum())
    rho = float((qs.s[keep] * qs.rho[keep]).sum() / ssum) if ssum > 0 else 0.0
    mu = float(qs.mu.mean())
    ns = list(range(1, m + 1))
    e = _e(ns)
    live = qs.utils[keep] if keep.any() else qs.utils
    oracle = best_of_n(live, live, ns).mean(0)  # sigma_eff, like sigma, is measured on non-collapsed queries
    # collapsed users' scores are treated as ties (selection is random for them), as in the plain law
    r = np.where(qs.collapsed[:, None], 0.0, qs.scores)
    per_query = best_of_n(r, qs.utils, ns)
    observed = per_query.mean(0)
    ee = float((e * e).sum())
    sigma_eff = float((e * (oracle - live.mean())).sum() / ee) if ee > 0 else 0.0
    slope = float((e * (observed - mu)).sum() / ee) if ee > 0 else 0.0
    denom = (1 - c) * sigma_eff
    rho_eff = slope / denom if abs(denom) > 1e-12 else 0.0
    ln = np.log(np.asarray(ns, float))
    ll = float((ln * ln).sum())
    log_b = float((ln * (oracle - live.mean())).sum() / ll) if ll > 0 else 0.0  # b of mu + b ln N (N=1 is the mean)
    slope_log = float((ln * (observed - mu)).sum() / ll) if ll > 0 else 0.0
    denom_log = (1 - c) * log_b
    rho_log = slope_log / denom_log if abs(denom_log) > 1e-12 else 0.0
    coef = bend_coefficients(per_query - qs.mu[:, None], ns)  # (Q, 2); N=1 is fitted exactly by mu
    bend_a, bend_b = coef.mean(0) if m > 2 else (slope, 0.0)
    boot = bootstrap_means(coef[:, 1], n_boot, seed) if m > 2 else [0.0]
    mix = _fit_mixture(ns, observed - mu) if m > 2 else (slope, 0.0, 0.0)
    return LawFit(
        scorer=str(scorer),
        mu=mu,
        c=c,
        sigma=sigma,
        rho=rho,
        sigma_eff=sigma_eff,
        rho_eff=float(rho_eff),
        log_b=log_b,
        rho_log=float(rho_log),
        n_queries=len(qs.mu),
        m_fit=m,
        hacked=float((qs.rho < HACK_THRESHOLD).mean()),
        bend_a=float(bend_a),
        bend_b=float(bend_b),
        bend_b_hi=float(np.quantile(boot, 0.95)),
        mix_k=mix[0],
        mix_p=mix[1],
        mix_h=mix[2],
        dist=fit_dist(qs),
        stats=qs,
    )


def recommend_n(
    curve: Sequence[float], ns: Sequence[int], cost_per_sample: float = 1.0, min_gain_per_cost: float = 1e-3
) -> int:
    """Smallest N in ``ns`` beyond which doubling gains less than the threshold per unit of cost.

    Going from N to the next N' in ``ns`` costs (N' - N) * cost_per_sample; it
    is worth it while (E_N' - E_N) / that cost >= ``min_gain_per_cost``.
    """
    ns = list(ns)
    for k in range(len(ns) - 1):
        extra = (ns[k + 1] - ns[k]) * cost_per_sample
        if (curve[k + 1] - curve[k]) / extra < min_gain_per_cost:
            return int(ns[k])
    return int(ns[-1])
