"""The training losses of the reward models: Gaussian negative log-likelihood (with beta-NLL) and the within-group pairwise loss.

Shared by :class:`ttpkit.reward.models.RewardModel` and
:class:`ttpkit.reward.cross.CrossEncoderRM` (and re-exported by ``models`` for older imports).
"""

from __future__ import annotations

__all__ = ["gaussian_nll", "pairwise_loss"]


def gaussian_nll(mean, logvar, target, var_floor: float = 1e-4, beta: float = 0.0):
    """Gaussian negative log-likelihood (constant dropped), optionally β-weighted.

    Args:
        mean, logvar, target: (R,) tensors.
        var_floor: Added to exp(logvar).
        beta: β-NLL weight exponent; each term is scaled by stop_grad(var)**β.
    """
    import torch

    var = torch.exp(logvar) + var_floor
    nll = 0.5 * (torch.log(var) + (target - mean) ** 2 / var)
    if beta > 0:
        nll = nll * var.detach() ** beta
    return nll.mean()


def pairwise_loss(score, target, group):
    """Bradley-Terry loss over all same-group pairs with different targets.

    Args:
        score, target: (R,) tensors.
        group: (R,) integer query index.
    """
    import torch.nn.functional as F

    same = group[:, None] == group[None, :]
    better = target[:, None] > target[None, :]
    mask = same & better  # (R, R): i beats j
    if not bool(mask.any()):
        return score.sum() * 0.0
    diff = score[:, None] - score[None, :]
    return F.softplus(-diff[mask]).mean()
