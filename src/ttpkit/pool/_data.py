"""A pool against the data split it was sampled from: which split holds its queries, and whether the manifest agrees.

A pool's manifest records its task, split and the digest of the split's files
(:func:`ttpkit.stages.sampling_manifest`). :func:`check_pool_data` refuses a
split or task other than the recorded one (labelling a test pool against dev
references would give wrong utilities silently) and warns when the split's
files changed since sampling; :func:`dataset_for_pool` finds the split that
holds a pool's queries, the recorded one first, and checks it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from ttpkit.data import Dataset, TaskSpec, load_split
from ttpkit.errors import ConfigError, DataError, TtpkitError
from ttpkit.manifest import DATA_SHA256, split_digest
from ttpkit.pool._files import pool_manifest
from ttpkit.pool._schema import QUERY_ID

__all__ = ["check_pool_data", "dataset_for_pool"]

log = logging.getLogger(__name__)


def check_pool_data(pool: pd.DataFrame, data: Dataset, where: str | Path = "the pool") -> None:
    """Refuse ``data`` for a pool whose manifest names another task or split; warn if the split changed since sampling.

    A pool without a manifest passes. A split whose files no longer have the
    digest the pool recorded (``data_sha256``: edited, regenerated, or
    recompressed) is used as given, with a warning naming both digests.

    Raises:
        ConfigError: Naming the pool, the task or split its manifest records and the one given.
    """
    manifest = pool_manifest(pool) or {}
    task = manifest.get("task")
    name = task.get("name") if isinstance(task, dict) else task
    if isinstance(name, str) and name != data.task.name:
        raise ConfigError(f"{where}: its manifest says it was sampled for task {name!r}, but {data.path} split {data.split!r} "
                          f"is task {data.task.name!r}; give the pool's own --data (or --task)")
    split = manifest.get("split")
    if isinstance(split, str) and split != data.split:
        raise ConfigError(f"{where}: its manifest says it was sampled from split {split!r}, not {data.split!r}; pass --split {split}")
    was, now = manifest.get(DATA_SHA256), split_digest(data.path, data.split)
    if isinstance(was, str) and now is not None and was != now:
        log.warning("%s: split %r of %s is not the data it was sampled from (data_sha256 %s…, now %s…); using the data given",
                    where, data.split, data.path, was[:12], now[:12])


def dataset_for_pool(
    data: str | Path, pool: pd.DataFrame, split: str | None = None, task: str | TaskSpec | None = None, where: str | Path = "the pool",
) -> Dataset:
    """Load the split that holds a pool's queries: ``split``, or the first of the manifest's split, train, dev, test that does.

    ``where`` names the pool in messages.

    Raises:
        DataError: If no split (or not the given one) holds all of the pool's queries.
        ConfigError: If the pool's manifest names another task or split (:func:`check_pool_data`).
    """
    ids = set(pool[QUERY_ID])
    recorded = (pool_manifest(pool) or {}).get("split")
    order = dict.fromkeys([recorded] if isinstance(recorded, str) else []) | dict.fromkeys(["train", "dev", "test"])
    for name in [split] if split else list(order):
        try:
            ds = load_split(data, name, task)
        except TtpkitError:
            if split:
                raise
            continue
        if ids <= set(ds.by_id()):
            check_pool_data(pool, ds, where)
            return ds
        if split:
            raise DataError(f"{data}: split {split!r} lacks {len(ids - set(ds.by_id()))} of the pool's queries")
    raise DataError(f"{data}: no split holds all of the pool's queries; pass --split")
