"""Failure regimes: where reward models stop paying as N grows, and which fix helps (``ttpkit bench`` with ``kind: failures``).

A regime is a test pool plus the conditions it is scored under: which pools the
reward models were trained on (another task, another policy, fewer queries),
how many candidates per query (large N), how much of the user's profile the
scorers may see (cold start). Every regime is scored by the same methods:

| method                  | what it is                                                     |
|-------------------------|----------------------------------------------------------------|
| ``user-pairwise``       | the deterministic RM every fix is compared with               |
| ``user-mse``            | another deterministic RM on the same features                 |
| ``global-mse``          | a deterministic RM without the user's profile features        |
| ``user-prob``           | the probabilistic RM; ``@lcb:κ``, ``@ucb:κ`` (κ tuned on dev)  |
| ``ens5``                | 5 seeds of ``user-pairwise``: mean, ``@lcb:λ`` (tuned), ``ens5-min`` (worst case) |
| ``user-pairwise@soft:τ``| soft best-of-N (τ tuned on dev)                                |
| ``mbr``                 | pool-consensus minimum Bayes risk, no training                 |
| ``reg``                 | z(user-pairwise) + β·z(mbr), regularized best-of-N (β tuned)  |
| ``backoff``             | ``user-pairwise``, with ``mbr`` for users it looks collapsed for |
| ``cross``, ``cross-prob``| all-MiniLM-L6-v2 fine-tuned as a cross-encoder (pairwise / Gaussian NLL head); ``cross-prob@lcb:κ`` |
| ``backoff+cap``         | ``backoff``, and N capped (cap tuned) on queries where ``user-pairwise`` runs against ``mbr`` |

Every setting (κ, λ, τ, β) is chosen on the regime's dev pool under ordinary
conditions, never on test. Outputs: ``regimes.csv`` (curves, share of the oracle
gain, collapse and hacking per regime x method), ``paired.csv`` (each fix
against ``user-pairwise``: difference in the share of the oracle gain at the
largest N, paired bootstrap 95% CI over queries), ``calibration.csv`` (the
ensemble's and the judge's scores are first mapped to utility units by an affine
fit on dev),
``tuning.json``, ``examples.json``, ``law_forms.csv``/``law_forms.md`` (every
law form fitted on M_fit = 4 and 8 candidates against every observed curve, and
the peaks: :func:`ttpkit.scaling.law_table`), and per regime a plot of the curves
and one of the law forms.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ttpkit.errors import ConfigError
from ttpkit.manifest import record_study
from ttpkit.paths import check_writable
from ttpkit.pool import QUERY_ID, ROUGEL, TEXT, USER_ID, n_grid, read_pool, score_col, std_col

__all__ = ["FailureStudy", "PoolRef", "RegimeSpec", "run_failures"]

log = logging.getLogger(__name__)

DET = "user-pairwise"  # the deterministic RM the fixes are measured against
KAPPAS, TAUS, BETAS = (0.5, 1.0, 2.0), (0.03, 0.1, 0.3, 1.0), (0.25, 0.5, 1.0, 2.0)
FIXES = ("user-prob", "user-prob@lcb", "user-prob@ucb", "ens5", "ens5@lcb", "ens5-min", "soft", "reg", "backoff", "backoff+cap", "mbr",
         "cross", "cross-prob", "cross-prob@lcb")
LAW_M_FIT = (4, 8)  # candidates per query the law forms are fitted on (those the pools allow)
LAW_PLOT = ("style", "mbr", DET, "user-prob", "ens5", "reg")  # the methods whose law fits are plotted per regime
CAPS = (1, 2, 4)  # the N a query that looks hacked may use (chosen on dev)


@dataclass(frozen=True)
class PoolRef:
    """A labelled pool file and the data split its queries come from (paths resolved against the study file)."""

    path: str  # the Parquet pool
    data: str  # the LaMP-layout data directory
    split: str  # the split of ``data`` holding the pool's queries


@dataclass(frozen=True)
class RegimeSpec:
    """One regime: RMs trained on ``train`` (early stopping and tuning on ``dev``), scoring ``test``.

    Attributes:
        name: Regime name.
        train, dev, test: Names of entries of the study's ``pools``.
        profile_items: Cold start: the scorers see only the user's last k profile items.
        judge: Also score with the study's LLM judge (``judge``, ``judge-prob``).
        cross: Also score with the cross-encoders (``cross``, ``cross-prob``; minutes per pool on CPU).
    """

    name: str
    train: str
    dev: str
    test: str
    profile_items: int | None = None
    judge: bool = False
    cross: bool = False


@dataclass(frozen=True)
class FailureStudy:
    """A failures study: named pools and the regimes built from them."""

    name: str
    pools: dict[str, PoolRef]
    regimes: tuple[RegimeSpec, ...]
    seed: int = 0
    ensemble: int = 5
    judge: dict | None = None  # {backend, model} of the LLM judge (see ttpkit.reward.judge)
    cross_epochs: int = 1  # cross-encoder fine-tuning epochs; 0 leaves the cross-encoder out

    @classmethod
    def from_dict(cls, raw: dict, base: Path) -> FailureStudy:
        """Build from parsed YAML; pool and data paths are relative to ``base``.

        Raises:
            ConfigError: Naming the key path of a missing, unknown or mistyped entry.
        """
        if not isinstance(raw, dict):
            raise ConfigError(f"study: expected a mapping at the top level, got {type(raw).__name__}")
        try:
            return cls._from_dict(raw, base)
        except (TypeError, AttributeError, KeyError, ValueError) as e:
            if isinstance(e, ConfigError):
                raise
            raise ConfigError(f"study: malformed entry ({type(e).__name__}: {e}); see studies/failures.yaml for the layout") from None

    @classmethod
    def _from_dict(cls, raw: dict, base: Path) -> FailureStudy:
        raw = dict(raw)
        raw.pop("kind", None)
        data = {k: str((base / v).resolve()) for k, v in dict(raw.pop("data", {})).items()}
        pools = {}
        for name, p in dict(raw.pop("pools", {})).items():
            if p.get("data") not in data:
                raise ConfigError(f"study pools.{name}.data: {p.get('data')!r} is not one of data: {sorted(data)}")
            pools[name] = PoolRef(str((base / p["path"]).resolve()), data[p["data"]], p["split"])
        regimes = []
        for i, r in enumerate(raw.pop("regimes", [])):
            try:
                spec = RegimeSpec(**r)
            except TypeError as e:
                raise ConfigError(f"study regimes[{i}]: {e}") from None
            for key in ("train", "dev", "test"):
                if getattr(spec, key) not in pools:
                    raise ConfigError(f"study regimes[{i}].{key}: {getattr(spec, key)!r} is not one of pools: {sorted(pools)}")
            regimes.append(spec)
        if raw.get("judge") is not None:
            from ttpkit.policy import PolicySpec

            try:
                PolicySpec(name="judge", **raw["judge"]).check()
            except (TypeError, ConfigError) as e:
                raise ConfigError(f"study judge: {e}") from None
        try:
            return cls(pools=pools, regimes=tuple(regimes), **raw)
        except TypeError as e:
            raise ConfigError(f"study top level: {e}") from None


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _data(ref: PoolRef, profile_items: int | None = None) -> Any:
    """The pool's split, with profiles cut to the last ``profile_items`` items for a cold start."""
    from ttpkit.data import load_split

    ds = load_split(ref.data, ref.split)
    if profile_items is None:
        return ds
    cut = tuple(dataclasses.replace(q, profile=q.profile[len(q.profile) - profile_items :] if profile_items else ())
                for q in ds.queries)
    return dataclasses.replace(ds, queries=cut)


