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

The face holds what the rest of ttpkit, its tests, scripts, benchmarks and docs
use, and the types those functions return; everything else stays in its module.
"""

from __future__ import annotations

from ttpkit.scaling._adaptive import adaptive_curve
from ttpkit.scaling._bon import Curve, best_of_n, bon_weights, bootstrap_ci, curves, per_query_curve, pool_matrix, scorer_values
from ttpkit.scaling._bootstrap import bootstrap_means, curve_moves, paired_share_diff, peak_drop_ci
from ttpkit.scaling._detect import collapsed_users, hacked_queries
from ttpkit.scaling._diagnose import Diagnosis, ScorerDiagnosis, diagnose
from ttpkit.scaling._dist import DistFit, fit_dist
from ttpkit.scaling._draws import draw_versus_greedy
from ttpkit.scaling._fixes import backoff_scores, capped_curve, capped_scorer_curve, failure_measures, hack_suspects, within_query_share
from ttpkit.scaling._forecast import forecast, forecast_summary, gain_error
from ttpkit.scaling._greedy import VersusGreedy, selection_probabilities, versus_greedy
from ttpkit.scaling._law import FORMS, LawFit, Peak, find_peak, fit_law, is_monotone, oracle_share, recommend_n, tail_gain
from ttpkit.scaling._normal import expected_max_normal, expected_sq_max_normal
from ttpkit.scaling._soft import soft_best_of_n
from ttpkit.scaling._stats import HACK_THRESHOLD, QueryStats, fit_log_curve, query_stats
from ttpkit.scaling._summary import cost_matched, law_table, law_targets, peak_targets, summarised
from ttpkit.scaling._synthetic import KINDS, synthetic_pool, true_curve

__all__ = [
    # the types the functions below return: Diagnosis holds a ScorerDiagnosis per scorer, fit_law a LawFit,
    # fit_dist a DistFit, find_peak a Peak, query_stats a QueryStats, curves a Curve per scorer, versus_greedy a VersusGreedy
    "Curve",
    "Diagnosis",
    "DistFit",
    "LawFit",
    "Peak",
    "QueryStats",
    "ScorerDiagnosis",
    "VersusGreedy",
    # used in src/ (cli, studies, report, stages), tests, scripts, benchmarks or docs
    "FORMS",
    "HACK_THRESHOLD",
    "KINDS",
    "adaptive_curve",
    "backoff_scores",
    "best_of_n",
    "bon_weights",
    "bootstrap_ci",
    "bootstrap_means",
    "capped_curve",
    "capped_scorer_curve",
    "collapsed_users",
    "cost_matched",
    "curve_moves",
    "curves",
    "diagnose",
    "draw_versus_greedy",
    "expected_max_normal",
    "expected_sq_max_normal",
    "failure_measures",
    "find_peak",
    "fit_dist",
    "fit_law",
    "fit_log_curve",
    "forecast",
    "forecast_summary",
    "gain_error",
    "hack_suspects",
    "hacked_queries",
    "is_monotone",
    "law_table",
    "law_targets",
    "oracle_share",
    "paired_share_diff",
    "peak_drop_ci",
    "peak_targets",
    "per_query_curve",
    "pool_matrix",
    "query_stats",
    "recommend_n",
    "scorer_values",
    "selection_probabilities",
    "soft_best_of_n",
    "summarised",
    "synthetic_pool",
    "tail_gain",
    "true_curve",
    "versus_greedy",
    "within_query_share",
]
