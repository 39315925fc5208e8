"""Pool files: atomic Parquet writes, reads that fold in an interrupted run's journal, and the writer.

:func:`read_pool`, :func:`write_pool` and :func:`pool_writer` take either
layout: a single file (here) or a pool directory of part files
(:mod:`ttpkit.pool._parts`, chosen by :func:`~ttpkit.pool.is_partitioned`: any
name not ending in ``.parquet``).

While sampling, finished queries are appended to a JSON-lines journal beside
the file (``<pool>.journal.jsonl``, flushed per query) and folded into the
Parquet file atomically every few queries and at the end, so an interrupted run
loses at most the query in flight. The Parquet file's metadata carries the run's
manifest (:mod:`ttpkit.manifest`): resuming with other settings is refused.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ttpkit import jsonio
from ttpkit._faults import fault_point
from ttpkit.errors import DataError
from ttpkit.manifest import MANIFEST_KEY, check_format
from ttpkit.paths import check_writable, write_atomic, writing
from ttpkit.policy.base import Candidate
from ttpkit.pool._parts import (PartWriter, amend_parts_manifest, check_utf8, is_partitioned, pool_path, read_parts,
                               write_parts)
from ttpkit.pool._schema import GREEDY, IDX, LOGP, N_TOKENS, POOL_COLUMNS, QUERY_ID, ROUGE1, ROUGEL, ROUGELSUM, SAMPLING_COLUMNS, USER_ID
from ttpkit.text import check_text, find_bad_text

__all__ = ["PoolWriter", "amend_manifest", "complete_queries", "existing_pool", "pool_manifest", "pool_writer", "read_pool",
           "write_pool"]

log = logging.getLogger(__name__)


def _journal(path: Path) -> Path:
    return path.with_name(path.name + ".journal.jsonl")


def pool_manifest(df: pd.DataFrame) -> dict | None:
    """The manifest of the run that made a pool read by :func:`read_pool` (``None`` for pools older than manifests)."""
    return df.attrs.get(MANIFEST_KEY)


def write_pool(df: pd.DataFrame, path: str | Path, manifest: dict | None = None) -> None:
    """Write a pool atomically (temporary file, then rename), keeping its manifest (``manifest`` or the frame's own).

    A pool directory is rewritten as a new generation of parts, committed by one
    rename (:func:`ttpkit.pool._parts.write_parts`).
    """
    path = pool_path(path)
    if is_partitioned(path):
        write_parts(df, path, manifest or pool_manifest(df))
        return
    check_writable(path, "pool")
    df = df.copy(deep=False)
    manifest = manifest or pool_manifest(df)
    df.attrs = {MANIFEST_KEY: manifest} if manifest else {}
    write_atomic(path, lambda tmp: df.to_parquet(tmp, index=False), "pool", "the pool on disk is unchanged", fault="write")


def read_pool(path: str | Path, include_journal: bool = True, require: Sequence[str] = ()) -> pd.DataFrame:
    """Read a pool file (and any unfolded journal rows of an interrupted run).

    Args:
        path: The Parquet pool file, or a pool directory (its part files).
        include_journal: Also read rows journaled but not yet folded.
        require: Columns needed beyond :data:`POOL_COLUMNS` (say :data:`ROUGEL`).

    Raises:
        DataError: If the file is missing, unreadable or lacks a column, or a
            directory is no pool; the message names the file and the missing columns.
    """
    path = pool_path(path)
    frames, manifest = [], None
    if path.is_dir():
        frame, manifest = read_parts(path)
        frames.append(frame)
        check_format(path, manifest, "pool")
    elif path.exists():
        try:
            frames.append(pd.read_parquet(path))
        except Exception as e:  # pyarrow raises several types for a bad file
            raise DataError(f"{path}: not a readable Parquet pool ({_first_line(e)})") from None
        check_utf8(((c, pa.array(s)) for c, s in frames[0].items() if hasattr(s.array, "__arrow_array__")), path)
        manifest = pool_manifest(frames[0])
        if manifest is not None and not isinstance(manifest, dict):
            raise DataError(f"{path}: the pool's manifest is damaged (not a JSON object)")
        check_format(path, manifest, "pool")
    journal = _journal(path)
    if include_journal and journal.exists() and not path.is_dir():
        rows = _journal_rows(journal)
        if rows:
            frames.append(pd.DataFrame(rows))
    if not frames:
        raise DataError(f"{path}: pool file does not exist")
    for f, where in zip(frames, (path, journal) if path.exists() else (journal,)):  # a directory has no journal
        if QUERY_ID in f.columns and IDX in f.columns and (dups := int(f.duplicated([QUERY_ID, IDX]).sum())):
            log.warning("%s: dropped %d duplicate candidate row(s) (same query_id and idx; kept the first)", where, dups)
    frames = [f for f in frames if len(f)] or frames[:1]  # an empty pool file (a run's manifest only) adds no rows
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    missing = [c for c in (*POOL_COLUMNS, *require) if c not in df.columns]
    if missing:
        hint = "; run `ttpkit label` first" if set(missing) & {ROUGE1, ROUGEL, ROUGELSUM} else ""
        raise DataError(f"{path}: missing pool columns {missing}{hint}")
    for col in (QUERY_ID, USER_ID, IDX):  # every statistic groups by these: a null would drop or merge rows silently
        if (nulls := df[col].isna()).any():
            row = int(nulls.to_numpy().argmax())
            raise DataError(f"{path}: column {col!r} has {int(nulls.sum())} null value(s), first at row {row} "
                            f"(query_id {df[QUERY_ID].iloc[row]!r}); every candidate needs a query_id, user_id and idx")
    df = df.drop_duplicates([QUERY_ID, IDX], keep="first").reset_index(drop=True)
    _sampling_dtypes(df)
    df.attrs = {MANIFEST_KEY: manifest} if manifest else {}
    return df


def _sampling_dtypes(df: pd.DataFrame) -> None:
    """Give :data:`SAMPLING_COLUMNS` one dtype whatever the rows came from (journal nulls, older rows without them)."""
    if GREEDY in df.columns:
        df[GREEDY] = df[GREEDY].astype(object).where(df[GREEDY].notna(), False).astype(bool)
    if LOGP in df.columns:
        df[LOGP] = pd.to_numeric(df[LOGP], errors="coerce").astype("float64")
    if N_TOKENS in df.columns:
        df[N_TOKENS] = pd.to_numeric(df[N_TOKENS], errors="coerce").fillna(0).astype("int64")


def _journal_rows(journal: Path) -> list[dict]:
    """The journal's whole records; a damaged line (cut by a crash anywhere, even inside a character) is skipped.

    The journal is read as bytes and each line decoded on its own, so a cut
    multi-byte character spoils only its own line; the records after it are
    whole and kept. Text that is not valid Unicode (a ``\\ud800`` escape, which
    ttpkit never writes) marks a line damaged too.
    """
    rows, bad = [], 0
    with journal.open("rb") as f:
        for line in f:
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))  # strict: json.loads(bytes) would let a surrogate through
            except (UnicodeDecodeError, json.JSONDecodeError):
                bad += 1
                continue
            if isinstance(row, dict) and find_bad_text(row) is None:
                rows.append(row)
            else:
                bad += 1
    if bad:
        log.warning("%s: skipped %d damaged journal line(s)", journal, bad)
    return rows


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def existing_pool(path: str | Path) -> pd.DataFrame:
    """The rows already in the pool at ``path`` (file plus journal, or a directory's parts); empty if there is none."""
    path = Path(path)
    if path.is_dir() or path.exists() or _journal(path).exists():
        return read_pool(path)
    return pd.DataFrame(columns=list(POOL_COLUMNS))


def amend_manifest(path: str | Path, update: Callable[[dict], dict]) -> dict | None:
    """Replace a finished pool's manifest by ``update(manifest)``: facts a run learnt while sampling.

    A pool directory's ``manifest.json`` is replaced alone; a pool file is
    rewritten (atomically, as :func:`write_pool` does) only if the manifest
    changed. A pool without a manifest (from before manifests) is left as it is.

    Returns:
        The new manifest, or ``None`` for a pool without one.
    """
    path = Path(path)
    if is_partitioned(path):
        return amend_parts_manifest(path, update)
    pool_writer(path).fold()  # a journal left by an interrupted fold
    df = read_pool(path)
    old = pool_manifest(df)
    if old is None:
        return None
    new = update(dict(old))
    if new != old:
        write_pool(df, path, new)
    return new


def pool_writer(path: str | Path, manifest: dict | None = None, every: int = 8) -> PoolWriter | PartWriter:
    """The writer for ``path``'s layout: a :class:`PoolWriter` (folding every ``every`` queries) or a :class:`PartWriter`."""
    if is_partitioned(path):
        return PartWriter(path, flush_every=every, manifest=manifest)
    return PoolWriter(path, fold_every=every, manifest=manifest)


def complete_queries(df: pd.DataFrame, m: int) -> set[str]:
    """Query ids that already have at least ``m`` candidates."""
    counts = df.groupby(QUERY_ID)[IDX].nunique()
    return set(counts[counts >= m].index)


def _record(c: Candidate) -> bytes:
    """One journal line; a candidate whose text is not valid Unicode is a :class:`DataError` naming it."""
    record = {k: getattr(c, k) for k in (*POOL_COLUMNS, *SAMPLING_COLUMNS)}
    if record[LOGP] != record[LOGP]:  # NaN: the backend reports no log-probability
        record[LOGP] = None
    line = jsonio.dumps(record, ensure_ascii=False) + "\n"
    try:
        return line.encode("utf-8")
    except UnicodeEncodeError:
        check_text(str(c.text), f"policy {c.policy}'s candidate {c.idx} of query {c.query_id!r}")
        check_text(line, f"candidate {c.idx} of query {c.query_id!r}")
        raise


class PoolWriter:
    """Appends sampled candidates to a pool, journaling each query as it finishes.

    Args:
        path: The Parquet pool file.
        fold_every: Fold the journal into the Parquet file every this many queries.
        manifest: The run's manifest, written into the file at every fold
            (a pool that already has one keeps it).
    """

    def __init__(self, path: str | Path, fold_every: int = 8, manifest: dict | None = None) -> None:
        self.path = pool_path(path)
        self.fold_every = fold_every
        self.manifest = manifest
        self._pending = 0
        check_writable(self.path, "pool")

    def discard(self) -> None:
        """Delete the pool file and its journal, to start the pool over."""
        self.path.unlink(missing_ok=True)
        _journal(self.path).unlink(missing_ok=True)

    def existing(self) -> pd.DataFrame:
        """Rows already in the pool (file plus journal); empty if there is none."""
        return existing_pool(self.path)

    def begin(self) -> None:
        """Write the (empty) pool file with the run's manifest, so the manifest is on disk before the first candidate."""
        if self.manifest is not None and not self.path.exists():
            write_pool(pd.DataFrame({c: pd.Series(dtype=object) for c in POOL_COLUMNS}), self.path, self.manifest)

    def add(self, candidates: Iterable[Candidate]) -> None:
        """Journal one query's candidates (durable on return; a failed write leaves the journal as it was).

        Raises:
            DataError: If a candidate's text is not valid Unicode (nothing is written).
            StorageError: If the journal cannot be written (a full disk): it is cut back to its previous records.
        """
        journal = _journal(self.path)
        data = b"".join(_record(c) for c in candidates)
        with writing(journal, "pool journal", "every query finished before is kept; make room and rerun to resume"):
            fd = os.open(journal, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                size = os.lseek(fd, 0, os.SEEK_END)
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # a crash mid-write: end that line so the next record starts whole
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                    os.fsync(fd)
                except OSError:
                    with contextlib.suppress(OSError):
                        os.ftruncate(fd, size)  # no half record: the journal is what it was
                    raise
            finally:
                os.close(fd)
        self._pending += 1
        if self._pending >= self.fold_every:
            self.fold()

    def fold(self) -> None:
        """Merge the journal into the Parquet file atomically, then drop the journal."""
        journal = _journal(self.path)
        if not journal.exists():
            return
        df = read_pool(self.path)
        write_pool(df, self.path, pool_manifest(df) or self.manifest)
        fault_point("fold")
        journal.unlink()
        self._pending = 0
