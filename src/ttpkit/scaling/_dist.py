"""The ``dist`` form of the law: best-of-N predicted from the candidates' joint distribution of score and utility.

The regression forms of :mod:`ttpkit.scaling._law` fit a few parameters to the
aggregate curve at N <= M_fit. A hacked share of 2% has barely touched that
curve at N = 8, so its parameters are not identified there; they are in the
candidates (docs/theory.md, "The distributional form"). This form pools the
candidates of every live query (collapsed users are left out, as in the law)
and estimates, from the first ``m_fit`` of each:

- **standardized scores** z. Each candidate is centred and scaled by its
  query's *other* candidates (leave one out), so a hack with an extreme score
  does not hide itself by inflating its own query's spread. The per-query
  scale is shrunk toward the median over queries with :data:`PRIOR_DOF`
  pseudo degrees of freedom (a random effect on the spread);
- **centred utilities** d, the utility minus the mean of the query's other
  candidates (a random effect on the query's mean);
- the **score distribution** F of z: empirical over the observed range (so a
  separated top cluster keeps its place), and past the largest observed z a
  generalized Pareto tail fitted above the pooled :data:`TAIL_LEVEL` quantile
  (by probability-weighted moments), so best-of-N is carried past the
  observed range;
- a **hacked top cluster** (:func:`ttpkit.scaling._tails.hack_cluster`): the
  candidates a normal bulk of z cannot explain, grown or pruned by their
  utility (a hack scores high and is worth little, so d separates what a noisy
  z from 8 candidates does not), each the best of its query by raw score. Its
  share p (a Beta law across queries) and mean d, h, enter best-of-N as a
  draw that beats the bulk; F and g below are the bulk's;
- the **conditional mean** g(z) = E[d | z]: means of d over bins of z, finer in
  the tail, joined linearly, and continued past the last bin with the slope of
  the top quarter. A hacked tail is g falling at high z.

The predicted gain of best-of-N is the exact expectation of g under the law of
the largest of N draws from F, ∫ g d(F^N) = ∫_0^1 g(F^{-1}(y^{1/N})) dy,
computed on a grid of y for any N (no simulation noise). Leaving one out adds
the noise of the other candidates' mean to z and d alike, which widens F by
sqrt(m / (m - 1)) without biasing g; F's quantiles are narrowed by that factor
(exact for a bivariate normal population, where the form reduces to the law's
mu + rho sigma e_N). Per-query slopes need no random effect: the prediction is
linear in g, so they average out.

What it assumes: within a query, candidates are exchangeable draws; after
standardization, every live query shares F and g. A hack share that differs
from query to query is pooled into one share, which overstates the fall at
large N for the queries without hacks; docs/results.md reports how often that
matters.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ttpkit.errors import ConfigError
from ttpkit.scaling._stats import QueryStats
from ttpkit.scaling._tails import beta_binomial, gpd_pwm, hack_cluster

__all__ = ["DistFit", "dist_band", "fit_dist", "gpd_pwm", "tails_gain"]

PRIOR_DOF = 4.0  # pseudo degrees of freedom of the shrunk per-query scale (0, 1 and 4 tried on the synthetic populations)
TAIL_LEVEL = 0.9  # the pooled quantile above which F is a generalized Pareto tail
GRID = 2000  # points of the y grid of the best-of-N integral
MIN_BIN = 8  # candidates per bin of g, at least
BIN_LEVELS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 1.0)  # quantiles of z


@dataclass(frozen=True)
class DistFit:
    """The fitted joint distribution of standardized score and centred utility (see the module docstring).

    Attributes:
        mu: Mean utility over all queries.
        live: Share of queries whose user is not collapsed (1 - c).
        body: Every pooled z, sorted and narrowed by the leave-one-out factor: F up to ``level``.
        threshold: The largest narrowed z, where the fitted tail takes over.
        level: F at ``threshold`` (n / (n + 1) for n pooled candidates).
        xi, beta: The generalized Pareto tail past ``threshold`` (fitted above the :data:`TAIL_LEVEL` quantile).
        knots_z, knots_g: The conditional mean g(z) at its knots (z in leave-one-out units).
        tail_slope: g's slope past the last knot.
        widen: The leave-one-out factor sqrt(m / (m - 1)).
        sigma: Std of the centred utility (corrected like z): the law's sigma.
        rho: Pooled correlation of z and d: the law's rho.
        tail_drop: How far g falls from its highest knot to its last, in units of sigma (0 when it keeps rising).
        spread: Median per-query score std over all queries, relative to the live ones' (near 0: collapse).
        n_points: Candidates the fit pooled.
        p: Share of candidates in a hacked or separated top cluster (0: none found); F and g are then the bulk's.
        h: Mean centred utility of the cluster's candidates (below 0: hacks).
        share_a, share_b: Beta law of the cluster share across queries (infinite: one share for all).
    """

    mu: float
    live: float
    body: np.ndarray = field(repr=False)
    threshold: float
    level: float
    xi: float
    beta: float
    knots_z: np.ndarray = field(repr=False)
    knots_g: np.ndarray = field(repr=False)
    tail_slope: float
    widen: float
    sigma: float
    rho: float
    tail_drop: float
    spread: float
    n_points: int
    p: float = 0.0
    h: float = 0.0
    share_a: float = float("inf")
    share_b: float = float("inf")

    def survive(self, ns: Sequence[int]) -> np.ndarray:
        """E_q[(1 - p_q)^N]: the chance that none of N draws is in the separated top cluster (beta-binomial p_q)."""
        n = np.asarray(ns, dtype=np.float64)
        if self.p <= 0:
            return np.ones_like(n)
        if not np.isfinite(self.share_a):
            return (1.0 - self.p) ** n
        from scipy.special import betaln

        return np.exp(betaln(self.share_a, self.share_b + n) - betaln(self.share_a, self.share_b))

    def quantile(self, t: np.ndarray) -> np.ndarray:
        """F^{-1}(t): the empirical body below ``level``, the Pareto tail above it."""
        t = np.asarray(t, dtype=np.float64)
        out = np.empty_like(t)
        low = t <= self.level
        if len(self.body):
            pos = np.clip(t[low] / self.level, 0.0, 1.0) * (len(self.body) - 1)  # np.quantile's linear rule, on sorted data
            out[low] = np.interp(pos, np.arange(len(self.body)), self.body)
        else:
            out[low] = 0.0
        rest = (1.0 - t[~low]) / max(1.0 - self.level, 1e-12)  # in (0, 1]
        if abs(self.xi) < 1e-6:
            out[~low] = self.threshold - self.beta * np.log(rest)
        else:
            out[~low] = self.threshold + self.beta / self.xi * (rest ** (-self.xi) - 1.0)
        return out

    def g(self, z: np.ndarray) -> np.ndarray:
        """E[d | z]: linear between knots, constant below the first, the tail slope past the last."""
        z = np.asarray(z, dtype=np.float64)
        out = np.interp(z, self.knots_z, self.knots_g)
        past = z > self.knots_z[-1]  # continued with the tail slope up to the largest observed z, then held
        reach = np.minimum(z[past], max(self.threshold, self.knots_z[-1]))
        out[past] = self.knots_g[-1] + self.tail_slope * (reach - self.knots_z[-1])
        return out

    def gain(self, ns: Sequence[int]) -> np.ndarray:
        """∫ g d(F^N) - ∫ g dF for each N: the expected gain of best-of-N over one sample, on live queries."""
        y = (np.arange(GRID) + 0.5) / GRID
        ns = [1, *[int(n) for n in ns]]
        bulk = np.array([float(self.g(self.quantile(y ** (1.0 / n))).mean()) for n in ns])  # max of N at quantile y^(1/N)
        w = self.survive(ns)  # no top-cluster draw among the N: the bulk's best is kept, else a cluster member
        e = w * bulk + (1.0 - w) * self.h
        return e[1:] - e[0]

    def predict(self, ns: Sequence[int]) -> np.ndarray:
        """Predicted E_N = mu + (1 - c) * gain(N)."""
        return self.mu + self.live * self.gain(ns)

    def summary(self) -> dict[str, float]:
        """The law's four quantities and the two failure modes, as plain numbers."""
        return {"mu": self.mu, "c": 1.0 - self.live, "sigma": self.sigma, "rho": self.rho, "tail_drop": self.tail_drop,
                "spread": self.spread, "xi": self.xi}


