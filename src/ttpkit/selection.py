"""Selection rules: turn a reward model's mean and standard deviation into the score best-of-N maximizes.

| rule        | selection score           |
|-------------|---------------------------|
| ``mean``    | μ                         |
| ``lcb:κ``   | μ − κσ (risk-averse)      |
| ``ucb:κ``   | μ + κσ (optimistic)       |
| ``thompson``| one draw from N(μ, σ²)    |
| ``soft:τ``  | μ, picked by softmax(μ/λ) |

Deterministic reward models have σ = 0, so every rule but ``soft`` reduces to
``mean``. ``soft`` changes how the answer is picked among the N drawn, not the
score; :func:`ttpkit.scaling.curves` computes it exactly. The
grammar of a rule (:class:`ttpkit.pool.Rule`) is part of the pool schema, since
``<name>@<rule>`` names a scorer of a pool.
"""

from __future__ import annotations

import numpy as np

from ttpkit.pool import RULES, Rule

__all__ = ["RULES", "Rule", "apply_rule"]


def apply_rule(mean: np.ndarray, std: np.ndarray | None, rule: str | Rule = "mean", seed: int = 0) -> np.ndarray:
    """Selection scores of candidates under a rule.

    Args:
        mean: (R,) predicted utility.
        std: (R,) predicted standard deviation, or ``None`` (treated as 0).
        rule: A rule of :data:`RULES`, as text or parsed.
        seed: Seed of the Thompson draw.

    Raises:
        ConfigError: For an unknown rule.
    """
    r = Rule.parse(rule) if isinstance(rule, str) else rule
    mean = np.asarray(mean, dtype=np.float64)
    std = np.zeros_like(mean) if std is None else np.asarray(std, dtype=np.float64)
    if r.name in ("mean", "soft"):
        return mean
    if r.name == "lcb":
        return mean - r.kappa * std
    if r.name == "ucb":
        return mean + r.kappa * std
    return mean + std * np.random.default_rng(seed).standard_normal(mean.shape)
