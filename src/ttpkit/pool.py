"""Candidate pools: the schema every stage reads and writes, and resumable Parquet files.

A pool has one row per candidate. Sampling writes the columns of
:data:`POOL_COLUMNS` (``query_id, user_id, idx, text, policy, seed``), labelling
adds the utilities ``rouge1, rougeL``, and scoring adds :func:`score_col`
(``score_<name>``) and, for probabilistic scorers, :func:`std_col`
(``std_<name>``). A query has M candidates (``idx`` 0..M-1); best-of-N curves
are computed on a grid ``ns`` of N values up to M (:func:`n_grid`). A scorer is
named by the grammar ``oracle | random | <name>[@<rule>]`` (:class:`Scorer`).

While sampling, finished queries are appended to a JSON-lines journal beside
the file (``<pool>.journal.jsonl``, flushed per query) and folded into the
Parquet file atomically every few queries and at the end, so an interrupted run
loses at most the query in flight. The Parquet file's metadata carries the run's
manifest (:mod:`ttpkit.manifest`): resuming with other settings is refused.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ttpkit.data import Query
from ttpkit._faults import fault_point
from ttpkit.errors import ConfigError, DataError
from ttpkit.manifest import MANIFEST_KEY, check_format, check_resume
from ttpkit.paths import check_writable
from ttpkit.policy.base import Candidate, Policy

__all__ = [
    "BUILTIN_SCORERS",
    "IDX",
    "POLICY",
    "POOL_COLUMNS",
    "QUERY_ID",
    "ROUGE1",
    "ROUGELSUM",
    "ROUGEL",
    "RULES",
    "SEED",
    "TEXT",
    "USER_ID",
    "PoolWriter",
    "Rule",
    "Scorer",
    "candidates_per_query",
    "complete_queries",
    "fill_pool",
    "n_grid",
    "pool_manifest",
    "read_pool",
    "score_col",
    "scorer_names",
    "std_col",
    "write_pool",
]

log = logging.getLogger(__name__)

# -- the schema ---------------------------------------------------------------------------
QUERY_ID, USER_ID, IDX, TEXT, POLICY, SEED = "query_id", "user_id", "idx", "text", "policy", "seed"
POOL_COLUMNS = (QUERY_ID, USER_ID, IDX, TEXT, POLICY, SEED)
ROUGE1, ROUGEL, ROUGELSUM = "rouge1", "rougeL", "rougeLsum"  # utilities added by labelling (see ttpkit.utility)
_SCORE, _STD = "score_", "std_"
BUILTIN_SCORERS = ("oracle", "random")
RULES = ("mean", "lcb:<kappa>", "ucb:<kappa>", "thompson", "soft:<tau>")


def score_col(name: str) -> str:
    """Column holding scorer ``name``'s score (its mean, for a probabilistic scorer)."""
    return _SCORE + name


def std_col(name: str) -> str:
    """Column holding a probabilistic scorer's predicted standard deviation."""
    return _STD + name


def scorer_names(pool: pd.DataFrame) -> list[str]:
    """Scorers a pool can be ranked by: the built-ins, then one per ``score_<name>`` column."""
    return list(BUILTIN_SCORERS) + [c[len(_SCORE) :] for c in pool.columns if c.startswith(_SCORE)]


