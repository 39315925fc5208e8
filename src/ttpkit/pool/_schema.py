"""The pool schema: column names, the scorer and selection-rule grammar, and the N grid.

A pool has one row per candidate. Sampling writes the columns of
:data:`POOL_COLUMNS` (``query_id, user_id, idx, text, policy, seed``), labelling
adds the utilities ``rouge1, rougeL``, and scoring adds :func:`score_col`
(``score_<name>``) and, for probabilistic scorers, :func:`std_col`
(``std_<name>``). Sampling also writes :data:`SAMPLING_COLUMNS` (``greedy,
logp, n_tokens``; pools from before them lack them): a query sampled with its
greedy decode has it as one more row marked ``greedy``, which is the baseline
a best-of-N answer is compared with and never one of the M exchangeable
samples that best-of-N curves draw from (:func:`sampled`, :func:`greedy_rows`). A query has M candidates (``idx`` 0..M-1); best-of-N curves
are computed on a grid ``ns`` of N values up to M (:func:`n_grid`). A scorer is
named by the grammar ``oracle | random | <name>[@<rule>]`` (:class:`ScorerRef`).
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass

import numpy as np

import pandas as pd

from ttpkit.errors import ConfigError, DataError

__all__ = [
    "BUILTIN_SCORERS",
    "GREEDY",
    "IDX",
    "LOGP",
    "N_TOKENS",
    "POLICY",
    "POOL_COLUMNS",
    "QUERY_ID",
    "ROUGE1",
    "ROUGELSUM",
    "ROUGEL",
    "RULES",
    "SAMPLING_COLUMNS",
    "SEED",
    "TEXT",
    "USER_ID",
    "Rule",
    "ScorerRef",
    "UTILITIES",
    "candidates_per_query",
    "check_scorer_name",
    "check_utility",
    "greedy_mask",
    "greedy_rows",
    "n_grid",
    "sampled",
    "score_col",
    "scorer_names",
    "std_col",
]

log = logging.getLogger(__name__)

QUERY_ID, USER_ID, IDX, TEXT, POLICY, SEED = "query_id", "user_id", "idx", "text", "policy", "seed"
POOL_COLUMNS = (QUERY_ID, USER_ID, IDX, TEXT, POLICY, SEED)
GREEDY, LOGP, N_TOKENS = "greedy", "logp", "n_tokens"
SAMPLING_COLUMNS = (GREEDY, LOGP, N_TOKENS)  # written by sampling (optional on read: older pools lack them)
ROUGE1, ROUGEL, ROUGELSUM = "rouge1", "rougeL", "rougeLsum"  # utilities added by labelling (see ttpkit.utility)
_SCORE, _STD = "score_", "std_"
BUILTIN_SCORERS = ("oracle", "random")
UTILITIES = (ROUGE1, ROUGEL, ROUGELSUM)
RESERVED_SCORERS = (*BUILTIN_SCORERS, "style")  # style: the baseline `ttpkit label` writes
_SCORER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # no "@", ",", ":" or spaces: the ScorerRef grammar splits there
RULES = ("mean", "lcb:<kappa>", "ucb:<kappa>", "thompson", "soft:<tau>")


def score_col(name: str) -> str:
    """Column holding scorer ``name``'s score (its mean, for a probabilistic scorer)."""
    return _SCORE + name


def std_col(name: str) -> str:
    """Column holding a probabilistic scorer's predicted standard deviation."""
    return _STD + name


def check_scorer_name(name: str) -> str:
    """``name`` if a scorer may write ``score_<name>`` under it, else a :class:`ConfigError` saying why.

    The built-in scorers and the ``style`` baseline are reserved, and a name must parse back as one
    :class:`ScorerRef` (``curves --scorers`` splits at ``,`` and ``@``).
    """
    if name in RESERVED_SCORERS:
        raise ConfigError(f"scorer name {name!r} is reserved ({', '.join(RESERVED_SCORERS)}); choose another --name")
    if not _SCORER_NAME.fullmatch(name):
        raise ConfigError(f"scorer name {name!r}: use letters, digits, '.', '_' and '-' (starting with a letter or "
                          "digit), so that --scorers can name it")
    return name


