"""The failure study's scoring: each regime's reward models, trained once, and every method's columns on a pool, cached.

:class:`RegimeModels` holds the RMs of one (train, dev) pair: the four
variants, the ensemble of ``user-pairwise`` and the cross-encoders, each trained
once and kept under ``<out>/cache`` (:func:`ttpkit.studies._cache.cached_rm`).
:func:`scored_pool` adds every method's ``score_`` columns to a pool;
:func:`judged_columns` adds the LLM judge's.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from ttpkit import stages
from ttpkit.data import Dataset, TaskSpec, load_split
from ttpkit.engine import Engine
from ttpkit.errors import ConfigError, DataError
from ttpkit.paths import write_atomic
from ttpkit.pool import QUERY_ID, ROUGEL, check_pool_data, read_pool, score_col, std_col, write_pool
from ttpkit.reward import VARIANTS, CrossConfig, CrossEncoderRM, EnsembleRM, JudgeRM, MBRScorer, RegScorer, RMConfig, style_scores
from ttpkit.scaling import backoff_scores
from ttpkit.studies._cache import cache_key, cached_rm
from ttpkit.studies._failure_config import FailureStudy, PoolRef, RegimeSpec

__all__ = ["DET", "JudgeModel", "RegimeModels", "check_refs", "load_ref", "judged_columns", "scored_pool"]

DET = "user-pairwise"  # the deterministic RM the fixes are measured against


def load_ref(ref: PoolRef, profile_items: int | None = None) -> Dataset:
    """A pool's split, with profiles cut to the last ``profile_items`` items for a cold start."""
    ds = load_split(ref.data, ref.split)
    if profile_items is None:
        return ds
    cut = tuple(dataclasses.replace(q, profile=q.profile[len(q.profile) - profile_items :] if profile_items else ())
                for q in ds.queries)
    return dataclasses.replace(ds, queries=cut)


def check_refs(study: FailureStudy) -> None:
    """Check every pool the regimes use against its split before anything trains: labelled, from that split and task.

    Raises:
        DataError: If a pool lacks the utility or holds queries its split lacks (naming the pool, split and a query).
        ConfigError: If a pool's manifest names another task or split (:func:`ttpkit.pool.check_pool_data`).
    """
    used = dict.fromkeys(name for spec in study.regimes for name in (spec.train, spec.dev, spec.test))
    for name in used:
        ref = study.pools[name]
        pool, ds = read_pool(ref.path, require=[ROUGEL]), load_split(ref.data, ref.split)
        where = f"study pool {name!r} ({ref.path})"
        check_pool_data(pool, ds, where)
        missing = sorted(set(pool[QUERY_ID]) - set(ds.by_id()))
        if missing:
            raise DataError(f"{where}: {len(missing)} of its queries are not in {ref.data} split {ref.split!r} (first "
                            f"{missing[0]!r}); give the pool's own data and split")


class RegimeModels:
    """The RMs of one (train, dev) pair, trained once and cached on disk and in memory."""

    def __init__(self, study: FailureStudy, spec: RegimeSpec, out: Path, encoder: Any, engine: Engine | None = None) -> None:
        self.study, self.spec, self.out, self.encoder = study, spec, out, encoder
        self.engine = engine  # where the variants score their pools (None: here); the ensemble always scores here
        self.train_ref, self.dev_ref = study.pools[spec.train], study.pools[spec.dev]
        self._loaded: dict[tuple, Any] = {}  # dev and test are scored by the same models: load each once

    def _once(self, key: tuple, load: Any) -> Any:
        if key not in self._loaded:
            self._loaded[key] = load()
        return self._loaded[key]

    def _labelled(self, ref: PoolRef) -> pd.DataFrame:
        return read_pool(ref.path, require=[ROUGEL])

    def cross(self, head: str) -> CrossEncoderRM:
        """The cross-encoder with ``head`` trained on the train pool."""
        cfg = CrossConfig(head=head, epochs=self.study.cross_epochs, seed=self.study.seed)
        path = self.out / "cache" / f"cross-{cache_key(repr(self.train_ref), repr(cfg))}"

        def train() -> CrossEncoderRM:
            return stages.train_rm(CrossEncoderRM(cfg), self._labelled(self.train_ref), load_ref(self.train_ref), out=path)

        return self._once(("cross", head), lambda: cached_rm(path, train))

    def get(self, variant: str, ensemble: bool = False) -> Any:
        """The RM (or, with ``ensemble``, the ensemble) of ``variant`` trained on the train pool."""
        s = self.study
        path = self.out / "cache" / f"rm-{cache_key(repr(self.train_ref), repr(self.dev_ref), variant, ensemble, s.seed)}"
        train_d, dev_d = load_ref(self.train_ref), load_ref(self.dev_ref)
        cfg = RMConfig(variant=variant, seed=s.seed, long_form=train_d.task.multiline)

        def train() -> Any:
            model = EnsembleRM(cfg, members=s.members) if ensemble else cfg
            return stages.train_rm(model, self._labelled(self.train_ref), train_d, self._labelled(self.dev_ref), dev_d,
                                   encoder=self.encoder, out=path)

        return self._once((variant, ensemble), lambda: cached_rm(path, train))


