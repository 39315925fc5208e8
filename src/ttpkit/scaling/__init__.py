"""Best-of-N curves and the four-quantity scaling law.

The face of the package; each private module holds one concern:

- :mod:`ttpkit.scaling._bon`: the exact best-of-N estimator, the scorers'
  values on a pool and the curves of any scorer (with bootstrap bands).
- :mod:`ttpkit.scaling._soft`: the exact estimator of the ``soft:τ`` rule.
- :mod:`ttpkit.scaling._greedy`: best-of-N against the greedy answer of the
  same prompt (:func:`versus_greedy`: paired gains with CIs, win rates);
  :mod:`ttpkit.scaling._draws` the same by Monte Carlo over draws for scorers
  whose scores depend on the draw (:func:`draw_versus_greedy`).
- :mod:`ttpkit.scaling._bootstrap`: the one bootstrap over queries and the
  intervals built on it (peak drop, whether a curve moves, a paired share difference).
- :mod:`ttpkit.scaling._normal`: e_N and v_N, the moments of the maximum of N normals.
- :mod:`ttpkit.scaling._stats`: per-query statistics (mu_q, s_q, rho_q, collapse), r² and log fits.
- :mod:`ttpkit.scaling._law`: the law E_N = mu + (1 - c) * rho * sigma * e_N,
  its tail-aware, log, ``bend`` and ``mixture`` forms and their fit, the tail
  gain, the peak finder and compute-aware N.
- :mod:`ttpkit.scaling._dist`: the ``dist`` form, best-of-N under the
  candidates' fitted joint distribution of score and utility, and its band.
- :mod:`ttpkit.scaling._tails`: its tail estimators (Pareto tail, top cluster, per-query share).
- :mod:`ttpkit.scaling._forecast`: the forecasting protocol, the same for
  every form, and the held-out error ``diagnose`` trusts a form by.
- :mod:`ttpkit.scaling._synthetic`: populations with known curves (hacked,
  falling, plateau, collapsed), the forms' checks.
- :mod:`ttpkit.scaling._detect`: the collapse and hacking detectors.
- :mod:`ttpkit.scaling._fixes`: measures of both failure modes, the back-off
  fix and capped N.
- :mod:`ttpkit.scaling._adaptive`: adaptive best-of-N replayed offline.
- :mod:`ttpkit.scaling._diagnose`: :func:`diagnose`, all of the above for a
  pool's scorers at once, as a :class:`Diagnosis` that reports render.
- :mod:`ttpkit.scaling._summary`: every law form against many curves (:func:`law_table`), their targets
  (shares that fit, peaks found) and adaptive N at matched cost, as tables
  that :mod:`ttpkit.report` formats.
"""

from __future__ import annotations

from ttpkit.scaling._adaptive import adaptive_curve
from ttpkit.scaling._bon import (
    BUILTIN_SCORERS,
    Curve,
    best_of_n,
    bon_weights,
    bootstrap_ci,
    curves,
    per_query_curve,
    pool_matrix,
    scorer_values,
)
from ttpkit.scaling._bootstrap import bootstrap_means, bootstrap_stat, curve_moves, paired_share_diff, peak_drop_ci
from ttpkit.scaling._detect import collapsed_users, hacked_queries
from ttpkit.scaling._dist import DistFit, dist_band, fit_dist
from ttpkit.scaling._forecast import forecast, forecast_summary, gain_error, holdout_errors
from ttpkit.scaling._synthetic import KINDS, synthetic_pool, true_curve
from ttpkit.scaling._diagnose import Diagnosis, ScorerDiagnosis, bend_drivers, diagnose, per_user_n
from ttpkit.scaling._fixes import (
    COLLAPSED_SHARE,
    backoff_scores,
    capped_curve,
    capped_scorer_curve,
    failure_measures,
    hack_suspects,
    within_query_share,
)
from ttpkit.scaling._law import (
    FORMS,
    LawFit,
    Peak,
    bend_coefficients,
    find_peak,
    fit_law,
    is_monotone,
    oracle_share,
    predict,
    recommend_n,
    tail_gain,
)
from ttpkit.scaling._normal import expected_max_normal, expected_sq_max_normal
from ttpkit.scaling._soft import soft_best_of_n
from ttpkit.scaling._summary import cost_matched, law_table, law_targets, peak_targets, summarised
from ttpkit.scaling._draws import draw_versus_greedy
from ttpkit.scaling._greedy import VersusGreedy, selection_probabilities, versus_greedy
from ttpkit.scaling._stats import HACK_THRESHOLD, QueryStats, fit_log_curve, query_stats, r_squared, user_spread

__all__ = [
    "cost_matched",
    "law_targets",
    "peak_targets",
    "summarised",
    "BUILTIN_SCORERS",
    "COLLAPSED_SHARE",
    "FORMS",
    "HACK_THRESHOLD",
    "Curve",
    "Diagnosis",
    "DistFit",
    "KINDS",
    "LawFit",
    "Peak",
    "QueryStats",
    "ScorerDiagnosis",
    "adaptive_curve",
    "backoff_scores",
    "bend_coefficients",
    "bend_drivers",
    "best_of_n",
    "bon_weights",
    "bootstrap_ci",
    "bootstrap_means",
    "bootstrap_stat",
    "capped_curve",
    "capped_scorer_curve",
    "collapsed_users",
    "curve_moves",
    "curves",
    "diagnose",
    "dist_band",
    "fit_dist",
    "forecast",
    "forecast_summary",
    "gain_error",
    "holdout_errors",
    "synthetic_pool",
    "true_curve",
    "expected_max_normal",
    "expected_sq_max_normal",
    "failure_measures",
    "find_peak",
    "is_monotone",
    "oracle_share",
    "fit_law",
    "fit_log_curve",
    "hack_suspects",
    "hacked_queries",
    "law_table",
    "paired_share_diff",
    "peak_drop_ci",
    "per_query_curve",
    "per_user_n",
    "pool_matrix",
    "predict",
    "query_stats",
    "r_squared",
    "recommend_n",
    "scorer_values",
    "soft_best_of_n",
    "tail_gain",
    "user_spread",
    "within_query_share",
    "VersusGreedy",
    "draw_versus_greedy",
    "selection_probabilities",
    "versus_greedy",
]
