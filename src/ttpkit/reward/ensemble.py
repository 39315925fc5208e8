"""Deep ensembles of a deterministic reward model (Coste et al. 2023): K seeds, one disagreement.

The K members share the variant, features and data and differ in their seed
(initialization and, without a dev pool, the held-out users). The ensemble's
score is the members' mean and its ``std`` their spread, so the selection rules
apply as they do to ``user-prob``: ``<name>@lcb:λ`` is mean − λ·std (the
uncertainty-weighted optimization of Coste et al.), and the worst case is the
members' minimum (``Scores.members``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ttpkit.data import Query
from ttpkit.errors import ConfigError, DataError, NotFittedError
from ttpkit.pool import ROUGEL
from ttpkit.reward.features import Encoder, build_features
from ttpkit.reward.models import RewardModel, RMConfig, Scores

__all__ = ["EnsembleRM"]


class EnsembleRM:
    """K reward models of one variant with seeds ``config.seed .. config.seed + K - 1``.

    Args:
        config: The members' configuration (its seed is the first member's).
        k: Number of members (>= 2).
    """

    def __init__(self, config: RMConfig | None = None, k: int = 5) -> None:
        self.config = config or RMConfig(variant="user-pairwise")
        self.k = k
        self.members_: list[RewardModel] = []

    @property
    def name(self) -> str:
        """Default column suffix: ``<variant>-ens<K>``."""
        return f"{self.config.variant}-ens{self.k}"

    @property
    def probabilistic(self) -> bool:
        """Always: the members' spread is the ensemble's standard deviation."""
        return True

    def fit(self, pool: pd.DataFrame, by_id: Mapping[str, Query], dev_pool: pd.DataFrame | None = None,
            dev_by_id: Mapping[str, Query] | None = None, encoder: Encoder | None = None, utility: str = ROUGEL) -> EnsembleRM:
        """Train every member (see :meth:`RewardModel.fit`); returns ``self``."""
        if self.k < 2:
            raise ConfigError(f"an ensemble needs at least 2 members, got {self.k}")
        self.members_ = [
            RewardModel(dataclasses.replace(self.config, seed=self.config.seed + i)).fit(
                pool, by_id, dev_pool, dev_by_id, encoder=encoder, utility=utility
            )
            for i in range(self.k)
        ]
        return self

    def score(self, pool: pd.DataFrame, by_id: Mapping[str, Query], encoder: Encoder | None = None) -> Scores:
        """Members' mean, their standard deviation, and every member's scores (K, R)."""
        if not self.members_:
            raise NotFittedError("this ensemble is not fitted; call fit() or load() first")
        cfg = self.config  # the members differ only in their seed: one feature matrix serves them all
        x = build_features(pool, by_id, RewardModel(cfg)._encoder(encoder), cfg.features, k=cfg.k)
        members = np.stack([m.score_features(x).mean for m in self.members_])
        return Scores(mean=members.mean(0), std=members.std(0), members=members)

    def save(self, directory: str | Path) -> Path:
        """Write ``ensemble.json`` and one reward-model directory per member."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for i, m in enumerate(self.members_):
            m.save(d / f"member-{i}")
        (d / "ensemble.json").write_text(json.dumps({"k": self.k, "config": dataclasses.asdict(self.config)}, indent=2) + "\n")
        return d

    @classmethod
    def load(cls, directory: str | Path) -> EnsembleRM:
        """Load an ensemble written by :meth:`save`."""
        d = Path(directory)
        if not (d / "ensemble.json").is_file():
            raise DataError(f"{d}: not a ttpkit ensemble (needs ensemble.json)")
        meta = json.loads((d / "ensemble.json").read_text())
        ens = cls(RMConfig(**meta["config"]), k=int(meta["k"]))
        ens.members_ = [RewardModel.load(d / f"member-{i}") for i in range(ens.k)]
        return ens