class _Models:
    """The RMs of one (train, dev) pair, trained once and cached under ``out/cache``."""

    def __init__(self, study: FailureStudy, spec: RegimeSpec, out: Path, encoder: Any) -> None:
        self.study, self.spec, self.out, self.encoder = study, spec, out, encoder
        self.train_ref, self.dev_ref = study.pools[spec.train], study.pools[spec.dev]
        self._loaded: dict[tuple, Any] = {}  # dev and test are scored by the same models: load each once

    def _once(self, key: tuple, load: Any) -> Any:
        if key not in self._loaded:
            self._loaded[key] = load()
        return self._loaded[key]

    def cross(self, head: str) -> Any:
        """The cross-encoder with ``head`` trained on the train pool (cached)."""
        return self._once(("cross", head), lambda: self._cross(head))

    def _cross(self, head: str) -> Any:
        from ttpkit.reward.cross import CrossConfig, CrossEncoderRM

        cfg = CrossConfig(head=head, epochs=self.study.cross_epochs, seed=self.study.seed)
        d = self.out / "cache" / f"cross-{_key(self.train_ref, cfg)}"
        if (d / "model.safetensors").exists():
            return CrossEncoderRM.load(d)
        rm = CrossEncoderRM(cfg).fit(read_pool(self.train_ref.path, require=[ROUGEL]), _data(self.train_ref).by_id())
        rm.save(d)
        return rm

    def get(self, variant: str, ensemble: bool = False) -> Any:
        """The RM (or ensemble) of ``variant`` trained on the train pool (cached on disk and in memory)."""
        return self._once((variant, ensemble), lambda: self._get(variant, ensemble))

    def _get(self, variant: str, ensemble: bool) -> Any:
        from ttpkit import stages
        from ttpkit.reward.ensemble import EnsembleRM
        from ttpkit.reward.models import RewardModel, RMConfig

        d = self.out / "cache" / f"rm-{_key(self.train_ref, self.dev_ref, variant, ensemble, self.study.seed)}"
        if ensemble:
            if (d / "ensemble.json").exists():
                return EnsembleRM.load(d)
        elif (d / "model.safetensors").exists():
            return RewardModel.load(d)
        train, dev = read_pool(self.train_ref.path, require=[ROUGEL]), read_pool(self.dev_ref.path, require=[ROUGEL])
        cfg = RMConfig(variant=variant, seed=self.study.seed, long_form=_data(self.train_ref).task.multiline)
        if ensemble:
            rm = EnsembleRM(cfg, k=self.study.ensemble).fit(train, _data(self.train_ref).by_id(), dev,
                                                             _data(self.dev_ref).by_id(), encoder=self.encoder)
            rm.save(d)
            return rm
        return stages.train_rm(cfg, train, _data(self.train_ref), dev, _data(self.dev_ref), encoder=self.encoder, out=d)


