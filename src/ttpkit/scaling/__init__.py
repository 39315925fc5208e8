"""Best-of-N curves and the four-quantity scaling law.

- :mod:`ttpkit.scaling._bon`: the exact best-of-N estimator, bootstrap
  intervals and curves of any scorer on a labelled pool.
- :mod:`ttpkit.scaling._law`: e_N, the oracle ceiling, the law
  E_N = mu + (1 - c) * rho * sigma * e_N, its tail-aware form, the forms that
  bend (``bend``, ``mixture``), the peak finder, the collapse and hacking
  detectors, and compute-aware N.
- :mod:`ttpkit.scaling._adaptive`: adaptive best-of-N replayed offline.
- :mod:`ttpkit.scaling._diagnose`: :func:`diagnose`, all of the above for a
  pool's scorers at once, as a :class:`Diagnosis` that reports render.
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
from ttpkit.scaling._diagnose import (
    Diagnosis,
    ScorerDiagnosis,
    bend_drivers,
    curve_moves,
    diagnose,
    law_table,
    peak_drop_ci,
    per_user_n,
)
from ttpkit.scaling._fixes import (
    COLLAPSED_SHARE,
    backoff_scores,
    capped_curve,
    failure_measures,
    hack_suspects,
    within_query_share,
)
from ttpkit.scaling._law import (
    FORMS,
    HACK_THRESHOLD,
    LawFit,
    Peak,
    QueryStats,
    bend_coefficients,
    collapsed_users,
    expected_max_normal,
    expected_sq_max_normal,
    find_peak,
    fit_law,
    fit_log_curve,
    hacked_queries,
    predict,
    query_stats,
    r_squared,
    recommend_n,
    user_spread,
)
from ttpkit.scaling._soft import soft_best_of_n

__all__ = [
    "BUILTIN_SCORERS",
    "COLLAPSED_SHARE",
    "FORMS",
    "HACK_THRESHOLD",
    "Curve",
    "Diagnosis",
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
    "capped_curve",
    "collapsed_users",
    "curve_moves",
    "curves",
    "diagnose",
    "expected_max_normal",
    "expected_sq_max_normal",
    "failure_measures",
    "find_peak",
    "fit_law",
    "fit_log_curve",
    "hack_suspects",
    "hacked_queries",
    "law_table",
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
    "user_spread",
    "within_query_share",
]
