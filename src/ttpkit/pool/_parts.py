"""Partitioned pools: a directory of Parquet part files that any number of writers append to, never rewritten as it grows.

Which layout a path gets (:func:`is_partitioned`): a name ending in ``.parquet``,
or any existing file, is a single-file pool (:mod:`ttpkit.pool._files`); any
other name is a pool directory, created on first write. An existing directory
is a pool only if it holds ``manifest.json``; any other directory is refused.

A pool directory holds::

    manifest.json                              {"generation": G, "manifest": {...}}: written (atomically) before any part
    part-g<G>-<writer>-<seq>.parquet           whole queries; one file per writer and flush
    .part-g<G>-<writer>-<seq>.parquet.tmp      a part being written; readers never look at it

* **Append.** A :class:`PartWriter` keeps finished queries in memory and writes
  every ``flush_every`` of them (and at :meth:`PartWriter.fold`) as one new
  part: a hidden temporary file, fsynced, then renamed. A reader sees a part
  whole or not at all, and a query's candidates are all in one part, so a
  query is in the pool completely or not at all; a SIGKILL loses the queries
  not yet flushed (at most ``flush_every``). The writer id (time, pid and a
  random token) makes part names unique across processes and machines, so
  many writers (say one per Ray actor) can fill one pool. Nothing already
  written is touched as the pool grows: writing Q queries costs O(Q), not the
  O(Q²) of re-folding one file.
* **Rewrite** (``label``, ``score``: :func:`write_parts`). Every row goes to parts
  of generation G+1; then ``manifest.json`` names G+1 (the commit, one atomic
  rename); then generation G's parts are deleted. A crash before the commit
  leaves the pool as it was; readers only read the committed generation. A
  rewrite must not run while a writer is still appending.
* **Read** (:func:`read_parts`): the committed generation's parts in name order,
  concatenated; :func:`ttpkit.pool.read_pool` then drops duplicate
  (query_id, idx) rows exactly as for a file.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ttpkit import jsonio
from ttpkit.errors import ConfigError, DataError, StorageError
from ttpkit.paths import write_atomic
from ttpkit.text import check_text
from ttpkit.policy.base import Candidate
from ttpkit.pool._schema import GREEDY, IDX, LOGP, N_TOKENS, POLICY, POOL_COLUMNS, QUERY_ID, SAMPLING_COLUMNS, SEED, TEXT, USER_ID

__all__ = ["PartWriter", "amend_parts_manifest", "check_utf8", "is_partitioned", "pool_path", "read_parts", "write_parts"]

MANIFEST_FILE = "manifest.json"
SCHEMA = pa.schema([(QUERY_ID, pa.string()), (USER_ID, pa.string()), (IDX, pa.int64()), (TEXT, pa.string()),
                    (POLICY, pa.string()), (SEED, pa.int64()), (GREEDY, pa.bool_()), (LOGP, pa.float64()),
                    (N_TOKENS, pa.int64())])
REWRITE_ROWS = 250_000  # rows per part when a pool is rewritten (whole queries; keeps parts well under 100 MB)


def is_partitioned(path: str | Path) -> bool:
    """Whether ``path`` is (or would be written as) a pool directory rather than a single Parquet file.

    A name ending in ``.parquet`` and any existing file are single-file pools;
    any other name is a directory. (A single-file pool may exist only as its
    journal, from a run killed before its first fold.)
    """
    p = Path(path)
    if p.is_dir():
        return True
    return not p.exists() and p.suffix != ".parquet" and not p.with_name(p.name + ".journal.jsonl").exists()


def pool_path(path: str | Path) -> Path:
    """``Path(path)``, or a :class:`ConfigError` for a name that is not UTF-8 (pyarrow opens UTF-8 names only)."""
    check_text(str(path), f"pool {path}: its name", ConfigError)
    return Path(path)


def _meta(path: Path) -> tuple[int, dict | None] | None:
    """(generation, manifest) from ``manifest.json``; ``None`` if the directory has none."""
    file = path / MANIFEST_FILE
    if not file.exists():
        return None
    if not file.is_file():
        raise DataError(f"{file}: is a directory, not a file (the pool's manifest); move it away")
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
        gen, manifest = int(meta["generation"]), meta.get("manifest")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError):
        raise DataError(f"{file}: the pool's manifest is damaged (expected {{\"generation\": G, \"manifest\": ...}})") from None
    if manifest is not None and not isinstance(manifest, dict):
        raise DataError(f"{file}: the pool's manifest is damaged (not a JSON object)")
    return gen, manifest


def _write_meta(path: Path, generation: int, manifest: dict | None) -> None:
    text = jsonio.dumps({"generation": generation, "manifest": manifest}, indent=1, default=str) + "\n"
    write_atomic(path / MANIFEST_FILE, lambda tmp: tmp.write_text(text, encoding="utf-8"), "pool manifest",
                 "the pool on disk is unchanged")


def _parts(path: Path, generation: int | None = None) -> list[Path]:
    pattern = "part-*.parquet" if generation is None else f"part-g{generation}-*.parquet"
    return sorted(path.glob(pattern))


def _check_dir(path: Path) -> None:
    """Refuse a directory that exists but is no ttpkit pool (it holds no ``manifest.json``)."""
    if path.is_dir() and not (path / MANIFEST_FILE).exists():
        raise ConfigError(f"pool {path}: is a directory but not a ttpkit pool (no {MANIFEST_FILE}); "
                          "give a new directory name, or a file name ending in .parquet")


def read_parts(path: str | Path) -> tuple[pd.DataFrame, dict | None]:
    """Rows of a pool directory's committed generation, in part-name order, and its manifest.

    Raises:
        DataError: If the directory holds no ``manifest.json`` (it is not a pool),
            the manifest is damaged, or a part is unreadable.
    """
    path = pool_path(path)
    meta = _meta(path)
    if meta is None:
        raise DataError(f"{path}: is a directory but not a ttpkit pool (no {MANIFEST_FILE})")
    gen, manifest = meta
    tables = []
    for part in _parts(path, gen):
        try:
            tables.append(pq.read_table(part).replace_schema_metadata(None))
        except Exception as e:  # pyarrow raises several types for a bad file
            raise DataError(f"{part}: not a readable Parquet part ({_first_line(e)})") from None
        check_utf8(zip(tables[-1].column_names, tables[-1].columns), part)
    if not tables:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in POOL_COLUMNS}), manifest
    try:
        return pa.concat_tables(tables, promote_options="permissive").to_pandas(), manifest
    except (pa.ArrowInvalid, pa.ArrowTypeError) as e:  # parts whose columns cannot be combined
        raise DataError(f"{path}: the pool's parts cannot be read together ({_first_line(e)})") from None


def check_utf8(columns: Iterable[tuple[str, pa.Array | pa.ChunkedArray]], path: Path) -> None:
    """Refuse string columns holding bytes that are not UTF-8 (Parquet does not check, and pandas decodes late).

    Raises:
        DataError: Naming the file, the column and the first bad row.
    """
    for name, column in columns:
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        try:
            column.validate(full=True)
        except pa.ArrowInvalid:
            raw = column.cast(pa.large_binary()).to_pylist()  # only on the rare bad file: find the row
            row = next((i for i, v in enumerate(raw) if v is not None and not _is_utf8(v)), "?")
            raise DataError(f"{path}: column {name!r} row {row} is not valid UTF-8 text; the pool was written "
                            "by another tool, or is damaged") from None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _publish(table_or_frame: pa.Table | pd.DataFrame, final: Path, kept: str) -> None:
    """Write one part under a hidden temporary name, fsync it, then rename it into place (``kept``: for a failed write)."""

    def write(tmp: Path) -> None:
        if isinstance(table_or_frame, pd.DataFrame):
            table_or_frame.to_parquet(tmp, index=False)
        else:
            pq.write_table(table_or_frame, tmp)

    write_atomic(final, write, "pool part", kept, fsync=True, fault="write", tmp=final.with_name(f".{final.name}.tmp"))


def _writer_id() -> str:
    """Unique across processes and machines; sorts by start time (ms since the epoch), so parts read in write order."""
    return f"{time.time_ns() // 1_000_000:013d}-{os.getpid()}-{secrets.token_hex(3)}"


def write_parts(df: pd.DataFrame, path: str | Path, manifest: dict | None = None) -> None:
    """Rewrite a pool directory with the rows of ``df`` as a new generation (see the module docstring).

    Args:
        df: Every row of the pool (a query's rows must be contiguous or will be grouped).
        path: The pool directory (created if absent).
        manifest: The pool's manifest; ``None`` keeps the one already there.
    """
    path = pool_path(path)
    _check_dir(path)
    path.mkdir(parents=True, exist_ok=True)
    gen, old = _meta(path) or (-1, None)
    new, writer = gen + 1, _writer_id()
    for p in _parts(path, new):  # left by a rewrite that crashed before its commit
        p.unlink()
    df = _grouped(df)
    try:
        for seq, (lo, hi) in enumerate(_query_bounds(df)):
            _publish(df.iloc[lo:hi], path / f"part-g{new}-{writer}-{seq:05d}.parquet", "the pool on disk is unchanged")
        _write_meta(path, new, manifest or old)
    except StorageError:
        for p in _parts(path, new):  # the uncommitted generation: nobody reads it, and it holds the space
            p.unlink(missing_ok=True)
        raise
    for p in _parts(path):
        if not p.name.startswith(f"part-g{new}-"):
            p.unlink(missing_ok=True)


def amend_parts_manifest(path: str | Path, update: Callable[[dict], dict]) -> dict | None:
    """Replace a pool directory's manifest by ``update(manifest)`` (one atomic rename; parts untouched).

    Returns the new manifest, or ``None`` (and nothing changes) for a pool without one.

    Raises:
        DataError: If the directory is not a pool or its manifest is damaged.
    """
    path = Path(path)
    meta = _meta(path)
    if meta is None:
        raise DataError(f"{path}: is a directory but not a ttpkit pool (no {MANIFEST_FILE})")
    gen, manifest = meta
    if manifest is None:
        return None
    new = update(dict(manifest))
    if new != manifest:
        _write_meta(path, gen, new)
    return new


def _grouped(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` without its attrs and index, each query's rows contiguous (queries in order of first appearance)."""
    df = df.reset_index(drop=True)
    df.attrs = {}
    if QUERY_ID not in df.columns or df[QUERY_ID].ne(df[QUERY_ID].shift()).sum() == df[QUERY_ID].nunique():
        return df
    first = pd.Index(pd.unique(df[QUERY_ID]))
    return df.iloc[np.argsort(first.get_indexer(df[QUERY_ID]), kind="stable")].reset_index(drop=True)


def _query_bounds(df: pd.DataFrame) -> list[tuple[int, int]]:
    """Row ranges of at least :data:`REWRITE_ROWS` rows (or the rest) that never split a query."""
    if QUERY_ID not in df.columns:
        return [(lo, min(lo + REWRITE_ROWS, len(df))) for lo in range(0, len(df), REWRITE_ROWS)]
    ends = df.index[df[QUERY_ID].ne(df[QUERY_ID].shift(-1))] + 1  # one past each query's last row
    bounds, lo = [], 0
    for end in ends.tolist():
        if end - lo >= REWRITE_ROWS or end == len(df):
            bounds.append((lo, end))
            lo = end
    return bounds


class PartWriter:
    """Appends sampled candidates to a pool directory, one new part file per ``flush_every`` queries.

    The same contract as :class:`ttpkit.pool.PoolWriter` (``add`` one query's
    candidates, ``fold`` to make every added query part of the pool), for a
    directory; many PartWriters may fill one pool at once.

    Args:
        path: The pool directory.
        flush_every: Write a part every this many queries.
        manifest: The run's manifest, written to ``manifest.json`` by :meth:`begin`
            (a pool that already has one keeps it).
        writer: This writer's id in its part names (default: time, pid and a
            random token); two writers must never share one.
    """

    def __init__(self, path: str | Path, flush_every: int = 8, manifest: dict | None = None, writer: str | None = None) -> None:
        self.path = pool_path(path)
        if flush_every < 1:
            raise ConfigError(f"flush_every must be at least 1, got {flush_every}")
        self.flush_every = flush_every
        self.manifest = manifest
        self.writer = writer or _writer_id()
        if not self.writer.replace("-", "").isalnum():
            raise ConfigError(f"writer id must be letters, digits and '-', got {self.writer!r}")
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"pool {self.path}: exists and is a file, not a pool directory")
        _check_dir(self.path)
        self._rows: dict[str, list] = {c: [] for c in (*POOL_COLUMNS, *SAMPLING_COLUMNS)}
        self._pending = 0
        self._seq = 0

    def begin(self) -> None:
        """Create the directory and its ``manifest.json`` (before any part); a pool without a manifest adopts this run's."""
        self.path.mkdir(parents=True, exist_ok=True)
        meta = _meta(self.path)
        if meta is None or (meta[1] is None and self.manifest is not None):
            _write_meta(self.path, meta[0] if meta else 0, self.manifest)

    def discard(self) -> None:
        """Delete the pool's parts, temporary files and manifest, then the directory if nothing else is in it."""
        if not self.path.is_dir():
            return
        for p in [*self.path.glob("part-*.parquet"), *self.path.glob(".part-*.tmp"), self.path / MANIFEST_FILE]:
            p.unlink(missing_ok=True)
        if not any(self.path.iterdir()):
            self.path.rmdir()

    def add(self, candidates: Iterable[Candidate]) -> None:
        """Buffer one query's candidates; every ``flush_every`` queries they are written as one part."""
        for c in candidates:
            for k in (*POOL_COLUMNS, *SAMPLING_COLUMNS):
                self._rows[k].append(getattr(c, k))
        self._pending += 1
        if self._pending >= self.flush_every:
            self.fold()

    def fold(self) -> None:
        """Write the buffered queries as one new part (durable on return); nothing if none is buffered."""
        if not self._pending:
            return
        if not (self.path / MANIFEST_FILE).exists():
            self.begin()
        gen = _meta(self.path)[0]  # type: ignore[index]  (begin wrote it)
        table = pa.Table.from_pydict(self._rows, schema=SCHEMA)
        _publish(table, self.path / f"part-g{gen}-{self.writer}-{self._seq:05d}.parquet",
                 "every part written before is kept; make room and rerun to resume")
        self._seq += 1
        self._rows = {c: [] for c in (*POOL_COLUMNS, *SAMPLING_COLUMNS)}
        self._pending = 0
