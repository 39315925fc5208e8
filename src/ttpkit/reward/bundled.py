"""The reward models shipped inside the wheel (``--rm default``), and their cards.

``ttpkit/models/<task>/<variant>/`` holds ``config.json`` and
``model.safetensors`` (as :meth:`RewardModel.save` writes them), ``card.json``
(the law's quantities and the share of the oracle gain measured on the task's
test users) and ``README.md`` (the model card). ``<task>`` is a registered task,
or ``any`` for the task-agnostic models trained on every task's pools.
``scripts/train_bundled.py`` makes them all, measuring each card with
:func:`measure_card`. ``--rm default`` is the variant of
:data:`DEFAULT_VARIANTS`, the one that held up best on training users it never
saw (``scripts/select_default_rm.py``, at the Ns of :data:`CV_NS`; docs/performance.md).
A card is a measurement of the law on the test pool, so this one module reads
:mod:`ttpkit.scaling` (inside :func:`measure_card`, so that importing reward never imports scaling).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ttpkit.data import Dataset, TaskSpec
from ttpkit.errors import ConfigError, DataError
from ttpkit.pool import QUERY_ID, ROUGEL, USER_ID, candidates_per_query, n_grid
from ttpkit.reward._io import check_is_file, read_json
from ttpkit.reward.config import check_number

__all__ = ["AGNOSTIC", "CARD_BOOT", "CARD_TAU", "CV_NS", "DEFAULT_VARIANTS", "MODELS_DIR", "RM_VARIANTS", "ModelCard", "agnostic_dataset",
           "bundled_path", "load_card", "measure_card", "resolve_rm"]

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
AGNOSTIC = "any"  # the directory of the task-agnostic models
# each number of a card: (integer, low, high); ``None`` is unbounded. score_std is the unit of collapse, so > 0.
_CARD_RANGES = {"mu": (False, None, None), "c": (False, 0.0, 1.0), "sigma_eff": (False, 0.0, None), "rho_eff": (False, -1.0, 1.0),
                "score_std": (False, 0.0, None), "tau": (False, 0.0, None), "share": (False, None, None), "n": (True, 1, None)}
# What ``--rm default`` means per model directory. For the two one-line tasks: the stacked ranker over the bundled
# user-prob and the draw's own signals, chosen against greedy by a CV over dev users with the shipped sampler
# (results/greedy/<task>/dev.md; scripts/against_greedy.py); its rm signal is user-prob, itself the CV's choice among
# the RMs (results/bundled/cv/cv.md). Elsewhere the task-agnostic user-pairwise.
DEFAULT_VARIANTS = {"git-commits": "stacked", "debian-synopsis": "stacked", AGNOSTIC: "user-pairwise"}
RM_VARIANTS = {"git-commits": "user-prob", "debian-synopsis": "user-prob", AGNOSTIC: "user-pairwise"}  # the RM defaults
CV_NS = (1, 2, 4, 8)  # the Ns of the default RM's cross-validation: up to the train pools' M
CARD_TAU = 0.05  # a card's collapse threshold
CARD_BOOT = 2000  # bootstrap draws over test users for a card's interval (seed 0)


@dataclass(frozen=True)
class ModelCard:
    """What a bundled model's card measured on its test users (all at the pools' M).

    Attributes:
        task: Task of the test users (``any``: pooled).
        variant: RM variant.
        mu: Mean utility of a candidate.
        c: Share of test queries whose user is collapsed.
        sigma_eff: The oracle's effective utility spread.
        rho_eff: The RM's effective correlation (law's ``tail`` form).
        score_std: Std of the RM's scores over the test pool (the unit of collapse).
        tau: Collapse threshold: a user whose scores vary less than ``tau * score_std`` is collapsed.
        share: Share of the oracle gain at the largest N of the card's curve.
        n: That N.
    """

    task: str
    variant: str
    mu: float
    c: float
    sigma_eff: float
    rho_eff: float
    score_std: float
    tau: float
    share: float
    n: int


def bundled_path(task: str, variant: str | None = None) -> Path:
    """The bundled model of ``variant`` for ``task``, or the task-agnostic one.

    Args:
        task: Task name.
        variant: RM variant; ``None``: the directory's default (:data:`DEFAULT_VARIANTS`).

    Raises:
        ConfigError: If neither is shipped.
    """
    for name in (task, AGNOSTIC):
        d = MODELS_DIR / name / (DEFAULT_VARIANTS.get(name, "user-pairwise") if variant is None else variant)
        if (d / "config.json").exists() or (d / "stacked.json").exists():
            return d
    raise ConfigError(f"no bundled {'default' if variant is None else variant} model for task {task!r} "
                      f"(shipped: {', '.join(sorted(_shipped())) or 'none'})")


def _shipped() -> list[str]:
    return [f"{d.parent.name}/{d.name}" for d in MODELS_DIR.glob("*/*") if (d / "config.json").exists() or (d / "stacked.json").exists()]


def resolve_rm(rm: str | Path, task: str, variant: str | None = None) -> Path:
    """``default`` (or ``default:<variant>``) to the bundled model for ``task``; any other value is a model directory."""
    text = str(rm)
    if text == "default" or text.startswith("default:"):
        return bundled_path(task, text.split(":", 1)[1] if ":" in text else variant)
    path = Path(text)
    if not path.is_dir():
        raise ConfigError(f"--rm {text}: not a model directory (or 'default' for the bundled model)")
    return path


def load_card(model_dir: str | Path) -> ModelCard | None:
    """The ``card.json`` of a model directory, or None when it has none.

    The card is the ``card`` object of the file; other top-level keys (``trained_on``,
    measurements a newer card adds) are ignored. Each of :class:`ModelCard`'s
    fields must be there with its type and in range (``c`` in [0, 1], ``rho_eff``
    in [-1, 1], ``score_std`` > 0, ``n`` a positive integer).

    Raises:
        DataError: If the card exists but is not a valid card, naming the file and the key.
    """
    path = Path(model_dir) / "card.json"
    check_is_file(path)
    if not path.exists():
        return None
    raw = read_json(path, "a 'card' object").get("card")
    if not isinstance(raw, dict):
        raise DataError(f"{path}: not a valid model card (no 'card' object)")
    fields = [f.name for f in dataclasses.fields(ModelCard)]
    if missing := [k for k in fields if k not in raw]:
        raise DataError(f"{path}: card.{missing[0]} is missing (a card has {', '.join(fields)})")
    if unknown := sorted(set(raw) - set(fields)):
        raise DataError(f"{path}: card.{unknown[0]} is not a field of a model card (a card has {', '.join(fields)})")
    for key in ("task", "variant"):
        if not isinstance(raw[key], str) or not raw[key]:
            raise DataError(f"{path}: card.{key} must be a name, got {raw[key]!r}")
    for key, (integer, low, high) in _CARD_RANGES.items():
        try:
            check_number(f"card.{key}", raw[key], integer=integer, low=low, high=high, strict=key == "score_std")
        except ConfigError as e:
            raise DataError(f"{path}: {e}") from None
    return ModelCard(**raw)


def agnostic_dataset(datasets: Sequence[Dataset]) -> Dataset:
    """The task-agnostic (``any``) dataset of several tasks' queries, as the ``any`` models are trained on."""
    queries = tuple(q for ds in datasets for q in ds.queries)
    task = TaskSpec(AGNOSTIC, "source", "target", "Input", "Output")
    return Dataset(task=task, queries=queries, path=datasets[0].path, split=datasets[0].split)


