"""Selection rules: turn a reward model's mean and standard deviation into the score best-of-N maximizes.

| rule        | selection score           |
|-------------|---------------------------|
| ``mean``    | μ                         |
| ``lcb:κ``   | μ − κσ (risk-averse)      |
| ``ucb:κ``   | μ + κσ (optimistic)       |
| ``thompson``| one draw from N(μ, σ²)    |
| ``soft:τ``  | μ, picked by softmax(μ/λ) |

``lcb``, ``ucb`` and ``thompson`` need a predicted σ (a probabilistic reward
model, whose pool column is ``std_<name>``): without one they would silently
equal ``mean``, so they are refused, and so is a negative σ. ``soft`` changes how the answer is picked among the N drawn, not the
score; :func:`ttpkit.scaling.curves` computes it exactly. The
grammar of a rule (:class:`ttpkit.pool.Rule`) is part of the pool schema, since
``<name>@<rule>`` names a scorer of a pool.

Adaptive best-of-N has one stopping rule, used online
(:func:`ttpkit.personalize`) and replayed offline
(:func:`ttpkit.scaling.adaptive_curve`): sample in rounds of ``round_size`` up
to ``max_n`` and stop when :func:`round_gain` falls below ``min_round_gain``
(:func:`next_round` says how many candidates the next round draws).
"""

from __future__ import annotations

import numpy as np

from ttpkit.errors import ConfigError, DataError
from ttpkit.pool import RULES, Rule

__all__ = ["RULES", "Rule", "apply_rule", "next_round", "next_round_gain", "round_gain"]


def apply_rule(mean: np.ndarray, std: np.ndarray | None, rule: str | Rule = "mean", seed: int = 0) -> np.ndarray:
    """Selection scores of candidates under a rule.

    Args:
        mean: (R,) predicted utility.
        std: (R,) predicted standard deviation (>= 0), or ``None`` for a
            deterministic scorer (``mean`` and ``soft`` only).
        rule: A rule of :data:`RULES`, as text or parsed.
        seed: Seed of the Thompson draw.

    Raises:
        ConfigError: For an unknown rule, or ``lcb``/``ucb``/``thompson`` without ``std``.
        DataError: For a negative or missing (NaN) ``std``.
    """
    r = Rule.parse(rule) if isinstance(rule, str) else rule
    mean = np.asarray(mean, dtype=np.float64)
    if r.name in ("mean", "soft"):
        return mean
    if std is None:
        raise ConfigError(f"selection rule {r.name!r} needs predicted standard deviations (a probabilistic scorer "
                          "such as user-prob); this scorer has none, and the rule would equal 'mean'")
    std = np.asarray(std, dtype=np.float64)
    if not (std >= 0).all():
        raise DataError(f"predicted standard deviations must be >= 0 and not missing; got {np.nanmin(std) if (std == std).any() else 'NaN'}")
    if r.name == "lcb":
        return mean - r.kappa * std
    if r.name == "ucb":
        return mean + r.kappa * std
    return mean + std * np.random.default_rng(seed).standard_normal(mean.shape)


def next_round_gain(values: np.ndarray, r: int, scale: float | None = None) -> float:
    """Expected improvement of the best selection score from ``r`` more candidates, in units of ``scale``.

    The next candidates' scores are modelled as draws from a normal with the
    mean and std of the ``values`` seen so far for this query; the gain is
    E[max(0, max of r draws - best seen)] = ∫_best^∞ (1 - Φ((x - m) / s)^r) dx,
    computed on a grid. Adaptive best-of-N (``ttpkit personalize --adaptive``)
    stops a query when this falls below a threshold.

    Args:
        values: Selection scores of the candidates drawn so far (at least 2).
        r: Candidates in the next round.
        scale: Unit of the result (default: the std of ``values``; the
            RM's score std over a pool is steadier for small rounds).
    """
    from scipy.special import log_ndtr

    v = np.asarray(values, dtype=np.float64)
    m, s = float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0
    unit = scale if scale is not None and scale > 0 else s
    if s <= 0 or unit <= 0 or r < 1:
        return 0.0
    best = float(v.max())
    x = np.linspace(best, m + 10 * s, 2001)
    tail = -np.expm1(r * log_ndtr((x - m) / s))  # 1 - Φ(z)^r, accurate in the far tail
    return float(np.trapezoid(tail, x) / unit) if best < m + 10 * s else 0.0


def round_gain(values: np.ndarray, max_n: int, round_size: int, scale: float | None = None) -> float:
    """What the stopping rule compares with ``min_round_gain`` after the ``len(values)`` candidates seen so far.

    The next round draws ``min(round_size, max_n - len(values))`` candidates;
    its gain is :func:`next_round_gain` of them. At ``max_n`` it is -inf (always
    stop); with fewer than 2 candidates seen it is +inf (their spread is unknown:
    always take another round).

    Args:
        values: Selection scores of the candidates seen so far.
        max_n: Most candidates per query.
        round_size: Candidates per round.
        scale: Unit of the gain (see :func:`next_round_gain`).
    """
    k = len(values)
    if k >= max_n:
        return -np.inf
    if k < 2:
        return np.inf
    return next_round_gain(values, min(round_size, max_n - k), scale)


def next_round(values: np.ndarray, max_n: int, round_size: int, min_round_gain: float, scale: float | None = None) -> int:
    """Candidates the next round of adaptive best-of-N draws after ``values``: 0 to stop.

    It stops at ``max_n`` and where :func:`round_gain` is below ``min_round_gain``.
    """
    k = len(values)
    if k >= max_n or round_gain(values, max_n, round_size, scale) < min_round_gain:
        return 0
    return min(round_size, max_n - k)