@dataclass(frozen=True)
class Rule:
    """A selection rule: ``mean``, ``lcb:κ``, ``ucb:κ``, ``thompson`` (applied by :mod:`ttpkit.selection`) or ``soft:τ``.

    ``soft:τ`` is soft best-of-N: the answer is drawn from softmax(score / λ)
    over the N drawn candidates, with λ = τ times the score's standard
    deviation over the pool (so τ does not depend on the scorer's units);
    :func:`ttpkit.scaling.curves` computes its expectation exactly.
    """

    name: str = "mean"
    kappa: float = 0.0  # lcb / ucb: how many predicted stds below / above the mean
    tau: float = 0.0  # soft: the temperature, in units of the score's std over the pool

    @classmethod
    def parse(cls, text: str) -> Rule:
        """Parse ``"lcb:1.5"``; ``lcb``/``ucb`` without κ mean κ = 1.

        Raises:
            ConfigError: For an unknown rule or a bad κ; the message lists the rules.
        """
        name, _, arg = text.partition(":")
        if name in ("mean", "thompson") and not arg:
            return cls(name)
        if name == "soft":
            try:
                tau = float(arg)
            except ValueError:
                raise ConfigError(f"selection rule {text!r}: soft needs a temperature, as in soft:0.1") from None
            if not tau > 0:
                raise ConfigError(f"selection rule {text!r}: the temperature must be > 0")
            return cls(name, tau=tau)
        if name in ("lcb", "ucb"):
            try:
                kappa = float(arg) if arg else 1.0
            except ValueError:
                raise ConfigError(f"selection rule {text!r}: kappa must be a number") from None
            if not kappa >= 0:
                raise ConfigError(f"selection rule {text!r}: kappa must be >= 0")
            return cls(name, kappa)
        raise ConfigError(f"unknown selection rule {text!r}; known rules: {', '.join(RULES)}")


@dataclass(frozen=True)
class Scorer:
    """A scorer name parsed: ``oracle``, ``random``, or ``<name>[@<rule>]`` over ``score_<name>`` (and ``std_<name>``).

    Attributes:
        name: ``oracle``, ``random`` or the suffix of a ``score_`` column.
        rule: The selection rule text (``"lcb:1"``), or ``None`` for the plain score.
    """

    name: str
    rule: str | None = None

    @classmethod
    def parse(cls, text: str) -> Scorer:
        """Parse ``"user-prob@lcb:1"``; the rule is checked here, the column when the pool is read.

        Raises:
            ConfigError: For an empty name, an unknown rule, or a rule on a built-in scorer.
        """
        name, at, rule = text.strip().partition("@")
        if not name:
            raise ConfigError(f"scorer {text!r}: empty name; scorers are oracle, random or <name>[@<rule>]")
        if at:
            Rule.parse(rule)
            if name in BUILTIN_SCORERS:
                raise ConfigError(f"scorer {text!r}: a selection rule applies to a reward model's scores, not to {name!r}")
        return cls(name, rule if at else None)

    @classmethod
    def parse_list(cls, text: str) -> list[Scorer]:
        """Parse a comma-separated list (``"oracle,random,user-prob@lcb:1"``).

        Raises:
            ConfigError: If the list is empty or an entry is bad.
        """
        scorers = [cls.parse(part) for part in text.split(",") if part.strip()]
        if not scorers:
            raise ConfigError("no scorers given; scorers are oracle, random or <name>[@<rule>]")
        return scorers

    @property
    def builtin(self) -> bool:
        """Whether this is ``oracle`` or ``random`` (no column needed)."""
        return self.name in BUILTIN_SCORERS

    @property
    def slug(self) -> str:
        """File-name form (``user-prob@lcb:1`` -> ``user-prob_lcb1``)."""
        return str(self).replace("@", "_").replace(":", "")

    def __str__(self) -> str:
        return self.name if self.rule is None else f"{self.name}@{self.rule}"


def n_grid(m: int) -> tuple[int, ...]:
    """The N values best-of-N is reported at for pools of ``m``: powers of two up to ``m``."""
    if m < 1:
        raise ConfigError(f"pools need at least one candidate per query, got {m}")
    return tuple(1 << i for i in range(m.bit_length()) if 1 << i <= m)


_warned_uneven: set[tuple[int, int, int]] = set()