def measure_card(pool: pd.DataFrame, name: str, task: str, variant: str, tau: float = CARD_TAU,
                 n_boot: int = CARD_BOOT) -> tuple[ModelCard, dict[str, Any]]:
    """A bundled model's card, measured on a scored, labelled test pool, and the numbers its README states.

    Args:
        pool: The test pool with ``score_<name>`` and ``rougeL``.
        name: The model's score column suffix.
        task: The card's task (``any``: pooled).
        variant: The model's variant.
        tau: Collapse threshold.
        n_boot: Draws of the user bootstrap (seed 0) of the share's 95% interval.

    Returns:
        ``(card, extra)``: ``extra`` holds ``queries``, ``users``, ``m``, ``first`` and
        ``last`` (expected ROUGE-L at N=1 and N=M), ``oracle`` (the oracle's at M) and
        ``lo``, ``hi`` (the share's interval over test users).
    """
    from ttpkit.scaling import curves, fit_law, scorer_values  # lazily: scaling comes after reward in the pipeline
    from ttpkit.scaling._bootstrap import user_share_boot

    m = candidates_per_query(pool)
    res = curves(pool, ["oracle", name], ROUGEL, n_grid(m))
    o, c = res["oracle"].mean, res[name].mean
    share = (c[-1] - c[0]) / (o[-1] - o[0])
    fit = fit_law(pool, name, m_fit=m, tau=tau)
    std = float(np.std(scorer_values(pool, name, ROUGEL)))
    card = ModelCard(task=task, variant=variant, mu=fit.mu, c=fit.c, sigma_eff=fit.sigma_eff, rho_eff=fit.rho_eff,
                     score_std=std, tau=tau, share=float(share), n=m)
    users = pool.groupby(QUERY_ID)[USER_ID].first().loc[list(res[name].query_ids)].to_numpy()
    pq, po = res[name].per_query, res["oracle"].per_query
    _, boot = user_share_boot((pq[:, -1] - pq[:, 0])[None], po[:, -1] - po[:, 0], users, n_boot, 0)
    lo, hi = np.nanquantile(boot[:, 0], [0.025, 0.975])
    extra = {"queries": res["oracle"].n_queries, "users": len(set(users)), "m": m, "first": c[0], "last": c[-1],
             "oracle": o[-1], "lo": float(lo), "hi": float(hi)}
    return card, extra
