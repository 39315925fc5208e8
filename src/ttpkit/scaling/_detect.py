"""The detectors of the law's two failure modes on a labelled pool (re-exported by :mod:`ttpkit.scaling`).

- :func:`collapsed_users`: users whose scores barely vary (the spread rule of
  :func:`ttpkit.scaling.user_spread`), so selection for them is random.
- :func:`hacked_queries`: queries where the score runs against the utility
  (ρ_q below :data:`~ttpkit.scaling.HACK_THRESHOLD`), with the texts that show it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ttpkit.pool import IDX, QUERY_ID, TEXT, USER_ID, ScorerRef
from ttpkit.scaling._bon import scorer_values
from ttpkit.scaling._stats import HACK_THRESHOLD, query_stats, user_spread

__all__ = ["collapsed_users", "hacked_queries"]


def collapsed_users(pool: pd.DataFrame, scorer: str | ScorerRef, utility: str = "rougeL", tau: float = 0.05, seed: int = 0) -> pd.DataFrame:
    """Users whose score spread is at most tau times the global spread, with that spread, smallest first."""
    r = scorer_values(pool, scorer, utility, seed)
    g = user_spread(pool[USER_ID].to_numpy(), r, pool[QUERY_ID].to_numpy(), tau)
    g = g[g["collapsed"]].drop(columns="collapsed")
    return g.sort_values("score_std", kind="stable").reset_index(drop=True)


def hacked_queries(
    pool: pd.DataFrame,
    scorer: str | ScorerRef,
    utility: str = "rougeL",
    threshold: float = HACK_THRESHOLD,
    references: dict[str, str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """Queries whose score-utility correlation is below ``threshold``.

    Each row has rho_q, the top-scored candidate, the best candidate and (if
    ``references`` is given) the reference.
    """
    qs = query_stats(pool, scorer, utility, tau=0.0, seed=seed)
    r = scorer_values(pool, scorer, utility, seed)
    texts = pool.assign(_r=r).sort_values([QUERY_ID, IDX])
    rows = []
    for i in np.where(qs.rho < threshold)[0]:
        qid = qs.query_id[i]
        d = texts[texts[QUERY_ID] == qid]
        top = d.loc[d["_r"].idxmax()]
        best = d.loc[d[utility].idxmax()]
        rows.append(
            {
                QUERY_ID: qid,
                USER_ID: qs.user_id[i],
                "rho": float(qs.rho[i]),
                "top_scored": top[TEXT],
                "top_scored_utility": float(top[utility]),
                "best": best[TEXT],
                "best_utility": float(best[utility]),
                "reference": (references or {}).get(qid, ""),
            }
        )
    cols = [QUERY_ID, USER_ID, "rho", "top_scored", "top_scored_utility", "best", "best_utility", "reference"]
    return pd.DataFrame(rows, columns=cols).sort_values("rho").reset_index(drop=True)