def _loo(x: np.ndarray, ddof_prior: float, scale_prior: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(Q, m) leave-one-out mean and shrunk std of each row's other entries."""
    q, m = x.shape
    total, sq = x.sum(1, keepdims=True), (x * x).sum(1, keepdims=True)
    mean = (total - x) / (m - 1)
    var = np.maximum((sq - x * x) - (m - 1) * mean**2, 0.0) / max(m - 2, 1)
    if scale_prior is not None:
        w = max(m - 2, 1) / (max(m - 2, 1) + ddof_prior)
        var = w * var + (1 - w) * scale_prior**2
    return mean, np.sqrt(var)


def _knots(z: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Bin means of (z, d) over :data:`BIN_LEVELS` quantile bins of at least :data:`MIN_BIN` points, and the top quarter's slope."""
    order = np.argsort(z, kind="stable")
    z, d = z[order], d[order]
    n = len(z)
    cuts = sorted({int(round(level * n)) for level in BIN_LEVELS})
    bins: list[tuple[int, int]] = []
    start = 0
    for c in cuts[1:]:
        if c - start >= MIN_BIN or c == n:
            bins.append((start, c))
            start = c
    if len(bins) > 1 and bins[-1][1] - bins[-1][0] < MIN_BIN:  # a short last bin joins the one before it
        (a, _), (_, b) = bins[-2], bins[-1]
        bins[-2:] = [(a, b)]
    kz = np.array([z[a:b].mean() for a, b in bins])
    kg = np.array([d[a:b].mean() for a, b in bins])
    top = slice(int(0.75 * n), n)
    zt, dt = z[top], d[top]
    slope = float(np.polyfit(zt, dt, 1)[0]) if len(zt) >= 3 and np.ptp(zt) > 0 else 0.0
    return kz, kg, slope


def fit_dist(qs: QueryStats, m_fit: int | None = None) -> DistFit:
    """Fit the ``dist`` form on the first ``m_fit`` candidates of each query (all by default).

    Args:
        qs: Per-query statistics of one scorer (:func:`ttpkit.scaling.query_stats`);
            its ``scores`` and ``utils`` are (Q, M).
        m_fit: Candidates per query to fit on (at least 3: leaving one out needs two others with a spread).
    """
    r, u = qs.scores, qs.utils
    if m_fit is not None:
        r, u = r[:, :m_fit], u[:, :m_fit]
    q, m = u.shape
    mu = float(u.mean())
    keep = ~qs.collapsed
    spread_all = float(np.median(r.std(1))) if q else 0.0
    if m < 3 or not keep.any():
        return DistFit(mu=mu, live=float(keep.mean()) if q else 0.0, body=np.zeros(1), threshold=0.0, level=1.0, xi=0.0,
                       beta=1e-9, knots_z=np.zeros(1), knots_g=np.zeros(1), tail_slope=0.0, widen=1.0, sigma=0.0,
                       rho=0.0, tail_drop=0.0, spread=0.0, n_points=0)
    r, u = r[keep], u[keep]
    sd = r.std(1, ddof=1)
    prior = float(np.median(sd))
    spread = spread_all / float(np.median(r.std(1))) if np.median(r.std(1)) > 0 else 0.0
    loc, scale = _loo(r, PRIOR_DOF, prior if prior > 0 else None)
    ok = scale > 1e-12
    z = np.where(ok, (r - loc) / np.where(ok, scale, 1.0), 0.0).ravel()
    d = (u - (u.sum(1, keepdims=True) - u) / (m - 1)).ravel()
    widen = float(np.sqrt(m / (m - 1)))
    cluster = hack_cluster(z.reshape(r.shape), d.reshape(r.shape), r)  # (Q_live, m)
    p, h, a, b = 0.0, 0.0, float("inf"), float("inf")
    if cluster.any():
        p, h = float(cluster.mean()), float(d[cluster.ravel()].mean())
        a, b = beta_binomial(cluster.sum(1), m)
    bulk = ~cluster.ravel()
    zb, db = z[bulk], d[bulk]
    narrowed = np.sort(zb / widen)
    n = len(narrowed)
    k = min(n - 1, int(np.floor(TAIL_LEVEL * n)))
    xi, beta = gpd_pwm(narrowed[k + 1 :] - narrowed[k])  # the tail above the TAIL_LEVEL quantile
    threshold = float(narrowed[-1])  # past the largest observed z, by threshold stability: GPD(xi, beta + xi (z_max - u))
    beta = max(beta + xi * (threshold - float(narrowed[k])), 1e-9)
    level = n / (n + 1)
    kz, kg, slope = _knots(zb, db)
    sigma = float(d.std() / widen)
    rho = float(np.corrcoef(z, d)[0, 1]) if z.std() > 0 and d.std() > 0 else 0.0
    top = int(np.argmax(kg))
    drop = float(kg[top] - (h if p > 0 and h < kg[-1] else kg[-1])) / sigma if sigma > 0 else 0.0
    return DistFit(mu=mu, live=float(keep.mean()), body=narrowed, threshold=threshold, level=level, xi=xi,
                   beta=beta, knots_z=kz, knots_g=kg, tail_slope=slope, widen=widen, sigma=sigma, rho=rho,
                   tail_drop=drop, spread=spread, n_points=int(len(z)), p=p, h=h, share_a=a, share_b=b)


def _resample(qs: QueryStats, idx: np.ndarray) -> QueryStats:
    """The queries at ``idx`` (with repeats), as a :class:`QueryStats`."""
    return QueryStats(qs.query_id[idx], qs.user_id[idx], qs.mu[idx], qs.s[idx], qs.rho[idx], qs.collapsed[idx],
                      qs.scores[idx], qs.utils[idx])


def dist_band(
    qs: QueryStats, ns: Sequence[int], m_fit: int | None = None, n_boot: int = 100, level: float = 0.9, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
    """Prediction band of the ``dist`` form: a bootstrap over queries, refitted each time.

    Args:
        qs: Per-query statistics (as for :func:`fit_dist`).
        ns: N values to predict.
        m_fit: Candidates per query to fit on.
        n_boot: Bootstrap resamples of the queries.
        level: Two-sided coverage of the band.
        seed: Seed of the resampling.

    Returns:
        ``(lower, upper, (peak_lo, peak_hi))``: the band of the gain E_N - E_1
        at each N (the level E_1 is the pool's mean, not part of the
        forecast), and the band of the predicted peak N (the argmax over ``ns``).
    """
    rng = np.random.default_rng(seed)
    q = len(qs.mu)
    curves, peaks = [], []
    if n_boot < 1:
        raise ConfigError(f"dist_band needs n_boot >= 1, got {n_boot}")
    for _ in range(n_boot):
        fit = fit_dist(_resample(qs, rng.integers(0, q, q)), m_fit)
        c = fit.predict(ns)
        curves.append(c - c[0])
        peaks.append(ns[int(np.argmax(c >= c.max() - 1e-12))])
    arr = np.asarray(curves)
    a = (1 - level) / 2
    lo, hi = np.quantile(arr, a, axis=0), np.quantile(arr, 1 - a, axis=0)
    p_lo, p_hi = np.quantile(peaks, [a, 1 - a], method="nearest")
    return lo, hi, (int(p_lo), int(p_hi))


def tails_gain(qs: QueryStats, ns: Sequence[int], m_fit: int | None = None) -> np.ndarray:
    """The Best-of-Tails-style baseline: each query's own score tail and slope, no pooling.

    Per live query, on its first ``m_fit`` candidates: F_q is the empirical
    distribution of its scores with a generalized Pareto tail (probability-weighted
    moments on the excesses of the top half over the median) past its largest
    one, and its utility is linear in its score (least squares). The gain of
    best-of-N is that slope times E[max of N scores] - E[score], averaged over
    queries with collapsed ones at 0. With 4 or 8 candidates per query the
    tail is fitted on 2 or 4 points: this is the baseline that pooling beats.

    Returns:
        (len(ns),) predicted gain over N = 1.
    """
    r, u = qs.scores, qs.utils
    if m_fit is not None:
        r, u = r[:, :m_fit], u[:, :m_fit]
    q, m = r.shape
    y = (np.arange(GRID) + 0.5) / GRID
    out = np.zeros(len(ns))
    for i in np.flatnonzero(~qs.collapsed):
        s, v = np.sort(r[i]), u[i][np.argsort(r[i])]
        if np.ptp(s) <= 0:
            continue
        slope = float(np.polyfit(s, v, 1)[0])
        med = float(np.median(s))
        xi, beta = gpd_pwm(s[s > med] - med)
        beta = max(beta + xi * (s[-1] - med), 1e-9)
        level = m / (m + 1)
        fit = DistFit(mu=0.0, live=1.0, body=s, threshold=float(s[-1]), level=level, xi=xi, beta=beta,
                      knots_z=np.array([0.0]), knots_g=np.array([0.0]), tail_slope=0.0, widen=1.0, sigma=0.0, rho=0.0,
                      tail_drop=0.0, spread=0.0, n_points=m)
        base = fit.quantile(y).mean()
        out += slope * np.array([fit.quantile(y ** (1.0 / n)).mean() - base for n in ns])
    return out / max(q, 1)
