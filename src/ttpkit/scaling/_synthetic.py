"""Synthetic candidate pools whose best-of-N curve is known: the checks of the law's forms.

Each query q has its own mean and spread of utility and its own score scale and
offset (random effects); within it, a candidate's latent quality x is standard
normal and its utility is u = mu_q + s_q v with v depending on x by the
population's kind:

=============  ==============================================================
``plain``      v = rho x + sqrt(1 - rho^2) e: bivariate normal, the law's own case
``hack<P>``    a share P% of candidates score at a separated level (x ≈ 4) with
               v = -2: reward hacking that best-of-N finds as N grows
``falling``    the tail correlation falls with the score: v bends down above x = 1
``plateau``    v = rho min(x, 1) + noise: more score stops buying utility
``collapsed``  a third of the users score every candidate the same (plain otherwise)
=============  ==============================================================

:func:`synthetic_pool` draws M candidates per query; :func:`true_curve` is the
population curve, from the same queries with many more fresh candidates, which
the forecasts are scored against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ttpkit.errors import ConfigError
from ttpkit.pool import IDX, QUERY_ID, ROUGEL, TEXT, USER_ID, score_col

__all__ = ["KINDS", "synthetic_pool", "true_curve"]

KINDS = ("plain", "hack1", "hack2", "hack5", "falling", "plateau", "collapsed")
RHO = 0.5
HACK_LEVEL = 4.0


def _draw(kind: str, q: int, m: int, rng: np.random.Generator, effects: dict) -> tuple[np.ndarray, np.ndarray]:
    """(Q, M) scores and utilities of one population."""
    x, e = rng.standard_normal((q, m)), rng.standard_normal((q, m))
    noise = np.sqrt(1 - RHO**2) * e
    v = RHO * x + noise
    if kind.startswith("hack"):
        hacked = rng.random((q, m)) < float(kind[4:]) / 100
        x = np.where(hacked, HACK_LEVEL + 0.3 * rng.standard_normal((q, m)), x)
        v = np.where(hacked, -2.0, v)
    elif kind == "falling":
        v = np.where(x > 1, RHO - 0.5 * (x - 1), RHO * x) + noise
    elif kind == "plateau":
        v = RHO * np.minimum(x, 1.0) + noise
    u = effects["mu"] + effects["s"] * v
    r = effects["offset"] + effects["scale"] * x
    if kind == "collapsed":
        r = np.where(effects["collapsed"], effects["offset"], r)
    return r, u


def _effects(kind: str, q: int, seed: int) -> dict:
    rng = np.random.default_rng([seed, 7])
    return {"mu": rng.uniform(0.1, 0.4, (q, 1)), "s": rng.uniform(0.05, 0.15, (q, 1)),
            "scale": rng.uniform(0.7, 1.4, (q, 1)), "offset": rng.uniform(-1, 1, (q, 1)),
            "collapsed": (rng.random((q, 1)) < 1 / 3) if kind == "collapsed" else np.zeros((q, 1), bool)}


def synthetic_pool(kind: str, queries: int = 400, m: int = 64, seed: int = 0) -> pd.DataFrame:
    """A labelled pool of one synthetic population, scored by ``score_rm`` (one user per query).

    Raises:
        ConfigError: For an unknown kind (the message lists :data:`KINDS`).
    """
    if kind not in KINDS:
        raise ConfigError(f"unknown synthetic population {kind!r}; known: {', '.join(KINDS)}")
    r, u = _draw(kind, queries, m, np.random.default_rng([seed, 1]), _effects(kind, queries, seed))
    ids = np.repeat([f"q{i}" for i in range(queries)], m)
    idx = np.tile(np.arange(m), queries)
    return pd.DataFrame({QUERY_ID: ids, USER_ID: np.char.replace(ids, "q", "u"), IDX: idx,
                         TEXT: [f"candidate {i}" for i in idx], ROUGEL: u.ravel(), score_col("rm"): r.ravel()})


def true_curve(kind: str, ns: Sequence[int], queries: int = 400, seed: int = 0, m: int = 1024) -> np.ndarray:
    """The population's best-of-N curve on the queries of :func:`synthetic_pool` (same seed), from ``m`` fresh candidates each."""
    from ttpkit.scaling._bon import best_of_n

    if max(ns) > m:
        raise ConfigError(f"true_curve: N={max(ns)} exceeds the {m} fresh candidates")
    r, u = _draw(kind, queries, m, np.random.default_rng([seed, 2]), _effects(kind, queries, seed))
    return best_of_n(r, u, ns).mean(0)
