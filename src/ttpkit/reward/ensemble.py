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
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from ttpkit.data import Query
from ttpkit.errors import ConfigError, DataError, NotFittedError
from ttpkit.manifest import file_digest, stamp
from ttpkit.paths import check_writable
from ttpkit.pool import ROUGEL
from ttpkit.reward.base import Needs
from ttpkit.reward._io import ENSEMBLE, WEIGHTS, check_sha256, read_record, write_record
from ttpkit.reward.config import RMConfig, parse_rm_config
from ttpkit.reward.encoder import Encoder
from ttpkit.reward.features import build_features
from ttpkit.reward.models import RewardModel, Scores

__all__ = ["EnsembleRM"]


class EnsembleRM:
    """``members`` reward models of one variant with seeds ``config.seed .. config.seed + members - 1``.

    Args:
        config: The members' configuration (its seed is the first member's).
        members: Number of members (>= 2).
        k: Deprecated name of ``members`` (``k`` also names profile items); warns.
    """

    def __init__(self, config: RMConfig | None = None, members: int = 5, *, k: int | None = None) -> None:
        if k is not None:
            warnings.warn("EnsembleRM(k=...) is deprecated; pass members=...", DeprecationWarning, stacklevel=2)
            members = k
        self.config = config or RMConfig(variant="user-pairwise")
        self.members = members
        self.members_: list[RewardModel] = []

    @property
    def k(self) -> int:
        """Deprecated alias of :attr:`members`."""
        warnings.warn("EnsembleRM.k is deprecated; use .members", DeprecationWarning, stacklevel=2)
        return self.members

    @property
    def name(self) -> str:
        """Default column suffix: ``<variant>-ens<members>``."""
        return f"{self.config.variant}-ens{self.members}"

    @property
    def probabilistic(self) -> bool:
        """Always: the members' spread is the ensemble's standard deviation."""
        return True

    @property
    def needs(self) -> Needs:
        """An encoder of the members' depth and dtype."""
        return Needs(encoder=True, encoder_layers=self.config.encoder_layers, encoder_dtype=self.config.encoder_dtype)

    def fit(self, pool: pd.DataFrame, by_id: Mapping[str, Query], dev_pool: pd.DataFrame | None = None,
            dev_by_id: Mapping[str, Query] | None = None, encoder: Encoder | None = None, utility: str = ROUGEL) -> EnsembleRM:
        """Train every member (see :meth:`RewardModel.fit`); returns ``self``."""
        if self.members < 2:
            raise ConfigError(f"an ensemble needs at least 2 members, got {self.members}")
        self.members_ = [
            RewardModel(dataclasses.replace(self.config, seed=self.config.seed + i)).fit(
                pool, by_id, dev_pool, dev_by_id, encoder=encoder, utility=utility
            )
            for i in range(self.members)
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
        """Write one reward-model directory per member (``member-<i>/``), then ``ensemble.json`` naming their weights' SHA-256."""
        if not self.members_:
            raise NotFittedError("this ensemble is not fitted; call fit() or load() first")
        d = check_writable(directory, "ensemble", directory=True)
        (d / ENSEMBLE).unlink(missing_ok=True)  # until the new record is written, the directory is no ensemble
        digests = [file_digest(m.save(d / f"member-{i}") / WEIGHTS) for i, m in enumerate(self.members_)]
        meta = stamp("rm", {"rm_kind": "ensemble", "members": len(self.members_), "config": dataclasses.asdict(self.config),
                            "member_weights_sha256": digests})
        write_record(d, ENSEMBLE, meta)
        return d

    @classmethod
    def load(cls, directory: str | Path) -> EnsembleRM:
        """Load an ensemble written by :meth:`save` (also one saved before ``ensemble.json`` named the members' hashes).

        Raises:
            DataError: Naming the directory, if ``ensemble.json`` is missing or
                malformed, or a member is not the one it records (a save was interrupted).
        """
        d = Path(directory)
        meta = read_record(d, ENSEMBLE, "ensemble", "'members' and 'config' keys")
        path = d / ENSEMBLE
        n = meta.get("members", meta.get("k"))  # "k": ensembles saved before the size was called members
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise DataError(f"{path}: 'members' must be a positive integer, got {n!r}")
        ens = cls(parse_rm_config(path, meta), members=n)
        digests = meta.get("member_weights_sha256")
        if digests is not None:
            if not isinstance(digests, list) or len(digests) != n:
                raise DataError(f"{path}: 'member_weights_sha256' must list {n} hashes, one per member")
            for i, want in enumerate(digests):
                check_sha256(path, f"member_weights_sha256[{i}]", want)
                weights = d / f"member-{i}" / WEIGHTS
                if not weights.is_file() or file_digest(weights) != want:
                    raise DataError(f"{d}: member-{i} is not the member ensemble.json records (a save was interrupted, "
                                    "or a member was replaced); train the ensemble again")
        ens.members_ = [RewardModel.load(d / f"member-{i}") for i in range(n)]
        return ens
