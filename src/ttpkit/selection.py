"""Selection rules: turn a reward model's mean and standard deviation into the score best-of-N maximizes.

| rule        | selection score           |
|-------------|---------------------------|
| ``mean``    | μ                         |
| ``lcb:κ``   | μ − κσ (risk-averse)      |
| ``ucb:κ``   | μ + κσ (optimistic)       |
| ``thompson``| one draw from N(μ, σ²)    |

Deterministic reward models have σ = 0, so every rule reduces to ``mean``.
"""

from __future__ import annotations

import numpy as np

from ttpkit.errors import TtpkitError

__all__ = ["RULES", "apply_rule", "parse_rule"]

RULES = ("mean", "lcb:<kappa>", "ucb:<kappa>", "thompson")


def parse_rule(rule: str) -> tuple[str, float]:
    """Split ``"lcb:1.5"`` into ``("lcb", 1.5)``.

    Raises:
        TtpkitError: For an unknown rule or a bad κ; the message lists the rules.
    """
    name, _, arg = rule.partition(":")
    if name in ("mean", "thompson") and not arg:
        return name, 0.0
    if name in ("lcb", "ucb"):
        try:
            kappa = float(arg) if arg else 1.0
        except ValueError:
            raise TtpkitError(f"selection rule {rule!r}: kappa must be a number") from None
        if kappa < 0:
            raise TtpkitError(f"selection rule {rule!r}: kappa must be >= 0")
        return name, kappa
    raise TtpkitError(f"unknown selection rule {rule!r}; known rules: {', '.join(RULES)}")


def apply_rule(mean: np.ndarray, std: np.ndarray | None, rule: str = "mean", seed: int = 0) -> np.ndarray:
    """Selection scores of candidates under a rule.

    Args:
        mean: (R,) predicted utility.
        std: (R,) predicted standard deviation, or ``None`` (treated as 0).
        rule: A rule of :data:`RULES`.
        seed: Seed of the Thompson draw.
    """
    name, kappa = parse_rule(rule)
    mean = np.asarray(mean, dtype=np.float64)
    std = np.zeros_like(mean) if std is None else np.asarray(std, dtype=np.float64)
    if name == "mean":
        return mean
    if name == "lcb":
        return mean - kappa * std
    if name == "ucb":
        return mean + kappa * std
    return mean + std * np.random.default_rng(seed).standard_normal(mean.shape)
