"""The pipeline's stages, each written once: the CLI and ``ttpkit bench`` both call these.

| stage              | reads                    | writes                                      |
|--------------------|--------------------------|---------------------------------------------|
| :func:`sample_pool`| queries, a policy        | a resumable pool: a file journaled per      |
|                    |                          | query, or a directory of part files         |
| :func:`label_pool` | a pool, its split        | ``rouge1``, ``rougeL``, ``score_style``     |
| :func:`train_rm`   | labelled pools, splits   | a trained scorer of any trainable kind      |
| :func:`score_pool` | a pool, a reward model   | ``score_<name>`` (and ``std_<name>``)       |

:func:`dataset_for_pool` finds the split a pool came from (and
:func:`check_pool_data` refuses a split other than its manifest's; both live in
:mod:`ttpkit.pool`), and :func:`default_encoder` is the sentence encoder with its persistent cache.
Progress is reported through a :class:`Progress` object the caller passes in
(the CLI's draws rich bars); nothing here prints, and nothing imports the CLI.
:func:`sample_pool` and :func:`score_pool` run where their ``engine`` says
(:class:`ttpkit.engine.Engine`: this process by default, or Ray actors); the
stage itself always writes, in the calling process.
Analysis of a finished pool is :func:`ttpkit.scaling.diagnose`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from ttpkit._args import BOOL, INT, PATH, STR, checked, has, instance, list_of, optional
from ttpkit.data import Dataset, Query
from ttpkit.engine import LOCAL, Engine
from ttpkit.errors import DataError
from ttpkit.manifest import ADOPTED, DATA_DIR, DATA_SHA256, N_PATH, check_resume, split_digest, stamp
from ttpkit.paths import check_writable, embeddings_cache_file
from ttpkit.policy import Policy, PolicySpec
from ttpkit.pool import (QUERY_ID, ROUGEL, amend_manifest, check_pool_data, check_scorer_name, check_utility, complete_queries,
                         dataset_for_pool, existing_pool, is_partitioned, pool_manifest, pool_writer, read_pool, score_col,
                         std_col, write_pool)
from ttpkit.reward.base import Scorer, Trainable
from ttpkit.reward.config import RMConfig
from ttpkit.reward.encoder import Encoder
from ttpkit.reward.models import RewardModel
from ttpkit.reward.style import style_scores
from ttpkit.utility import add_labels

_POOL, _DATA = instance(pd.DataFrame, says="a pool (a pandas DataFrame)"), has("by_id", "a Dataset (ttpkit.load_split)")
_ENCODER = optional(has("encode", "an encoder"))

__all__ = [
    "NullProgress",
    "Progress",
    "check_pool_data",
    "dataset_for_pool",
    "default_encoder",
    "label_pool",
    "record_n_path",
    "sample_pool",
    "sampling_manifest",
    "score_pool",
    "train_rm",
]


class Progress(Protocol):
    """What a stage reports while it works."""

    def start(self, label: str, total: int, done: int = 0) -> None:
        """A unit of work with ``total`` steps begins (``done`` of them already finished)."""

    def advance(self, steps: int = 1) -> None:
        """``steps`` more steps of the current work are done."""

    def note(self, message: str) -> None:
        """A one-line status message (loading a model, resuming)."""


class NullProgress:
    """Reports nothing (the default)."""

    def start(self, label: str, total: int, done: int = 0) -> None:  # noqa: D102
        pass

    def advance(self, steps: int = 1) -> None:  # noqa: D102
        pass

    def note(self, message: str) -> None:  # noqa: D102
        pass


@checked(spec=instance(PolicySpec, says="a PolicySpec"), data=_DATA, m=INT, seed=INT)
def sampling_manifest(spec: PolicySpec, data: Dataset, m: int, seed: int) -> dict:
    """The manifest of a pool sampled from ``data`` by ``spec``: task, split, data, M, seed, decoding and model identity.

    The data are named twice: the directory as given (``data_dir``,
    informational) and the SHA-256 of the split's files (``data_sha256``,
    :func:`ttpkit.manifest.split_digest`), which a resumption must match.
    """
    decoding = {k: v for k, v in dataclasses.asdict(spec).items() if k not in ("name", "backend", "model", "base_url")}
    if decoding.get("device") == "cpu":
        del decoding["device"]  # recorded only off the CPU, so pools from before --device still resume
    if not decoding.get("greedy"):
        decoding.pop("greedy", None)  # recorded only when the greedy row is sampled, so older pools still resume
    del decoding["dtype"]
    if (dtype := spec.manifest_dtype()) is not None:  # resolved; only off the device's default, as the device
        decoding["dtype"] = dtype
    digest = split_digest(data.path, data.split)
    where = {DATA_DIR: str(data.path), DATA_SHA256: digest} if digest else {}
    return stamp("pool", {"task": dataclasses.asdict(data.task), "split": data.split, **where, "m": m, "seed": seed,
                          "policy": {"name": spec.name, **spec.identity(), **decoding}})


@checked(queries=list_of(instance(Query, says=""), "a list of Query"), out=PATH, m=INT, label=STR, manifest=optional(instance(dict, says="a dict")),
         policy=has("sample", "a Policy") | instance(Callable, says="a function returning one"), force_new=BOOL, start_over=optional(STR))
def sample_pool(
    queries: Sequence[Query],
    out: str | Path,
    m: int,
    policy: Policy | Callable[[], Policy],
    progress: Progress | None = None,
    label: str = "sampling",
    manifest: dict | None = None,
    force_new: bool = False,
    engine: Engine | None = None,
    start_over: str | None = None,
) -> int:
    """Sample ``m`` candidates for every query the pool file does not have yet.

    The queries left are cut into batches of ``policy.batch_queries`` by the
    engine (:func:`ttpkit.engine.batches`, the one place they are cut); each
    query is journaled here as soon as its batch returns (an interrupted run
    loses at most the batch in flight; a pool directory writes a part every 8
    queries, so a killed run loses at most those), and progress advances per
    query over the whole job. Samples do not depend on the cut, nor on the
    engine or its actors: each query's generator is seeded from (seed, query
    id) (:func:`ttpkit.policy.query_seed`).

    Args:
        queries: Queries to cover.
        out: Pool file (created, or resumed); queries it already holds are skipped. A
            name not ending in ``.parquet`` is a pool directory of part files
            (:func:`ttpkit.pool.is_partitioned`), which many writers can fill.
        m: Candidates per query.
        policy: A policy, or a function that builds one (see
            :func:`ttpkit.policy.lazy_policy`): called only if work remains
            (under Ray, once in each actor: it must pickle, as lazy_policy's does).
        progress: Where to report progress.
        label: Progress label.
        manifest: The run's settings (:func:`sampling_manifest`); a pool made
            under others is refused before any model loads.
        force_new: Delete an existing pool (and its journal) and start over.
        engine: Where the policy runs (default :data:`ttpkit.engine.LOCAL`: here).
            Under Ray each actor builds the policy once; the results come back
            here and this process alone writes them.
        start_over: How the caller's user starts over, for the message that refuses a pool made under other
            settings (default: ``ttpkit sample``'s ``--force-new`` or another ``--out``).

    Returns:
        How many queries were sampled now.

    Raises:
        DataError: If ``queries`` is empty.
        ConfigError: If the pool exists with another manifest (the message names
            the differing key), or ``out`` cannot be written.
    """
    progress = progress or NullProgress()
    if not queries:
        raise DataError(f"{out}: no queries to sample")
    path = Path(out)
    writer = pool_writer(path, manifest)
    if force_new:
        writer.discard()
    existing = existing_pool(path)
    if manifest is not None:
        check_resume(path, pool_manifest(existing), manifest, start_over)
        _adopt(path, pool_manifest(existing), manifest)
    writer.begin()  # the manifest is on disk before the first candidate
    done = complete_queries(existing, m)
    todo = [q for q in queries if q.id not in done]
    progress.start(f"{label} M={m}", len(queries), done=len(queries) - len(todo))
    if 0 < len(todo) < len(queries):
        progress.note(f"resuming: {len(queries) - len(todo)} of {len(queries)} queries already done")
    if not todo:
        writer.fold()  # a journal left by a run killed during its last fold
        if manifest is not None and pool_manifest(existing) is None and not is_partitioned(path):
            write_pool(read_pool(path), path, manifest)  # a pool file from before manifests adopts this run's
        return 0
    try:
        for cands in (engine or LOCAL).sample(todo, m, policy, progress.note):
            writer.add(cands)
            progress.advance()
    finally:
        writer.fold()  # an interrupted run (Ctrl-C, an error) keeps every query it finished
    return len(todo)


def _adopt(path: Path, old: dict | None, manifest: dict) -> None:
    """Give a pool whose manifest predates the data digest (:data:`ttpkit.manifest.ADOPTED`) this run's keys for it."""
    new = {k: manifest[k] for k in (*ADOPTED, DATA_DIR) if k in manifest and k not in (old or {})}
    if old and any(k in new for k in ADOPTED):
        amend_manifest(path, lambda m: {**m, **new})


def record_n_path(out: str | Path, policy: Policy) -> str | None:
    """Stamp how ``policy`` got its ``n`` samples per prompt into the pool's manifest (:data:`ttpkit.manifest.N_PATH`).

    Only a policy that found out while sampling has an ``n_path`` (the
    ``openai`` backend: ``"n"``, one request with ``n`` choices, or
    ``"per-seed"``, one request per sample from a server that ignores ``n``).
    A pool resumed on the other path than its first run's records ``"mixed"``.

    Returns:
        The value recorded, or ``None`` (nothing sampled, or not such a policy).
    """
    now = getattr(policy, "n_path", None)
    if now is None:
        return None

    def update(manifest: dict) -> dict:
        was = manifest.get(N_PATH)
        return {**manifest, N_PATH: now if was in (None, now) else "mixed"}

    new = amend_manifest(out, update)
    return None if new is None else new[N_PATH]


@checked(path=PATH, data=_DATA, overwrite=BOOL)
def label_pool(path: str | Path, data: Dataset, overwrite: bool = True) -> pd.DataFrame:
    """Label a pool file in place with the utilities and the ``style`` baseline.

    Args:
        path: Pool file (its journal, if any, is folded first).
        data: The split the pool was sampled from (references and profiles).
        overwrite: Relabel a pool that already has labels (else return it as is).

    Returns:
        The labelled pool.

    Raises:
        DataError: If the pool has no candidates.
        ConfigError: If its manifest names another task or split than ``data`` (:func:`check_pool_data`).
    """
    pool_writer(path).fold()
    pool = read_pool(path)
    if len(pool) == 0:
        raise DataError(f"{path}: the pool has no candidates to label")
    check_pool_data(pool, data, path)
    if ROUGEL in pool.columns and not overwrite:
        return pool
    manifest, by_id = pool_manifest(pool), data.by_id()
    pool = add_labels(pool, by_id)
    pool[score_col("style")] = style_scores(pool, by_id)
    write_pool(pool, path, manifest)
    return pool


@checked(dtype=STR, layers=optional(INT), device=STR)
def default_encoder(dtype: str = "float32", layers: int | None = None, device: str = "cpu") -> Encoder:
    """all-MiniLM-L6-v2 with its embedding cache persisted under :func:`ttpkit.paths.cache_dir`, on ``device``."""
    return Encoder(cache_file=embeddings_cache_file(), dtype=dtype, layers=layers, device=device)


@checked(config=instance(RMConfig, says="an RMConfig") | has("fit", "a trainable scorer"), train=_POOL, train_data=_DATA,
         dev=optional(_POOL), dev_data=optional(_DATA), encoder=_ENCODER, out=optional(PATH), utility=STR)
def train_rm(
    config: RMConfig | Trainable,
    train: pd.DataFrame,
    train_data: Dataset,
    dev: pd.DataFrame | None = None,
    dev_data: Dataset | None = None,
    encoder: Encoder | None = None,
    out: str | Path | None = None,
    utility: str = ROUGEL,
) -> Trainable:
    """Train a reward model of any trainable kind on a labelled pool (early stopping on ``dev`` where the kind has it).

    Args:
        config: A feature RM's configuration (trains a :class:`RewardModel`, early
            stopping on ``dev`` or on held-out training users), or an unfitted
            scorer of any :class:`~ttpkit.reward.base.Trainable` kind
            (:class:`~ttpkit.reward.EnsembleRM`, :class:`~ttpkit.reward.CrossEncoderRM`).
        train: Labelled training pool.
        train_data: The split ``train`` was sampled from.
        dev: Labelled dev pool.
        dev_data: The split ``dev`` was sampled from.
        encoder: Sentence encoder, for kinds that need one (default: :func:`default_encoder` at the model's depth).
        out: Directory to save the model to (checked before training starts).
        utility: Utility column to learn.
    """
    for df in (train, dev):
        if df is not None:
            check_utility(df, utility)
    if out is not None:
        check_writable(out, "--out (reward model)", directory=True)
    rm = RewardModel(config) if isinstance(config, RMConfig) else config
    needs = rm.needs
    enc = encoder or (default_encoder(layers=needs.encoder_layers) if needs.encoder else None)
    rm.fit(train, train_data.by_id(), dev, dev_data.by_id() if dev_data else None, encoder=enc, utility=utility)
    rm.tasks_ = (train_data.task.name,)  # kept in the saved model by the kinds that record it (a feature RM)
    rm.trained_on_ = {name: {"data": str(ds.path), "split": ds.split, "rows": len(df), "queries": int(df[QUERY_ID].nunique()),
                             "pool_manifest": pool_manifest(df)}
                      for name, df, ds in (("train", train, train_data), ("dev", dev, dev_data)) if df is not None and ds is not None}
    rm.trained_on_["utility"] = utility
    if enc is not None:
        enc.save_cache()
    if out is not None:
        rm.save(out)
    return rm


@checked(pool=_POOL, rm=has("score", "a scorer"), data=_DATA, name=optional(STR), encoder=_ENCODER)
def score_pool(
    pool: pd.DataFrame, rm: Scorer, data: Dataset, name: str | None = None, encoder: Encoder | None = None,
    engine: Engine | None = None, progress: Progress | None = None,
) -> pd.DataFrame:
    """Return ``pool`` with ``score_<name>`` (and ``std_<name>`` for a probabilistic RM) added.

    Args:
        pool: Pool to score.
        rm: A scorer of any kind (fitted, for trainable ones).
        data: The split the pool was sampled from (inputs and profiles; references are not read).
        name: Column suffix (default: the RM's name, its variant or ``<variant>-ens<K>``).
        encoder: Sentence encoder; it must have the RM's depth (default: :func:`default_encoder` at that depth).
        engine: Where the RM runs (default: here). Under Ray, actors score batches of
            whole queries and send back the embeddings they computed; they join the
            encoder's cache, which is saved here. Scorers without an encoder
            (``mbr``, ``reg``, a cross-encoder) always score here.
        progress: Where to report notes (Ray actors starting).
    """
    needs = rm.needs
    enc = encoder or (default_encoder(needs.encoder_dtype, needs.encoder_layers) if needs.encoder else None)
    if needs.policy and getattr(rm, "policy", None) is None:  # the implicit reward reads the embedded policy's likelihood
        from ttpkit.policy.local import LocalPolicy

        (progress or NullProgress()).note("loading the embedded policy for its likelihoods")
        rm.policy = LocalPolicy.embedded(data.task)
    scores = (engine or LOCAL).score(pool, rm, data.by_id(), enc, (progress or NullProgress()).note)
    bad = int((~np.isfinite(scores.mean)).sum() + (~np.isfinite(scores.std)).sum())
    if bad:
        raise DataError(f"reward model {getattr(rm, 'name', '?')} gave {bad} NaN or infinite scores; nothing was written")
    if enc is not None:
        enc.save_cache()
    col = check_scorer_name(name) if name is not None else rm.name
    out = pool.copy()
    out[score_col(col)] = scores.mean
    if rm.probabilistic:
        out[std_col(col)] = scores.std
    return out