def _z(x: np.ndarray) -> np.ndarray:
    sd = float(np.std(x))
    return (x - np.mean(x)) / sd if sd > 0 else np.zeros_like(x)


def _score_all(pool: pd.DataFrame, models: _Models, data: Any, beta: float | None, cross: bool) -> pd.DataFrame:
    """Every method's columns on one pool (``beta``: the MBR weight of ``reg``; None leaves ``reg`` out)."""
    from ttpkit import stages
    from ttpkit.reward.mbr import mbr_scores
    from ttpkit.reward.style import style_scores
    from ttpkit.scaling import backoff_scores

    for variant in ("global-mse", "user-mse", DET, "user-prob"):
        pool = stages.score_pool(pool, models.get(variant), data, encoder=models.encoder)
    ens = models.get(DET, ensemble=True)
    s = ens.score(pool, data.by_id(), encoder=models.encoder)
    pool[score_col("ens5")], pool[std_col("ens5")], pool[score_col("ens5-min")] = s.mean, s.std, s.members.min(0)
    if cross:
        for head in ("pairwise", "prob"):
            pool = stages.score_pool(pool, models.cross(head), data)
    pool[score_col("style")] = style_scores(pool, data.by_id())
    pool[score_col("mbr")] = mbr_scores(pool)
    det = pool[score_col(DET)].to_numpy()
    if beta is not None:
        pool[score_col("reg")] = _z(det) + beta * _z(pool[score_col("mbr")].to_numpy())
    pool[score_col("backoff")], backed = backoff_scores(pool, DET, pool[score_col("mbr")].to_numpy())
    pool["backed_off"] = backed
    return pool


