"""``stacked``: one small ranker over the signals a draw of N candidates has at serving time.

Best-of-N picks one of the N candidates drawn for a query, so a scorer needs
only to rank them. The stacked scorer ranks them by a weighted sum of
signals, each standardized *within the draw* (z-scores over the N), so that no
signal's per-query scale matters:

======== =================================================================
signal   what it is
======== =================================================================
rm       a reward model's score (a ``score_<name>`` column, say the bundled ``user-prob``)
logp     the candidate's log-probability under the untempered policy (pool column ``logp``)
logp_tok the same per generated token
mbr      within-draw consensus: mean ROUGE-L F1 against the other N-1 drawn candidates
length   words in the candidate
greedy   1 for the greedy decode (not standardized): a prior for the answer the user would get anyway
implicit the ``implicit-tok`` score (:mod:`ttpkit.reward.implicit`), where the pool has it
======== =================================================================

MBR is within the draw because only the N drawn candidates exist when a
query is answered; the score of a candidate therefore depends on the draw, and
its best-of-N curve is estimated by Monte Carlo over draws
(:func:`ttpkit.scaling.draw_versus_greedy`).

The weights are a ridge regression of the within-query centred utility on the
standardized signals, fitted on labelled pools (every query's full set of
candidates as one draw). The model is a handful of numbers, saved as JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ttpkit.errors import ConfigError, DataError
from ttpkit.pool import GREEDY, LOGP, N_TOKENS, QUERY_ID, TEXT, greedy_mask, score_col
from ttpkit.reward.mbr import mbr_matrix

__all__ = ["SIGNALS", "StackedScorer", "base_signals", "draw_signals", "query_draws"]

SIGNALS = ("rm", "logp", "logp_tok", "mbr", "length", "greedy", "implicit")
_BASE = ("rm", "logp", "logp_tok", "length", "greedy", "implicit")  # per candidate; mbr comes from the draw
IMPLICIT = "implicit-tok"  # the score column of the implicit signal
FORMAT = "ttpkit-stacked/1"


def base_signals(rows: pd.DataFrame, rm: str | None) -> np.ndarray:
    """(R, 6) per-candidate signals in :data:`_BASE` order: rm score, logp, logp per token, words, greedy flag, implicit.

    Missing signals (no RM column named, a backend without ``logp``, no ``score_implicit-tok``) are zeros.
    """
    r = len(rows)
    out = np.zeros((r, len(_BASE)))
    if rm is not None:
        if score_col(rm) not in rows.columns:
            raise DataError(f"stacked: the pool has no column {score_col(rm)!r} (score it with that RM first)")
        out[:, 0] = rows[score_col(rm)].to_numpy(dtype=float)
    if LOGP in rows.columns:
        logp = rows[LOGP].to_numpy(dtype=float)
        n = rows[N_TOKENS].to_numpy(dtype=float).clip(min=1) if N_TOKENS in rows.columns else np.ones(r)
        out[:, 1], out[:, 2] = np.nan_to_num(logp), np.nan_to_num(logp / n)
    out[:, 3] = [len(str(t).split()) for t in rows[TEXT].fillna("")]
    out[:, 4] = greedy_mask(rows) if GREEDY in rows.columns else 0.0
    if score_col(IMPLICIT) in rows.columns:
        out[:, 5] = np.nan_to_num(rows[score_col(IMPLICIT)].to_numpy(dtype=float))
    return out


def _z(x: np.ndarray) -> np.ndarray:
    sd = x.std(0)
    return np.where(sd > 0, (x - x.mean(0)) / np.where(sd > 0, sd, 1.0), 0.0)


def draw_signals(base: np.ndarray, sim: np.ndarray) -> np.ndarray:
    """(k, 7) signals of one draw of k candidates in :data:`SIGNALS` order, standardized within the draw.

    Args:
        base: (k, 6) :func:`base_signals` rows of the drawn candidates.
        sim: (k, k) their pairwise ROUGE-L F1 (:func:`ttpkit.reward.mbr.mbr_matrix`).
    """
    k = len(base)
    mbr = (sim.sum(1) - np.diag(sim)) / max(k - 1, 1)
    z = _z(np.column_stack([base[:, :4], mbr, base[:, 5]]))  # rm, logp, logp_tok, length, mbr, implicit
    return np.column_stack([z[:, 0], z[:, 1], z[:, 2], z[:, 4], z[:, 3], base[:, 4], z[:, 5]])


def query_draws(pool: pd.DataFrame, rm: str | None) -> dict[str, tuple[pd.DataFrame, np.ndarray, np.ndarray]]:
    """Per query: its rows (samples, then its greedy row if any), their base signals and their similarity matrix."""
    out = {}
    for qid, rows in pool.groupby(QUERY_ID, sort=False):
        rows = rows.iloc[np.argsort(greedy_mask(rows), kind="stable")]  # samples first, greedy last
        out[qid] = (rows, base_signals(rows, rm), mbr_matrix(rows[TEXT].fillna("").astype(str).tolist()))
    return out


@dataclass
class StackedScorer:
    """A ridge ranker over within-draw standardized signals.

    Attributes:
        rm: The score column (without ``score_``) of the ``rm`` signal, or None.
        signals: Which :data:`SIGNALS` it uses (the others get weight 0).
        alpha: Ridge penalty.
        weights_: (7,) fitted weights in :data:`SIGNALS` order.
    """

    rm: str | None = None
    signals: tuple[str, ...] = SIGNALS
    alpha: float = 1.0
    weights_: np.ndarray | None = field(default=None, repr=False)
    probabilistic = False

    def __post_init__(self) -> None:
        unknown = [s for s in self.signals if s not in SIGNALS]
        if unknown or not self.signals:
            raise ConfigError(f"stacked: unknown signals {unknown}; signals: {', '.join(SIGNALS)}")
        if "rm" in self.signals and self.rm is None:
            raise ConfigError("stacked: the rm signal needs the name of a score column (rm=...)")
        if not self.alpha >= 0:
            raise ConfigError(f"stacked: alpha must be >= 0, got {self.alpha}")

    @property
    def name(self) -> str:
        """Column suffix."""
        return "stacked"

    def _mask(self) -> np.ndarray:
        return np.array([s in self.signals for s in SIGNALS], dtype=float)

    def fit(self, pools: Sequence[pd.DataFrame], utility: str = "rougeL") -> StackedScorer:
        """Fit the weights on labelled pools: each query's candidates (greedy row included) as one draw."""
        xs, ys = [], []
        for pool in pools:
            for rows, base, sim in query_draws(pool, self.rm if "rm" in self.signals else None).values():
                if len(rows) < 2:
                    continue
                u = rows[utility].to_numpy(dtype=float)
                xs.append(draw_signals(base, sim) * self._mask())
                ys.append(u - u.mean())
        if not xs:
            raise DataError("stacked: no query with two or more candidates to fit on")
        x, y = np.vstack(xs), np.concatenate(ys)
        self.weights_ = np.linalg.solve(x.T @ x + self.alpha * np.eye(x.shape[1]), x.T @ y) * self._mask()
        return self

    def score_draw(self, base: np.ndarray, sim: np.ndarray) -> np.ndarray:
        """(k,) scores of one draw's candidates (higher is better)."""
        if self.weights_ is None:
            raise ConfigError("stacked: fit it (or load a fitted one) before scoring")
        return draw_signals(base, sim) @ self.weights_

    def save(self, path: str | Path) -> None:
        """Write ``stacked.json`` (format, settings, weights) into the directory ``path``."""
        from ttpkit.paths import write_atomic

        if self.weights_ is None:
            raise ConfigError("stacked: nothing to save before fit")
        d = Path(path)
        d.mkdir(parents=True, exist_ok=True)
        body = {"format": FORMAT, "rm": self.rm, "signals": list(self.signals), "alpha": self.alpha,
                "weights": {s: float(w) for s, w in zip(SIGNALS, self.weights_)}}
        write_atomic(d / "stacked.json", lambda tmp: Path(tmp).write_text(json.dumps(body, indent=1) + "\n"), "stacked scorer")

    @classmethod
    def load(cls, path: str | Path) -> StackedScorer:
        """Read a directory written by :meth:`save`."""
        f = Path(path) / "stacked.json"
        try:
            body = json.loads(f.read_text())
            if body.get("format") != FORMAT:
                raise DataError(f"{f}: not a {FORMAT} file (format {body.get('format')!r})")
            model = cls(rm=body["rm"], signals=tuple(body["signals"]), alpha=float(body["alpha"]))
            model.weights_ = np.array([float(body["weights"][s]) for s in SIGNALS])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"{f}: not a readable stacked scorer ({type(e).__name__}: {e})") from None
        return model
