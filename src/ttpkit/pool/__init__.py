"""Candidate pools: the schema every stage reads and writes, and resumable Parquet files.

A pool has one row per candidate and M candidates per query. Filling one is the
sampling stage, :func:`ttpkit.stages.sample_pool`.

| module      | holds                                                                             |
|-------------|-----------------------------------------------------------------------------------|
| ``_schema`` | the column names (:data:`POOL_COLUMNS`, the utilities), :func:`score_col` and     |
|             | :func:`std_col`, the :class:`Scorer` and :class:`Rule` grammar, :func:`n_grid`,   |
|             | :func:`candidates_per_query`; the greedy row: :func:`sampled`, :func:`greedy_rows` |
| ``_files``  | atomic Parquet I/O (:func:`write_pool`, :func:`read_pool`, :func:`pool_manifest`,|
|             | :func:`amend_manifest`),                                                          |
|             | the per-query journal and :class:`PoolWriter`, :func:`complete_queries`,          |
|             | :func:`pool_writer` and :func:`existing_pool` (either layout)                     |
| ``_parts``  | pool directories: append-only part files (:class:`PartWriter`), one per writer    |
|             | and flush; :func:`is_partitioned` (the layout rule), :func:`read_parts`,          |
|             | :func:`write_parts` (a rewrite, committed as a new generation)                    |
| ``_data``   | a pool against its data split: :func:`dataset_for_pool`, :func:`check_pool_data`  |
|             | (the manifest's task and split must match; a changed split is warned)             |
"""

from __future__ import annotations

from ttpkit.manifest import MANIFEST_KEY  # noqa: F401  (older callers import it from here)
from ttpkit.pool import _data, _files, _parts, _schema
from ttpkit.pool._data import check_pool_data, dataset_for_pool
from ttpkit.pool._files import (
    PoolWriter,
    amend_manifest,
    complete_queries,
    existing_pool,
    pool_manifest,
    pool_writer,
    read_pool,
    write_pool,
)
from ttpkit.pool._parts import PartWriter, amend_parts_manifest, is_partitioned, read_parts, write_parts
from ttpkit.pool._schema import (
    BUILTIN_SCORERS,
    GREEDY,
    IDX,
    LOGP,
    N_TOKENS,
    POLICY,
    POOL_COLUMNS,
    QUERY_ID,
    ROUGE1,
    ROUGEL,
    ROUGELSUM,
    RULES,
    SAMPLING_COLUMNS,
    SEED,
    TEXT,
    USER_ID,
    UTILITIES,
    Rule,
    Scorer,
    candidates_per_query,
    check_scorer_name,
    check_utility,
    greedy_mask,
    greedy_rows,
    n_grid,
    sampled,
    score_col,
    scorer_names,
    std_col,
)

__all__ = [*_schema.__all__, *_files.__all__, *_parts.__all__, *_data.__all__]  # every public name of the four modules