def _scored(out: Path, models: _Models, ref: PoolRef, profile_items: int | None, beta: float | None) -> pd.DataFrame:
    """:func:`_score_all` of one pool, cached under ``out/cache`` by everything it depends on."""
    from ttpkit.pool import write_pool

    cross = models.spec.cross and models.study.cross_epochs > 0
    parts = (ref, models.train_ref, models.dev_ref, profile_items, beta, models.study.seed, models.study.ensemble)
    path = out / "cache" / f"scored-{_key(*parts, models.study.cross_epochs if cross else 0)}.parquet"
    if path.exists():
        pool = read_pool(path)
        if score_col("global-mse") not in pool.columns:  # a cache from before global-mse was a method
            from ttpkit import stages

            pool = stages.score_pool(pool, models.get("global-mse"), _data(ref, profile_items), encoder=models.encoder)
            write_pool(pool, path)
        return pool
    pool = _score_all(read_pool(ref.path, require=[ROUGEL]), models, _data(ref, profile_items), beta, cross)
    write_pool(pool, path)
    return pool


class _JudgeModel:
    """The study's judge model, loaded on first use and shared by every pool it rates."""

    def __init__(self, spec: dict | None) -> None:
        self.spec, self.policy = spec, None

    def get(self, task: Any) -> Any:
        from ttpkit.policy import PolicySpec
        from ttpkit.policy.local import LocalPolicy

        if self.policy is None:
            self.policy = PolicySpec(name="judge", **(self.spec or {})).build(task)  # the task only labels prompts
            if not isinstance(self.policy, LocalPolicy):
                raise ConfigError("the judge needs a local backend (embedded, gguf or hf)")
        return self.policy


def _judged(out: Path, study: FailureStudy, ref: PoolRef, profile_items: int | None, progress: Any,
            model: _JudgeModel) -> pd.DataFrame:
    """The judge's columns for one pool (``score_judge``, ``score_judge-prob``, ``std_judge-prob``), cached."""
    from ttpkit.reward.judge import JudgeRM

    path = out / "cache" / f"judged-{_key(ref, profile_items, study.judge)}.parquet"
    if path.exists():
        return pd.read_parquet(path)
    data = _data(ref, profile_items)
    pool = read_pool(ref.path)
    policy = model.get(data.task)
    judge = JudgeRM(policy.model, policy.tokenizer, data.task)
    progress.start(f"judging {ref.split} ({pool[QUERY_ID].nunique()} queries)", pool[QUERY_ID].nunique())
    s, argmax = judge.score(pool, data.by_id(), progress)
    cols = pd.DataFrame({score_col("judge"): argmax, score_col("judge-prob"): s.mean, std_col("judge-prob"): s.std}, index=pool.index)
    cols.to_parquet(path)
    return cols


def _tune(dev: pd.DataFrame) -> dict[str, float]:
    """κ, λ, τ and β that maximize best-of-M on the dev pool (ties: the first of each grid)."""
    from ttpkit.scaling import curves

    m = int(dev.groupby(QUERY_ID).size().min())
    best = lambda name: curves(dev, [name], ROUGEL, [m], n_boot=2)[name].mean[0]  # noqa: E731
    pick = lambda names: max(names, key=best)  # noqa: E731
    kappa = float(pick([f"user-prob@lcb:{k}" for k in KAPPAS] + [f"user-prob@ucb:{k}" for k in KAPPAS]).split(":")[1])
    lam = float(pick([f"ens5@lcb:{k}" for k in KAPPAS]).split(":")[1])
    tau = float(pick([f"{DET}@soft:{t}" for t in TAUS]).split(":")[1])
    det, mbr = _z(dev[score_col(DET)].to_numpy()), _z(dev[score_col("mbr")].to_numpy())
    scores = {b: _best_of(dev, det + b * mbr, m) for b in BETAS}
    cap = max(CAPS, key=lambda c: _capped(dev, [m], c, "backoff").per_query[:, -1].mean())
    tuned = {"kappa": kappa, "lambda": lam, "tau": tau, "beta": max(BETAS, key=lambda b: scores[b]), "cap": cap}
    if score_col("cross-prob") in dev.columns:
        tuned["kappa_cross"] = float(pick([f"cross-prob@lcb:{k}" for k in KAPPAS]).split(":")[1])
    return tuned


