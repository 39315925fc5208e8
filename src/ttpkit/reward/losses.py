"""The training losses of the reward models: Gaussian negative log-likelihood (with beta-NLL) and the within-group pairwise loss.

Shared by :class:`ttpkit.reward.models.RewardModel` and
:class:`ttpkit.reward.cross.CrossEncoderRM` (and re-exported by ``models`` for older imports).
"""

from __future__ import annotations

__all__ = ["gaussian_nll", "pairwise_loss", "same_group_pairs"]


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

    The pairs are listed group by group (:func:`same_group_pairs`), not as an
    (R, R) mask: a training pool of 2,150 rows in queries of 8 has 17,200
    same-query pairs against 4.6 million cells of the mask, and building,
    indexing and back-propagating through that mask was 60-70% of a
    ``user-pairwise`` training step (0.05-0.1 s per step on 2 cores; 0.3 s
    for the 4,000 rows of both data sets). Same pairs, same order, same loss
    (tests/test_reward.py checks it and its gradient against the mask).

    Args:
        score, target: (R,) tensors.
        group: (R,) integer query index.
    """
    import torch.nn.functional as F

    i, j = same_group_pairs(target, group)
    if i.numel() == 0:
        return score.sum() * 0.0
    return F.softplus(-(score[i] - score[j])).mean()


def same_group_pairs(target, group):
    """Indices ``(i, j)`` of every pair with ``group[i] == group[j]`` and ``target[i] > target[j]``.

    In row-major order, as ``(same & better).nonzero()`` of the (R, R) masks
    lists them, in O(sum of squared group sizes) memory instead of O(R²).

    Args:
        target: (R,) tensor.
        group: (R,) integer tensor; a group's rows need not be contiguous.

    Returns:
        Two (P,) int64 tensors.
    """
    import torch

    r, dev = group.shape[0], group.device
    order = torch.argsort(group, stable=True)  # (R,) rows by group, ascending row within a group
    _, inverse, counts = torch.unique(group, return_inverse=True, return_counts=True)  # groups in sorted order
    starts = torch.cumsum(counts, 0) - counts  # (G,) where each group begins in ``order``
    size = counts[inverse]  # (R,) size of row i's group
    i = torch.repeat_interleave(torch.arange(r, device=dev), size)  # (P0,) row i once per member of its group
    first = torch.repeat_interleave(torch.cumsum(size, 0) - size, size)  # (P0,) where row i's run begins
    j = order[starts[inverse[i]] + torch.arange(i.numel(), device=dev) - first]  # (P0,) the members, ascending
    keep = target[i] > target[j]
    return i[keep], j[keep]