def _score_all(pool: pd.DataFrame, models: RegimeModels, data: Dataset, beta: float | None, cross: bool) -> pd.DataFrame:
    """Every method's columns on one pool (``beta``: the MBR weight of ``reg``; None leaves ``reg`` out)."""
    for variant in VARIANTS:
        pool = stages.score_pool(pool, models.get(variant), data, encoder=models.encoder, engine=models.engine)
    ens, label = models.get(DET, ensemble=True), models.study.ensemble_label
    s = ens.score(pool, data.by_id(), encoder=models.encoder)
    pool[score_col(label)], pool[std_col(label)], pool[score_col(f"{label}-min")] = s.mean, s.std, s.members.min(0)
    if cross:
        for head in ("pairwise", "prob"):
            pool = stages.score_pool(pool, models.cross(head), data)
    pool[score_col("style")] = style_scores(pool, data.by_id())
    pool = stages.score_pool(pool, MBRScorer(), data)
    if beta is not None:
        pool = stages.score_pool(pool, RegScorer(DET, beta), data)
    pool[score_col("backoff")], backed = backoff_scores(pool, DET, pool[score_col("mbr")].to_numpy())
    pool["backed_off"] = backed
    return pool


def scored_pool(out: Path, models: RegimeModels, ref: PoolRef, profile_items: int | None, beta: float | None) -> pd.DataFrame:
    """:func:`_score_all` of one pool, cached under ``out/cache`` by everything it depends on."""
    s = models.study
    cross = models.spec.cross and s.cross_epochs > 0
    parts = (repr(ref), repr(models.train_ref), repr(models.dev_ref), profile_items, beta, s.seed, s.members)
    path = out / "cache" / f"scored-{cache_key(*parts, s.cross_epochs if cross else 0)}.parquet"
    if path.exists():
        pool = read_pool(path)
        if score_col("global-mse") not in pool.columns:  # a cache from before global-mse was a method
            pool = stages.score_pool(pool, models.get("global-mse"), load_ref(ref, profile_items), encoder=models.encoder)
            write_pool(pool, path)
        return pool
    pool = _score_all(read_pool(ref.path, require=[ROUGEL]), models, load_ref(ref, profile_items), beta, cross)
    write_pool(pool, path)
    return pool


class JudgeModel:
    """The study's judge model, loaded on first use and shared by every pool it rates."""

    def __init__(self, spec: dict | None) -> None:
        self.spec, self.policy = spec, None

    def get(self, task: TaskSpec) -> Any:
        """The judge's local policy (the task only labels prompts)."""
        from ttpkit.policy import PolicySpec
        from ttpkit.policy.local import LocalPolicy  # loads torch: only when a judge runs

        if self.policy is None:
            self.policy = PolicySpec(name="judge", **(self.spec or {})).build(task)
            if not isinstance(self.policy, LocalPolicy):
                raise ConfigError("the judge needs a local backend (embedded, gguf or hf)")
        return self.policy


def judged_columns(out: Path, study: FailureStudy, ref: PoolRef, profile_items: int | None, progress: stages.Progress,
                   model: JudgeModel) -> pd.DataFrame:
    """The judge's columns for one pool (``score_judge``, ``score_judge-prob``, ``std_judge-prob``), cached."""
    path = out / "cache" / f"judged-{cache_key(repr(ref), profile_items, study.judge)}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    data = load_ref(ref, profile_items)
    pool = read_pool(ref.path)
    policy = model.get(data.task)
    judge = JudgeRM(policy.model, policy.tokenizer, data.task)
    progress.start(f"judging {ref.split} ({pool[QUERY_ID].nunique()} queries)", pool[QUERY_ID].nunique())
    s, argmax = judge.score(pool, data.by_id(), progress)
    cols = pd.DataFrame({score_col("judge"): argmax, score_col("judge-prob"): s.mean, std_col("judge-prob"): s.std}, index=pool.index)
    write_atomic(path, cols.to_parquet, "study cache")  # a torn file would be read back as a cache hit
    return cols