def candidates_per_query(pool: pd.DataFrame) -> int:
    """M: candidates per query (the smallest query's count; uneven counts are logged as a warning).

    Raises:
        DataError: If the pool has no rows.
    """
    if len(pool) == 0:
        raise DataError("the pool has no candidates")
    counts = pool.groupby(QUERY_ID)[IDX].nunique()
    low, high = int(counts.min()), int(counts.max())
    if low != high and (key := (low, high, len(counts))) not in _warned_uneven:
        _warned_uneven.add(key)
        log.warning("queries have %d to %d candidates (%d of %d queries have fewer than %d); the first %d of each are used",
                    low, high, int((counts < high).sum()), len(counts), high, low)
    return low


def _journal(path: Path) -> Path:
    return path.with_name(path.name + ".journal.jsonl")


def pool_manifest(df: pd.DataFrame) -> dict | None:
    """The manifest of the run that made a pool read by :func:`read_pool` (``None`` for pools older than manifests)."""
    return df.attrs.get(MANIFEST_KEY)


def write_pool(df: pd.DataFrame, path: str | Path, manifest: dict | None = None) -> None:
    """Write a pool atomically (temporary file, then rename), keeping its manifest (``manifest`` or the frame's own)."""
    path = Path(path)
    check_writable(path, "pool")
    df = df.copy(deep=False)
    manifest = manifest or pool_manifest(df)
    df.attrs = {MANIFEST_KEY: manifest} if manifest else {}
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        df.to_parquet(tmp, index=False)
        fault_point("write")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_pool(path: str | Path, include_journal: bool = True, require: Sequence[str] = ()) -> pd.DataFrame:
    """Read a pool file (and any unfolded journal rows of an interrupted run).

    Args:
        path: The Parquet pool file.
        include_journal: Also read rows journaled but not yet folded.
        require: Columns needed beyond :data:`POOL_COLUMNS` (say :data:`ROUGEL`).

    Raises:
        DataError: If the file is missing, unreadable or lacks a column; the
            message names the file and the missing columns.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a pool file")
    frames, manifest = [], None
    if path.exists():
        try:
            frames.append(pd.read_parquet(path))
        except Exception as e:  # pyarrow raises several types for a bad file
            raise DataError(f"{path}: not a readable Parquet pool ({_first_line(e)})") from None
        manifest = pool_manifest(frames[0])
        if manifest is not None and not isinstance(manifest, dict):
            raise DataError(f"{path}: the pool's manifest is damaged (not a JSON object)")
        check_format(path, manifest, "pool")
    journal = _journal(path)
    if include_journal and journal.exists():
        rows, bad = [], 0
        with journal.open(encoding="utf-8") as f:
            for line in f:
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    bad += 1  # a line cut off by a crash; the records after it are whole and kept
        if bad:
            log.warning("%s: skipped %d damaged journal line(s)", journal, bad)
        if rows:
            frames.append(pd.DataFrame(rows))
    if not frames:
        raise DataError(f"{path}: pool file does not exist")
    for f, where in zip(frames, (path, journal) if path.exists() else (journal,)):
        if QUERY_ID in f.columns and IDX in f.columns and (dups := int(f.duplicated([QUERY_ID, IDX]).sum())):
            log.warning("%s: dropped %d duplicate candidate row(s) (same query_id and idx; kept the first)", where, dups)
    frames = [f for f in frames if len(f)] or frames[:1]  # an empty pool file (a run's manifest only) adds no rows
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    missing = [c for c in (*POOL_COLUMNS, *require) if c not in df.columns]
    if missing:
        hint = "; run `ttpkit label` first" if set(missing) & {ROUGE1, ROUGEL, ROUGELSUM} else ""
        raise DataError(f"{path}: missing pool columns {missing}{hint}")
    df = df.drop_duplicates([QUERY_ID, IDX], keep="first").reset_index(drop=True)
    df.attrs = {MANIFEST_KEY: manifest} if manifest else {}
    return df


def _first_line(e: Exception) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def complete_queries(df: pd.DataFrame, m: int) -> set[str]:
    """Query ids that already have at least ``m`` candidates."""
    counts = df.groupby(QUERY_ID)[IDX].nunique()
    return set(counts[counts >= m].index)


class PoolWriter:
    """Appends sampled candidates to a pool, journaling each query as it finishes.

    Args:
        path: The Parquet pool file.
        fold_every: Fold the journal into the Parquet file every this many queries.
        manifest: The run's manifest, written into the file at every fold
            (a pool that already has one keeps it).
    """

    def __init__(self, path: str | Path, fold_every: int = 8, manifest: dict | None = None) -> None:
        self.path = Path(path)
        self.fold_every = fold_every
        self.manifest = manifest
        self._pending = 0
        check_writable(self.path, "pool")

    def existing(self) -> pd.DataFrame:
        """Rows already in the pool (file plus journal); empty if there is none."""
        if not self.path.exists() and not _journal(self.path).exists():
            return pd.DataFrame(columns=list(POOL_COLUMNS))
        return read_pool(self.path)

    def add(self, candidates: Iterable[Candidate]) -> None:
        """Journal one query's candidates (durable on return)."""
        journal = _journal(self.path)
        if journal.exists() and journal.stat().st_size > 0:
            with journal.open("rb") as f:
                f.seek(-1, os.SEEK_END)
                cut = f.read(1) != b"\n"  # a crash mid-write: end that line so the next record starts whole
        else:
            cut = False
        with journal.open("a", encoding="utf-8") as f:
            if cut:
                f.write("\n")
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
        write_pool(df, self.path, pool_manifest(df) or self.manifest)
        fault_point("fold")
        journal.unlink()
        self._pending = 0