def check_utility(pool: pd.DataFrame, column: str) -> None:
    """A utility column: one of :data:`UTILITIES`, or another numeric column with every value in [0, 1].

    Raises:
        DataError: For a missing column, a pool or score column, or values outside [0, 1] (or missing).
    """
    if column not in pool.columns:
        raise DataError(f"pool has no utility column {column!r}; run `ttpkit label` first (utilities: {', '.join(UTILITIES)})")
    if column in POOL_COLUMNS or column in SAMPLING_COLUMNS or column.startswith((_SCORE, _STD)):
        raise DataError(f"--utility {column!r} is a pool or score column, not a utility; utilities: {', '.join(UTILITIES)} "
                        "or a column of values in [0, 1]")
    try:
        values = pool[column].to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"pool column {column!r} is not numeric") from None
    if column not in UTILITIES and len(values) and not ((values >= 0) & (values <= 1)).all():
        raise DataError(f"--utility {column!r}: a utility's values lie in [0, 1]; this column holds "
                        f"{np.nanmin(values):g} to {np.nanmax(values):g} (or missing values)")


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
            if not (math.isfinite(tau) and tau > 0):
                raise ConfigError(f"selection rule {text!r}: the temperature must be > 0 and finite")
            return cls(name, tau=tau)
        if name in ("lcb", "ucb"):
            try:
                kappa = float(arg) if arg else 1.0
            except ValueError:
                raise ConfigError(f"selection rule {text!r}: kappa must be a number") from None
            if not (math.isfinite(kappa) and kappa >= 0):
                raise ConfigError(f"selection rule {text!r}: kappa must be >= 0 and finite")
            return cls(name, kappa)
        raise ConfigError(f"unknown selection rule {text!r}; known rules: {', '.join(RULES)}")


@dataclass(frozen=True)
class ScorerRef:
    """A scorer name parsed: ``oracle``, ``random``, or ``<name>[@<rule>]`` over ``score_<name>`` (and ``std_<name>``).

    Attributes:
        name: ``oracle``, ``random`` or the suffix of a ``score_`` column.
        rule: The selection rule text (``"lcb:1"``), or ``None`` for the plain score.
    """

    name: str
    rule: str | None = None

    @classmethod
    def parse(cls, text: str) -> ScorerRef:
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
    def parse_list(cls, text: str) -> list[ScorerRef]:
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
_warned_mixed: set[tuple[str, ...]] = set()


def greedy_mask(pool: pd.DataFrame) -> np.ndarray:
    """(rows,) bool: which rows are greedy decodes (none in a pool without the ``greedy`` column)."""
    if GREEDY not in pool.columns:
        return np.zeros(len(pool), dtype=bool)
    return pool[GREEDY].fillna(False).to_numpy(dtype=bool)


def sampled(pool: pd.DataFrame) -> pd.DataFrame:
    """The pool's sampled candidates: every row but the greedy decodes (the pool itself when it has none).

    Best-of-N draws N of these M exchangeable samples; the greedy row is the baseline it is compared with.
    """
    mask = greedy_mask(pool)
    if not mask.any():
        return pool
    out = pool[~mask].reset_index(drop=True)
    out.attrs = pool.attrs
    return out


def greedy_rows(pool: pd.DataFrame) -> pd.DataFrame:
    """The greedy decode of each query that has one, one row per query (first if repeated), in pool order."""
    rows = pool[greedy_mask(pool)]
    return rows.drop_duplicates(QUERY_ID, keep="first").reset_index(drop=True)


def candidates_per_query(pool: pd.DataFrame) -> int:
    """M: sampled candidates per query (the smallest query's count; uneven counts are logged as a warning).

    Greedy rows (:func:`greedy_rows`) are not counted: M is what best-of-N draws from.

    A query whose candidates come from more than one policy is logged as a warning too: its best-of-N
    mixes two policies' samples into one curve (sample each policy into its own pool).

    Raises:
        DataError: If the pool has no rows.
    """
    pool = sampled(pool)
    if len(pool) == 0:
        raise DataError("the pool has no candidates")
    if POLICY in pool.columns:
        per_query = pool.groupby(QUERY_ID)[POLICY].nunique()
        if (per_query > 1).any() and (key2 := tuple(sorted(map(str, pool[POLICY].unique())))) not in _warned_mixed:
            _warned_mixed.add(key2)
            log.warning("%d of %d queries hold candidates of several policies (%s); their curves mix the policies' "
                        "samples: sample each policy into its own pool", int((per_query > 1).sum()), len(per_query),
                        ", ".join(key2))
    counts = pool.groupby(QUERY_ID)[IDX].nunique()
    low, high = int(counts.min()), int(counts.max())
    if low != high and (key := (low, high, len(counts))) not in _warned_uneven:
        _warned_uneven.add(key)
        log.warning("queries have %d to %d candidates (%d of %d queries have fewer than %d); the first %d of each are used",
                    low, high, int((counts < high).sum()), len(counts), high, low)
    return low