def _capped(pool: pd.DataFrame, ns: tuple[int, ...] | list[int], cap: int, scorer: str, seed: int = 0) -> Any:
    """The curve of ``scorer`` with N capped at ``cap`` on the queries where user-pairwise runs against mbr."""
    from ttpkit.scaling import Curve, bootstrap_ci, capped_curve, hack_suspects, per_query_curve

    grid = sorted(set(ns) | {cap})
    qids, pq = per_query_curve(pool, scorer, ROUGEL, grid, seed)
    suspects = hack_suspects(pool, pool[score_col(DET)].to_numpy(), pool[score_col("mbr")].to_numpy())
    pq = capped_curve(qids, pq, grid, {q: cap for q in suspects})[:, [grid.index(n) for n in ns]]
    lo, hi = bootstrap_ci(pq, seed=seed)
    return Curve(f"{scorer}+cap", tuple(ns), tuple(pq.mean(0)), tuple(lo), tuple(hi), pq.shape[0], pq)


def _best_of(pool: pd.DataFrame, values: np.ndarray, m: int) -> float:
    """Best-of-m of arbitrary per-row scores on a labelled pool."""
    from ttpkit.scaling import curves

    return curves(pool.assign(score_tmp=values), ["tmp"], ROUGEL, [m], n_boot=2)["tmp"].mean[0]


def _scorers(t: dict[str, float]) -> dict[str, str]:
    """Method label -> scorer name under the tuned settings."""
    cross = {"cross": "cross", "cross-prob": "cross-prob", "cross-prob@lcb": f"cross-prob@lcb:{t['kappa_cross']:g}"} if "kappa_cross" in t else {}
    return {"random": "random", "style": "style", "mbr": "mbr", "global-mse": "global-mse", "user-mse": "user-mse", DET: DET,
            "user-prob": "user-prob", "user-prob@lcb": f"user-prob@lcb:{t['kappa']:g}",
            "user-prob@ucb": f"user-prob@ucb:{t['kappa']:g}", "ens5": "ens5", "ens5@lcb": f"ens5@lcb:{t['lambda']:g}",
            "ens5-min": "ens5-min", "soft": f"{DET}@soft:{t['tau']:g}", "reg": "reg", "backoff": "backoff", **cross, "oracle": "oracle"}


def _paired(base: np.ndarray, fix: np.ndarray, oracle: np.ndarray, seed: int, n_boot: int = 2000) -> tuple[float, float, float]:
    """Share-of-oracle-gain difference (fix - base) at the largest N, with a paired bootstrap 95% CI over queries."""
    rng = np.random.default_rng(seed)
    q = len(oracle)

    def share(pq: np.ndarray, idx: np.ndarray) -> float:
        gain = oracle[idx, -1].mean() - oracle[idx, 0].mean()
        return (pq[idx, -1].mean() - pq[idx, 0].mean()) / gain if gain > 0 else np.nan

    full = np.arange(q)
    diffs = [share(fix, i) - share(base, i) for i in (rng.integers(0, q, q) for _ in range(n_boot))]
    lo, hi = np.nanquantile(diffs, [0.025, 0.975])
    return float(share(fix, full) - share(base, full)), float(lo), float(hi)


UNITLESS = ("ens5", "judge-prob")  # scores not in utility units: mapped by an affine fit on dev before calibration


def _to_utility(dev: pd.DataFrame, name: str) -> tuple[float, float]:
    """Least-squares ``utility ≈ a + slope * score`` on the dev pool (σ then scales by ``|slope|``)."""
    x, y = dev[score_col(name)].to_numpy(float), dev[ROUGEL].to_numpy(float)
    slope, a = np.polyfit(x, y, 1) if np.ptp(x) > 0 else (0.0, float(y.mean()))
    return float(a), float(slope)


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else float("nan")


