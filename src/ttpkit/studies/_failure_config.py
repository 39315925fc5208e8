"""The failure study's config: its pools, regimes and settings, loaded from a ``kind: failures`` YAML file.

A module of its own so that the study's scoring and measurement modules
(:mod:`ttpkit.studies._scoring`, :mod:`ttpkit.studies._measure`) can name these
types without importing the runner (:mod:`ttpkit.studies.failures`) that imports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttpkit.errors import ConfigError
from ttpkit.policy import PolicySpec
from ttpkit.studies.config import as_list, build, check_names, load_yaml, mapping, rename_deprecated

__all__ = ["FailureStudy", "PoolRef", "RegimeSpec"]


@dataclass(frozen=True)
class PoolRef:
    """A labelled pool file and the data split its queries come from (paths resolved against the study file)."""

    path: str  # the Parquet pool
    data: str  # the LaMP-layout data directory
    split: str  # the split of ``data`` holding the pool's queries


@dataclass(frozen=True)
class RegimeSpec:
    """One regime: RMs trained on ``train`` (early stopping and tuning on ``dev``), scoring ``test``.

    Attributes:
        name: Regime name.
        train, dev, test: Names of entries of the study's ``pools``.
        profile_items: Cold start: the scorers see only the user's last ``profile_items`` profile items.
        judge: Also score with the study's LLM judge (``judge``, ``judge-prob``).
        cross: Also score with the cross-encoders (``cross``, ``cross-prob``; minutes per pool on CPU).
    """

    name: str
    train: str
    dev: str
    test: str
    profile_items: int | None = None
    judge: bool = False
    cross: bool = False


@dataclass(frozen=True)
class FailureStudy:
    """A failures study: named pools and the regimes built from them."""

    name: str
    pools: dict[str, PoolRef]
    regimes: tuple[RegimeSpec, ...]
    seed: int = 0
    members: int = 5  # seeds in the ensemble of user-pairwise (YAML: ``members``; ``ensemble`` is its old name)
    judge: dict | None = field(default=None)  # {backend, model} of the LLM judge (see ttpkit.reward.judge)
    cross_epochs: int = 1  # cross-encoder fine-tuning epochs; 0 leaves the cross-encoder out
    forecast_boot: int = 0  # bootstrap resamples of the forecasting protocol's band; 0 leaves the protocol out

    def __post_init__(self) -> None:
        if self.members < 1 or self.cross_epochs < 0 or self.forecast_boot < 0:
            raise ConfigError(f"members must be >= 1, cross_epochs and forecast_boot >= 0, got {self.members}, "
                              f"{self.cross_epochs} and {self.forecast_boot}")
        check_names([self.name], "name")
        check_names([r.name for r in self.regimes], "regimes[].name")

    @property
    def ensemble_label(self) -> str:
        """The ensemble's label in the tables: ``ens<members>``."""
        return f"ens{self.members}"

    @classmethod
    def from_dict(cls, raw: Any, base: Path) -> FailureStudy:
        """Build from parsed YAML; pool and data paths are relative to ``base``.

        Raises:
            ConfigError: Naming the key path of a missing, unknown or mistyped entry.
        """
        raw = rename_deprecated(dict(mapping(raw, "top level")), "ensemble", "members", "top level")
        raw.pop("kind", None)
        data = {str(k): str((base / str(v)).resolve()) for k, v in mapping(raw.pop("data", {}), "data").items()}
        pools = {str(name): _pool(p, f"pools.{name}", data, base) for name, p in mapping(raw.pop("pools", {}), "pools").items()}
        regimes = tuple(build(RegimeSpec, r, f"regimes[{i}]") for i, r in enumerate(as_list(raw.pop("regimes", []), "regimes")))
        for i, spec in enumerate(regimes):
            for key in ("train", "dev", "test"):
                if getattr(spec, key) not in pools:
                    raise ConfigError(f"study regimes[{i}].{key}: {getattr(spec, key)!r} is not one of pools: {sorted(pools)}")
        if raw.get("judge") is not None:
            try:
                PolicySpec(name="judge", **mapping(raw["judge"], "judge")).check()
            except (TypeError, ConfigError) as e:
                raise ConfigError(f"study judge: {e}") from None
        return build(cls, {**raw, "pools": pools, "regimes": regimes}, "top level")

    @classmethod
    def from_yaml(cls, path: str | Path) -> FailureStudy:
        """Load a ``kind: failures`` study file."""
        return load_yaml(cls, path)

    def check_models(self) -> None:
        """Check that every pool and data path exists, without loading anything."""
        missing = sorted({p for ref in self.pools.values() for p in (ref.path, ref.data) if not Path(p).exists()})
        if missing:
            raise ConfigError(f"study: {len(missing)} pool or data path(s) do not exist, first {missing[0]}")


def _pool(obj: Any, where: str, data: dict[str, str], base: Path) -> PoolRef:
    p = dict(mapping(obj, where))
    if p.get("data") not in data:
        raise ConfigError(f"study {where}.data: {p.get('data')!r} is not one of data: {sorted(data)}")
    p["data"] = data[p["data"]]
    if isinstance(p.get("path"), str):
        p["path"] = str((base / p["path"]).resolve())
    return build(PoolRef, p, where)