def fill_pool(
    path: str | Path,
    queries: Sequence[Query],
    m: int,
    policy: Policy | Callable[[], Policy],
    on_start: Callable[[int], None] | None = None,
    on_query: Callable[[], None] | None = None,
    manifest: dict | None = None,
    force_new: bool = False,
) -> int:
    """Sample ``m`` candidates for each query the pool at ``path`` does not have yet.

    Args:
        path: Pool file (created, or resumed).
        queries: Queries the pool should cover.
        m: Candidates per query.
        policy: A policy, or a function that builds one (called only if work remains).
        on_start: Called with the number of queries left before sampling starts.
        on_query: Called after each query is journaled (for progress bars).
        manifest: This run's manifest (:func:`ttpkit.manifest.stamp`); a pool
            made under other settings is not resumed.
        force_new: Delete an existing pool (and its journal) and start over.

    Returns:
        How many queries were sampled.

    Raises:
        ConfigError: If the pool exists with another manifest (the message names
            the differing key), or ``path`` cannot be written.
    """
    path = Path(path)
    writer = PoolWriter(path, manifest=manifest)
    if force_new:
        path.unlink(missing_ok=True)
        _journal(path).unlink(missing_ok=True)
    existing = writer.existing()
    if manifest is not None:
        check_resume(path, pool_manifest(existing), manifest)
        if not path.exists():  # the manifest is on disk before the first candidate
            write_pool(pd.DataFrame({c: pd.Series(dtype=object) for c in POOL_COLUMNS}), path, manifest)
    done = complete_queries(existing, m)
    todo = [q for q in queries if q.id not in done]
    if on_start is not None:
        on_start(len(todo))
    if not todo:
        writer.fold()  # a journal left by a run killed during its last fold
        if manifest is not None and pool_manifest(existing) is None:  # a pool from before manifests adopts this run's
            write_pool(read_pool(path), path, manifest)
        return 0
    if not isinstance(policy, Policy):
        policy = policy()
    step = max(1, int(policy.batch_queries))  # queries the policy decodes in one batch
    for i in range(0, len(todo), step):
        for cands in policy.sample(todo[i : i + step], m):
            writer.add(cands)
            if on_query is not None:
                on_query()
    writer.fold()
    return len(todo)