def _regime(study: FailureStudy, spec: RegimeSpec, out: Path, encoder: Any, progress: Any, judge: _JudgeModel) -> dict[str, Any]:
    """Score one regime's dev and test pools with every method and measure them."""
    from ttpkit.reward.calibration import calibration
    from ttpkit.scaling import curves, failure_measures, law_table

    models = _Models(study, spec, out, encoder)
    progress.note(f"{spec.name}: tuning on {spec.dev}")
    dev_ref, test_ref = study.pools[spec.dev], study.pools[spec.test]
    dev = _scored(out, models, dev_ref, None, None)
    tuned = _tune(dev)
    progress.note(f"{spec.name}: scoring {spec.test} ({tuned})")
    test = _scored(out, models, test_ref, spec.profile_items, tuned["beta"])
    ns = n_grid(int(test.groupby(QUERY_ID).size().min()))
    names = _scorers(tuned)
    res = curves(test, list(names.values()), ROUGEL, ns, seed=study.seed)
    names["backoff+cap"] = f"backoff+cap:{tuned['cap']}"
    res[names["backoff+cap"]] = _capped(test, ns, tuned["cap"], "backoff", study.seed)
    oracle = res["oracle"]
    gain = oracle.mean[-1] - oracle.mean[0]
    if spec.judge and study.judge:
        progress.note(f"{spec.name}: LLM judge")
        dev = dev.join(_judged(out, study, dev_ref, None, progress, judge))
        test = test.join(_judged(out, study, test_ref, spec.profile_items, progress, judge))
        m_dev = int(dev.groupby(QUERY_ID).size().min())
        lcb = lambda k: _best_of(dev, dev[score_col("judge-prob")] - k * dev[std_col("judge-prob")], m_dev)  # noqa: E731
        tuned["kappa_judge"] = float(max(KAPPAS, key=lcb))
        names = {**names, "judge": "judge", "judge-prob": "judge-prob", "judge-prob@lcb": f"judge-prob@lcb:{tuned['kappa_judge']:g}"}
        res = {**res, **curves(test, ["judge", "judge-prob", names["judge-prob@lcb"]], ROUGEL, ns, seed=study.seed)}
    rows, paired = [], []
    for label, scorer in names.items():
        c = res[scorer]
        rows.append({"regime": spec.name, "method": label, "scorer": scorer, **{f"N={n}": v for n, v in zip(ns, c.mean)},
                     "share": (c.mean[-1] - c.mean[0]) / gain if gain > 0 else np.nan,
                     "ci_half": (c.hi[-1] - c.lo[-1]) / 2, "monotone": bool(np.all(np.diff(c.mean) >= -1e-9)),
                     "peak_n": int(ns[int(np.argmax(np.asarray(c.mean) >= max(c.mean) - 1e-9))]), "queries": c.n_queries,
                     **failure_measures(test, "backoff" if label == "backoff+cap" else scorer, ROUGEL, seed=study.seed)})
        base = "judge" if label.startswith("judge-prob") else DET if label in FIXES else None
        if base is not None:
            d, lo, hi = _paired(res[names[base]].per_query, c.per_query, oracle.per_query, study.seed)
            paired.append({"regime": spec.name, "method": label, "base": base, "diff": d, "lo": lo, "hi": hi})
    cal = []
    loss = oracle.per_query[:, -1] - res[DET].per_query[:, -1]  # what user-pairwise leaves on the table, per query
    for name in ("user-prob", "ens5", "cross-prob", "judge-prob"):
        if std_col(name) not in test.columns:
            continue
        a, slope = _to_utility(dev, name) if name in UNITLESS else (0.0, 1.0)
        c = calibration(a + slope * test[score_col(name)], abs(slope) * test[std_col(name)], test[ROUGEL])
        q_std = test.groupby(QUERY_ID, sort=False)[std_col(name)].mean().reindex(list(res[DET].query_ids)).to_numpy()
        cal.append({"regime": spec.name, "model": name, **c.as_dict(), "failure_spearman": _spearman(q_std, loss),
                    "bins_std": list(c.bins_std), "bins_rmse": list(c.bins_rmse)})
    progress.note(f"{spec.name}: law forms")
    by_scorer = {v: k for k, v in names.items() if k != "backoff+cap"}
    law, diags = law_table(test, list(by_scorer), ROUGEL, [f for f in LAW_M_FIT if f <= max(ns)] or [max(ns)], ns, study.seed)
    law.insert(0, "method", law["scorer"].map(by_scorer))
    law.insert(0, "regime", spec.name)
    return {"rows": rows, "paired": paired, "calibration": cal, "tuned": tuned, "test": test, "curves": res,
            "law": law, "law_diagnosis": diags[max(diags)],
            "examples": _examples(test, spec.name, {q.id: q.reference for q in _data(test_ref).queries})}


