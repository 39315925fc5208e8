"""The diagnosis of a labelled, scored pool: the law per scorer, its accuracy, collapse, hacking and N.

:func:`diagnose` computes everything ``ttpkit diagnose`` and ``ttpkit bench``
report; :mod:`ttpkit.report` only renders a :class:`Diagnosis` (Markdown,
plots, CSV, JSON).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ttpkit.errors import ConfigError
from ttpkit.pool import QUERY_ID, ROUGEL, USER_ID, Scorer, candidates_per_query, n_grid, sampled
from ttpkit.scaling._bon import Curve, best_of_n, curves, scorer_values
from ttpkit.scaling._bootstrap import peak_drop_ci
from ttpkit.scaling._detect import collapsed_users, hacked_queries
from ttpkit.scaling._dist import dist_band
from ttpkit.scaling._forecast import holdout_errors
from ttpkit.scaling._law import FORMS, LawFit, Peak, bend_coefficients, find_peak, fit_law, oracle_share, recommend_n
from ttpkit.scaling._normal import _e
from ttpkit.scaling._stats import FLAT_FRACTION, HACK_THRESHOLD, fit_log_curve, query_stats, r_squared
from ttpkit.utility import within_query_corr

__all__ = ["Diagnosis", "ScorerDiagnosis", "bend_drivers", "diagnose", "per_user_n"]



@dataclass(frozen=True)
class ScorerDiagnosis:
    """What the diagnosis found for one scorer.

    Attributes:
        scorer: Scorer name.
        fit: Law quantities measured on the first ``m_fit`` candidates of each query.
        fit_full: The same quantities on the whole pool.
        observed: The exact best-of-N curve at the diagnosis' ``ns``.
        predicted: ``{form: values at ns_pred}`` for every law form.
        r2: ``{form: R²}`` of the prediction against the observed curve (NaN
            when the observed curve is flat, see :data:`FLAT_FRACTION`).
        max_error: ``{form: max |predicted - observed| / oracle gain}``.
        corr: Mean within-query correlation of score and utility.
        rho_q: (Q,) per-query correlation (0 for collapsed users).
        recommended_n: Compute-aware N of the plain law (1 if rho <= 0), never beyond
            the peak that the trusted form (``fit.form``) predicts.
        observed_peak: The peak of the observed curve (:func:`find_peak`).
        observed_drop_ci: 95% paired-bootstrap interval of the observed drop from that peak to the largest N.
        predicted_peak: The peak of the trusted form's prediction over ``ns_pred``.
        bend_queries: The queries whose own small-N curves bend most (``query_id, user_id, b``, most negative b first).
        bend_users: The same per user (``user_id, queries, b``: the mean b of the user's queries).
        per_user_n: One row per user: ``user_id, queries, collapsed, rho, n``.
        saved_vs_global_n: Share of samples per-user N saves against one global N.
        collapsed_users: Users with near-constant scores (:func:`collapsed_users`).
        hacked_queries: Queries with rho_q below :data:`HACK_THRESHOLD` (:func:`hacked_queries`).
        trusted: The form the diagnosis trusts: the least held-out error
            (:func:`ttpkit.scaling.holdout_errors`, on the candidates after the
            first ``m_fit``); ``fit.form`` when too few are held out.
        holdout_error: ``{form: gain error on the held-out candidates}`` (empty when none are).
        band: The ``dist`` form's 90% band of E_N at ``ns_pred`` (lower, upper), from a bootstrap over queries.
        peak_band: The 90% band of the ``dist`` form's peak N.
    """

    scorer: str
    fit: LawFit
    fit_full: LawFit
    observed: Curve
    predicted: Mapping[str, tuple[float, ...]]
    r2: Mapping[str, float]
    max_error: Mapping[str, float]
    corr: float
    rho_q: np.ndarray = field(repr=False, compare=False)
    observed_peak: Peak | None = None
    observed_drop_ci: tuple[float, float] = (0.0, 0.0)
    predicted_peak: Peak | None = None
    bend_queries: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    bend_users: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    recommended_n: int = 1
    per_user_n: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    saved_vs_global_n: float = 0.0
    collapsed_users: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    hacked_queries: pd.DataFrame = field(default_factory=pd.DataFrame, repr=False, compare=False)
    trusted: str = "tail"
    holdout_error: Mapping[str, float] = field(default_factory=dict)
    band: tuple[tuple[float, ...], tuple[float, ...]] = ((), ())
    peak_band: tuple[int, int] = (1, 1)


@dataclass(frozen=True)
class Diagnosis:
    """The diagnosis of one pool: settings, the oracle's log fit, and one :class:`ScorerDiagnosis` per scorer.

    Attributes:
        utility: Utility column.
        m: Candidates per query in the pool (M).
        m_fit: Candidates per query the law was measured on.
        ns: N values of the observed curves.
        ns_pred: N values of the predictions (up to ``max_n``, and at least M).
        max_n: The largest N predicted that was asked for.
        n_queries: Queries in the pool.
        tau: Collapse threshold.
        cost_per_sample: Cost of one sample.
        min_gain_per_cost: Threshold of compute-aware N.
        oracle_log_fit: ``(a, b, R²)`` of the oracle curve as a + b ln N.
        scorers: ``{scorer: ScorerDiagnosis}``; ``oracle`` is always present.
    """

    utility: str
    m: int
    m_fit: int
    ns: tuple[int, ...]
    ns_pred: tuple[int, ...]
    n_queries: int
    tau: float
    cost_per_sample: float
    min_gain_per_cost: float
    oracle_log_fit: tuple[float, float, float]
    scorers: Mapping[str, ScorerDiagnosis]
    max_n: int = 32

    @property
    def oracle_gain(self) -> float:
        """E_N - E_1 of the oracle at the largest observed N."""
        o = self.scorers["oracle"].observed.mean
        return float(o[-1] - o[0])

    def frac_oracle_gain(self, scorer: str) -> float:
        """A scorer's gain from N=1 to the largest observed N as a share of the oracle's (NaN if the oracle gains nothing)."""
        return oracle_share(self.scorers[scorer].observed.mean, self.scorers["oracle"].observed.mean)

    def as_dict(self) -> dict:
        """The diagnosis as JSON-ready data (the content of ``law.json``)."""
        a, b, r2 = self.oracle_log_fit
        out: dict = {
            "settings": {"utility": self.utility, "m_fit": self.m_fit, "m": self.m, "tau": self.tau,
                         "queries": self.n_queries, "cost_per_sample": self.cost_per_sample,
                         "min_gain_per_cost": self.min_gain_per_cost},
            "oracle_log_fit": {"a": a, "b": b, "r2": r2},
            "scorers": {},
        }
        for name, d in self.scorers.items():
            out["scorers"][name] = {
                "quantities": d.fit.as_dict(),
                "quantities_full_pool": d.fit_full.as_dict(),
                "observed": d.observed.as_dict(),
                "predicted": {f: {str(n): float(v) for n, v in zip(self.ns_pred, d.predicted[f])} for f in FORMS},
                "r2": dict(d.r2),
                "max_error_frac_of_oracle_gain": dict(d.max_error),
                "ceiling": {str(n): float(v) for n, v in zip(self.ns_pred, d.fit.ceiling(self.ns_pred))},
                "form": d.fit.form,
                "trusted": d.trusted,
                "holdout_error": dict(d.holdout_error),
                "dist_band": {"lower": {str(n): v for n, v in zip(self.ns_pred, d.band[0])},
                              "upper": {str(n): v for n, v in zip(self.ns_pred, d.band[1])}, "peak_n": list(d.peak_band)},
                "peak": {"observed": asdict(d.observed_peak), "observed_drop_ci": list(d.observed_drop_ci),
                         "predicted": asdict(d.predicted_peak),
                         "bend_queries": d.bend_queries.head(10).to_dict(orient="records"),
                         "bend_users": d.bend_users.head(5).to_dict(orient="records")},
                "compute": {"recommended_n": d.recommended_n,
                            "per_user_n": dict(zip(d.per_user_n[USER_ID], map(int, d.per_user_n["n"]))),
                            "saved_vs_global_n": d.saved_vs_global_n},
                "collapsed_users": d.collapsed_users.to_dict(orient="records"),
                "hacked_queries": d.hacked_queries[[QUERY_ID, USER_ID, "rho"]].to_dict(orient="records"),
            }
        return out


def per_user_n(
    pool: pd.DataFrame, scorer: str | Scorer, utility: str, ns: Sequence[int], tau: float, cost: float,
    min_gain_per_cost: float, seed: int = 0,
) -> pd.DataFrame:
    """Recommended N per user from each user's own law quantities (N=1 for collapsed users).

    Returns:
        One row per user: ``user_id, queries, collapsed, rho, n``.
    """
    qs = query_stats(pool, scorer, utility, tau, seed)
    e = _e(ns)
    rows = []
    for user in pd.unique(qs.user_id):
        sel = qs.user_id == user
        s, rho = qs.s[sel], qs.rho[sel]
        collapsed = bool(qs.collapsed[sel].all())
        rho_u = float((s * rho).sum() / s.sum()) if s.sum() > 0 else 0.0
        curve = qs.mu[sel].mean() + (0.0 if collapsed else rho_u * s.mean()) * e
        n_u = 1 if collapsed else recommend_n(curve, ns, cost, min_gain_per_cost)
        rows.append({USER_ID: user, "queries": int(sel.sum()), "collapsed": collapsed, "rho": rho_u, "n": n_u})
    return pd.DataFrame(rows, columns=[USER_ID, "queries", "collapsed", "rho", "n"])


def bend_drivers(
    pool: pd.DataFrame, scorer: str | Scorer, utility: str, m_fit: int, tau: float = 0.05, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The queries and users whose small-N curves bend most: per-query b of the bend form on the first ``m_fit`` candidates.

    Returns:
        ``(queries, users)``: ``query_id, user_id, b`` and ``user_id, queries, b``, most negative b first.
    """
    qs = query_stats(pool, scorer, utility, tau, seed, m_fit)
    ns = list(range(1, qs.utils.shape[1] + 1))
    r = np.where(qs.collapsed[:, None], 0.0, qs.scores)
    b = bend_coefficients(best_of_n(r, qs.utils, ns) - qs.mu[:, None], ns)[:, 1]
    queries = pd.DataFrame({QUERY_ID: qs.query_id, USER_ID: qs.user_id, "b": b}).sort_values("b", kind="stable")
    users = queries.groupby(USER_ID, sort=False).agg(queries=(QUERY_ID, "size"), b=("b", "mean")).reset_index()
    return queries.reset_index(drop=True), users.sort_values("b", kind="stable").reset_index(drop=True)


def _scorer_diagnosis(
    pool: pd.DataFrame, scorer: Scorer, observed: Curve, gain: float, settings: dict, references: Mapping[str, str] | None
) -> ScorerDiagnosis:
    """Law fits, accuracy, compute-aware N, collapse and hacking for one scorer."""
    utility, tau, seed = settings["utility"], settings["tau"], settings["seed"]
    ns, ns_pred = settings["ns"], settings["ns_pred"]
    fit = fit_law(pool, scorer, utility, m_fit=settings["m_fit"], tau=tau, seed=seed)
    # on the whole pool; the same fit when M_fit is every candidate
    full = fit if settings["m_fit"] >= settings["m"] else fit_law(pool, scorer, utility, tau=tau, seed=seed)
    obs = np.array(observed.mean)
    flat = gain > 0 and np.ptp(obs) < FLAT_FRACTION * gain
    predicted, r2, err = {}, {}, {}
    for form in FORMS:
        predicted[form] = tuple(float(v) for v in fit.predict(ns_pred, form))
        at_obs = fit.predict(ns, form)
        r2[form] = float("nan") if flat else r_squared(obs, at_obs)
        err[form] = float(np.abs(at_obs - obs).max() / gain) if gain > 0 else float("nan")
    hold = holdout_errors(pool, fit, scorer, utility, seed)
    finite = {f: e for f, e in hold.items() if np.isfinite(e) and f != "tails"}  # tails is a baseline, never trusted
    trusted = min(finite, key=finite.get) if finite else fit.form
    peak = find_peak(ns_pred, predicted[trusted])
    n_star = recommend_n(fit.predict(ns_pred, "plain"), ns_pred, settings["cost"], settings["min_gain_per_cost"]) if fit.rho > 0 else 1
    if peak.inside:  # more samples stop paying at the predicted peak
        n_star = min(n_star, peak.n)
    if settings["n_band"] > 0:
        qs_fit = query_stats(pool, scorer, utility, tau, seed, settings["m_fit"])
        lo, hi, peak_band = dist_band(qs_fit, ns_pred, n_boot=settings["n_band"], seed=seed)
    else:  # no band asked for (law_table)
        lo, hi, peak_band = np.array([]), np.array([]), (peak.n, peak.n)
    level = predicted["dist"][0]
    seen = find_peak(ns, obs)
    bend_q, bend_u = bend_drivers(pool, scorer, utility, settings["m_fit"], tau, seed)
    users = per_user_n(pool, scorer, utility, ns_pred, tau, settings["cost"], settings["min_gain_per_cost"], seed)
    spent = float((users["n"] * users["queries"]).sum())
    scores = scorer_values(pool, scorer, utility, seed)
    return ScorerDiagnosis(
        scorer=str(scorer), fit=fit, fit_full=full, observed=observed, predicted=predicted, r2=r2, max_error=err,
        corr=within_query_corr(scores, pool[utility].to_numpy(), pool[QUERY_ID].to_numpy()) if str(scorer) != "random" else 0.0,
        rho_q=query_stats(pool, scorer, utility, tau, seed).rho,
        observed_peak=seen, observed_drop_ci=peak_drop_ci(observed.per_query, list(ns).index(seen.n), seed),
        predicted_peak=peak, bend_queries=bend_q, bend_users=bend_u,
        recommended_n=n_star, per_user_n=users,
        saved_vs_global_n=1 - spent / (n_star * users["queries"].sum()) if n_star else 0.0,
        collapsed_users=collapsed_users(pool, scorer, utility, tau, seed),
        hacked_queries=hacked_queries(pool, scorer, utility, HACK_THRESHOLD, references=dict(references or {}), seed=seed),
        trusted=trusted, holdout_error=hold, band=(tuple(float(level + v) for v in lo), tuple(float(level + v) for v in hi)),
        peak_band=peak_band,
    )


def diagnose(
    pool: pd.DataFrame,
    scorers: Sequence[str | Scorer],
    utility: str = ROUGEL,
    m_fit: int = 4,
    max_n: int = 32,
    tau: float = 0.05,
    references: Mapping[str, str] | None = None,
    cost_per_sample: float = 1.0,
    min_gain_per_cost: float = 1e-3,
    seed: int = 0,
    ns: Sequence[int] | None = None,
    *,
    n_band: int = 50,
    n_max: int | None = None,
) -> Diagnosis:
    """Fit the law for each scorer and measure how well it predicts, who is collapsed and what is hacked.

    Args:
        pool: Labelled (and scored) pool.
        scorers: Scorers to diagnose; ``oracle`` is added first if missing.
        utility: Utility column.
        m_fit: Candidates per query the law is measured on (at most M).
        max_n: Predict the curves up to this N.
        tau: Collapse threshold (fraction of the global score spread).
        references: Query id to reference text, shown beside hacked queries.
        cost_per_sample: Cost of one sample (any unit).
        min_gain_per_cost: Compute-aware N stops where the gain per cost falls below this.
        seed: Seed of the bootstrap and of the ``thompson`` rule.
        ns: N values of the observed curves (default: :func:`ttpkit.pool.n_grid` of M).
        n_band: Bootstrap resamples of the queries for the ``dist`` form's band (0: no band).
        n_max: Deprecated name of ``max_n`` (warns; removed in the next release).

    Raises:
        ConfigError: If ``m_fit`` or an N exceeds the pools, or ``m_fit`` < 2.
        DataError: If the pool lacks a scorer's column or the utility.
    """
    if n_max is not None:
        warnings.warn("diagnose(n_max=...) is deprecated; use max_n=...", DeprecationWarning, stacklevel=2)
        max_n = n_max
    pool = sampled(pool)  # greedy rows are the baseline (ttpkit.scaling.versus_greedy), not samples
    m = candidates_per_query(pool)
    if not 2 <= m_fit <= m:
        raise ConfigError(f"m_fit must be in [2, {m}] for pools of {m} candidates per query, got {m_fit}")
    if not 0 <= tau < 1:
        raise ConfigError(f"tau (the collapse threshold, a fraction of the score spread) must be in [0, 1), got {tau}")
    if not cost_per_sample > 0 or not min_gain_per_cost >= 0:
        raise ConfigError(f"cost per sample must be > 0 and min gain per cost >= 0, got {cost_per_sample} and {min_gain_per_cost}")
    parsed = [Scorer.parse(s) if isinstance(s, str) else s for s in scorers]
    if not any(str(s) == "oracle" for s in parsed):  # the oracle's gain is every error's unit
        parsed.insert(0, Scorer("oracle"))
    ns = tuple(int(n) for n in (ns if ns is not None else n_grid(m)))
    if max(ns) > m:
        raise ConfigError(f"N={max(ns)} is larger than the pools ({m} candidates per query)")
    ns_pred = tuple(sorted(set(n_grid(max(max_n, m))) | set(ns)))
    observed = curves(pool, parsed, utility, ns, seed=seed)
    oracle = observed["oracle"]
    gain = oracle.mean[-1] - oracle.mean[0]
    settings = {"utility": utility, "tau": tau, "seed": seed, "m_fit": m_fit, "ns": ns, "ns_pred": ns_pred,
                "cost": cost_per_sample, "min_gain_per_cost": min_gain_per_cost, "n_band": n_band, "m": m}
    by_scorer = {str(s): _scorer_diagnosis(pool, s, observed[str(s)], gain, settings, references) for s in parsed}
    return Diagnosis(
        utility=utility, m=m, m_fit=m_fit, ns=ns, ns_pred=ns_pred, n_queries=oracle.n_queries, tau=tau,
        cost_per_sample=cost_per_sample, min_gain_per_cost=min_gain_per_cost,
        oracle_log_fit=fit_log_curve(ns, oracle.mean), scorers=by_scorer, max_n=max_n,
    )
