"""Reward models: the non-learned ``style`` baseline and trained personalized RMs."""

from __future__ import annotations

from ttpkit.reward.style import style_scores

__all__ = ["style_scores"]