def _examples(test: pd.DataFrame, regime: str, references: dict[str, str | None], k: int = 3) -> list[dict]:
    """The queries where the deterministic RM's top pick is furthest below the best candidate."""
    rows = []
    for qid, d in test.groupby(QUERY_ID, sort=False):
        top, best = d.loc[d[score_col(DET)].idxmax()], d.loc[d[ROUGEL].idxmax()]
        rows.append({"regime": regime, "query_id": qid, "user_id": top[USER_ID], "loss": float(best[ROUGEL] - top[ROUGEL]),
                     "top_scored": top[TEXT], "top_score": float(top[score_col(DET)]), "top_utility": float(top[ROUGEL]),
                     "best": best[TEXT], "best_score": float(best[score_col(DET)]), "best_utility": float(best[ROUGEL]),
                     "reference": references.get(qid)})
    return sorted(rows, key=lambda r: -r["loss"])[:k]


def run_failures(study: FailureStudy, out: str | Path, progress: Any = None, encoder: Any = None) -> pd.DataFrame:
    """Run every regime and write the results directory (see the module docstring); returns ``regimes.csv``'s table.

    Args:
        study: The study.
        out: Results directory (``out/cache`` holds RMs and scored pools).
        progress: A :class:`ttpkit.stages.Progress`.
        encoder: Sentence encoder (default: :func:`ttpkit.stages.default_encoder`).
    """
    from ttpkit import stages
    from ttpkit.report import law_forms_markdown, plot_curves, plot_law_grid

    progress = progress or stages.NullProgress()
    out = check_writable(out, "results", directory=True)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    missing = sorted({p for ref in study.pools.values() for p in (ref.path, ref.data) if not Path(p).exists()})
    if missing:
        raise ConfigError(f"study: {len(missing)} pool or data path(s) do not exist, first {missing[0]}")
    record_study(out, {"study": dataclasses.asdict(study)})
    encoder = encoder or stages.default_encoder()
    judge = _JudgeModel(study.judge)
    rows, paired, cal, tuned, examples, law = [], [], [], {}, [], []
    for spec in study.regimes:
        r = _regime(study, spec, out, encoder, progress, judge)
        rows += r["rows"]
        paired += r["paired"]
        cal += r["calibration"]
        examples += r["examples"]
        tuned[spec.name] = r["tuned"]
        keep = ("random", "mbr", DET, "user-prob", "ens5", "ens5-min", "soft", "reg", "backoff", "oracle")
        names = _scorers(r["tuned"])
        plot_curves({k: r["curves"][names[k]] for k in keep}, out / f"curves_{spec.name}.png", ROUGEL, title=spec.name)
        law.append(r["law"])
        plot_law_grid(r["law_diagnosis"], [names[k] for k in LAW_PLOT if names.get(k) in r["law_diagnosis"].scorers],
                      out / f"law_{spec.name}.png", title=f"{spec.name}: observed vs every law form (M_fit={r['law_diagnosis'].m_fit})")
    table = pd.DataFrame(rows)
    table.to_csv(out / "regimes.csv", index=False)
    law_forms = pd.concat(law, ignore_index=True)
    law_forms.to_csv(out / "law_forms.csv", index=False)
    (out / "law_forms.md").write_text(law_forms_markdown(law_forms))
    pd.DataFrame(paired).to_csv(out / "paired.csv", index=False)
    cal_table = pd.DataFrame(cal)
    cal_table.drop(columns=["bins_std", "bins_rmse"]).to_csv(out / "calibration.csv", index=False)
    (out / "calibration.json").write_text(json.dumps(cal, indent=1) + "\n")
    from ttpkit.report import plot_reliability

    plot_reliability(cal, out / "reliability.png")
    (out / "tuning.json").write_text(json.dumps(tuned, indent=2) + "\n")
    (out / "examples.json").write_text(json.dumps(examples, indent=1, ensure_ascii=False) + "\n")
    return table
