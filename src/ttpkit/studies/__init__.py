"""Studies: a whole experiment from one YAML file, resumable (``ttpkit bench``).

One runner serves every study kind. A study file's ``kind`` key picks a row of
:data:`KINDS` (``paper`` when absent); each kind is a config dataclass loaded by
the one typed loader, and a ``run`` function that caches every artefact through
the same cache.

- :mod:`ttpkit.studies.config`: the typed YAML loader (keys, types, key paths in errors).
- :mod:`ttpkit.studies._cache`: cache keys and the train-or-load step of reward models.
- :mod:`ttpkit.studies.paper`: ``kind: paper``, data sets x policies x RM variants x rules x N; the CI smoke study.
- :mod:`ttpkit.studies.failures`: ``kind: failures``, failure regimes x the :data:`~ttpkit.studies.failures.METHODS` table.
- :mod:`ttpkit.studies._failure_config`: the failure study's config classes (re-exported by ``failures``).
- :mod:`ttpkit.studies._scoring`, :mod:`ttpkit.studies._measure`: the failure study's scoring and measurements.
- :mod:`ttpkit.studies.demo`: ``ttpkit demo``, the whole loop on the bundled sample.

Submodules are imported when a study runs, so ``import ttpkit.studies`` is light.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttpkit.errors import ConfigError
from ttpkit.studies.config import read_yaml

__all__ = ["KINDS", "StudyKind", "load_study", "study_kind"]


@dataclass(frozen=True)
class StudyKind:
    """One kind of study: where its config and runner live, and which tables ``ttpkit bench`` prints after it.

    Attributes:
        module: The module that holds the kind.
        config: Its config class (with ``from_yaml`` and ``check_models``).
        run: Its runner, ``run(config, out, progress, engine=None) -> DataFrame``.
        tables: The :mod:`ttpkit.report` function that renders its table for the terminal.
        wrote: What the run writes, for the closing line.
    """

    module: str
    config: str
    run: str
    tables: str
    wrote: str

    def load(self, name: str) -> Any:
        """The attribute ``name`` of this kind (``config``, ``run``) from its module."""
        return getattr(importlib.import_module(self.module), getattr(self, name))


KINDS: dict[str, StudyKind] = {
    "paper": StudyKind("ttpkit.studies.paper", "StudyConfig", "run_paper", "study_tables", "results.csv, results.md"),
    "failures": StudyKind("ttpkit.studies.failures", "FailureStudy", "run_failures", "regime_tables",
                          "regimes.csv, paired.csv, calibration.csv"),
}


def study_kind(raw: Any) -> StudyKind:
    """The kind of a parsed study file (``paper`` when it has no ``kind``); an unknown kind lists the known ones."""
    name = str(raw.get("kind", "paper")) if isinstance(raw, dict) else "paper"
    if name not in KINDS:
        raise ConfigError(f"study kind: unknown kind {name!r}; known kinds: {', '.join(KINDS)}")
    return KINDS[name]


def load_study(path: str | Path) -> tuple[StudyKind, Any]:
    """Load a study file of any kind: its kind and its checked config."""
    p = Path(path)
    kind = study_kind(read_yaml(p))
    return kind, kind.load("config").from_yaml(p)
