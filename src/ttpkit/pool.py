"""Candidate pool files (Parquet), written incrementally and resumable.

One row per candidate with the columns ``query_id, user_id, idx, text, policy,
seed``; labelling adds ``rouge1, rougeL``, scoring adds ``score_<name>`` (and
``std_<name>``). While sampling, finished queries are appended to a JSON-lines
journal beside the file (``<pool>.journal.jsonl``, flushed per query) and folded
into the Parquet file atomically every few queries and at the end, so an
interrupted run loses at most the query in flight.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import pandas as pd

from ttpkit.errors import DataError
from ttpkit.data import Query
from ttpkit.policy.base import Candidate, Policy

__all__ = ["POOL_COLUMNS", "PoolWriter", "complete_queries", "fill_pool", "read_pool", "write_pool"]

POOL_COLUMNS = ["query_id", "user_id", "idx", "text", "policy", "seed"]


def _journal(path: Path) -> Path:
    return path.with_name(path.name + ".journal.jsonl")


def write_pool(df: pd.DataFrame, path: str | Path) -> None:
    """Write a pool atomically (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    df.to_parquet(tmp, index=False)
    os.replace(tmp, path)


def read_pool(path: str | Path, include_journal: bool = True) -> pd.DataFrame:
    """Read a pool file (and any unfolded journal rows of an interrupted run).

    Raises:
        DataError: If the file is missing, unreadable or lacks pool columns.
    """
    path = Path(path)
    frames = []
    if path.exists():
        try:
            frames.append(pd.read_parquet(path))
        except Exception as e:  # pyarrow raises several types for a bad file
            raise DataError(f"{path}: not a readable Parquet pool ({e})") from None
    journal = _journal(path)
    if include_journal and journal.exists():
        rows = []
        with journal.open(encoding="utf-8") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    break  # a line cut off by an interruption
        if rows:
            frames.append(pd.DataFrame(rows))
    if not frames:
        raise DataError(f"{path}: pool file does not exist")
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    missing = [c for c in POOL_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing pool columns {missing}")
    return df.drop_duplicates(["query_id", "idx"], keep="first").reset_index(drop=True)


def complete_queries(df: pd.DataFrame, n: int) -> set[str]:
    """Query ids that already have at least ``n`` candidates."""
    counts = df.groupby("query_id")["idx"].nunique()
    return set(counts[counts >= n].index)


class PoolWriter:
    """Appends sampled candidates to a pool, journaling each query as it finishes.

    Args:
        path: The Parquet pool file.
        fold_every: Fold the journal into the Parquet file every this many queries.
    """

    def __init__(self, path: str | Path, fold_every: int = 8) -> None:
        self.path = Path(path)
        self.fold_every = fold_every
        self._pending = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def existing(self) -> pd.DataFrame:
        """Rows already in the pool (file plus journal); empty if there is none."""
        if not self.path.exists() and not _journal(self.path).exists():
            return pd.DataFrame(columns=POOL_COLUMNS)
        return read_pool(self.path)

    def add(self, candidates: Iterable[Candidate]) -> None:
        """Journal one query's candidates (durable on return)."""
        with _journal(self.path).open("a", encoding="utf-8") as f:
            for c in candidates:
                f.write(json.dumps({k: getattr(c, k) for k in POOL_COLUMNS}, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._pending += 1
        if self._pending >= self.fold_every:
            self.fold()

    def fold(self) -> None:
        """Merge the journal into the Parquet file atomically, then drop the journal."""
        journal = _journal(self.path)
        if not journal.exists():
            return
        df = read_pool(self.path)
        write_pool(df, self.path)
        journal.unlink()
        self._pending = 0


def fill_pool(
    path: str | Path,
    queries: Sequence[Query],
    n: int,
    policy: Policy | Callable[[], Policy],
    on_start: Callable[[int], None] | None = None,
    on_query: Callable[[], None] | None = None,
) -> int:
    """Sample ``n`` candidates for each query the pool at ``path`` does not have yet.

    Args:
        path: Pool file (created, or resumed).
        queries: Queries the pool should cover.
        n: Candidates per query.
        policy: A policy, or a function that builds one (called only if work remains).
        on_start: Called with the number of queries left before sampling starts.
        on_query: Called after each query is journaled (for progress bars).

    Returns:
        How many queries were sampled.
    """
    writer = PoolWriter(path)
    done = complete_queries(writer.existing(), n)
    todo = [q for q in queries if q.id not in done]
    if on_start is not None:
        on_start(len(todo))
    if not todo:
        return 0
    if not hasattr(policy, "sample"):
        policy = policy()
    step = max(1, int(getattr(policy, "batch_queries", 1)))  # queries the policy decodes in one batch
    for i in range(0, len(todo), step):
        for cands in policy.sample(todo[i : i + step], n):
            writer.add(cands)
            if on_query is not None:
                on_query()
    writer.fold()
    return len(todo)
