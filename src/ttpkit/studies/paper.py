"""The paper study (``ttpkit bench studies/paper.yaml``): data sets x policies x RM variants x rules x N.

For every data set x policy it samples and labels the train / dev / test pools,
trains each reward-model variant, scores the test pool, and diagnoses it
(best-of-N curves for every scorer and selection rule, the law), all through
:mod:`ttpkit.stages` and :func:`ttpkit.scaling.diagnose`. It writes one results
directory: ``results.csv`` and ``results.md`` (one row per data set x policy x
scorer), ``law.csv`` (law-predicted and observed value at every N), and plots
``curves_<data set>_<policy>.png`` and ``law_<data set>.png``. Every artefact is
cached under ``<out>/cache`` (:mod:`ttpkit.studies._cache`), and sampling itself
resumes mid-pool.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ttpkit import jsonio, stages
from ttpkit.data import Dataset, bundled_sample_dir, load_split
from ttpkit.engine import Engine
from ttpkit.errors import ConfigError
from ttpkit.manifest import record_study
from ttpkit.paths import writing
from ttpkit.policy import PolicySpec, lazy_policy
from ttpkit.pool import Rule, read_pool, score_col, write_pool
from ttpkit.report import plot_curves, plot_law_scatter, study_markdown
from ttpkit.reward import VARIANTS, RMConfig
from ttpkit.reward.encoder import check_layers
from ttpkit.scaling import Diagnosis, diagnose
from ttpkit.studies._cache import cache_key, cached_rm
from ttpkit.studies._measure import against_greedy_columns
from ttpkit.studies.config import as_list, build, check_names, load_yaml, mapping

__all__ = ["DatasetSpec", "SplitSpec", "StudyConfig", "quick_study", "run_paper"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitSpec:
    """Which queries of a split to pool and how many candidates each.

    Attributes:
        split: Split name.
        m: Candidates per query (``n`` is accepted in YAML as its old name).
        offset: Skip the first ``offset`` queries.
        limit: Keep at most ``limit`` queries after the offset.
    """

    split: str
    m: int = 8
    offset: int = 0
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.m < 1 or self.offset < 0 or (self.limit is not None and self.limit < 1):
            raise ConfigError(f"m must be >= 1, offset >= 0 and limit >= 1; got m={self.m}, offset={self.offset}, limit={self.limit}")

    def key(self) -> dict[str, Any]:
        """The pool's cache key (its names predate ``m``: caches made before the rename stay valid)."""
        return {"split": self.split, "n": self.m, "offset": self.offset, "limit": self.limit}


@dataclass(frozen=True)
class DatasetSpec:
    """A data set and the pools taken from it (``dev`` optional: RMs then hold out users of train)."""

    name: str
    path: str
    train: SplitSpec
    test: SplitSpec
    dev: SplitSpec | None = None


@dataclass(frozen=True)
class StudyConfig:
    """A study: data sets x policies x RM variants x selection rules x N."""

    name: str
    datasets: tuple[DatasetSpec, ...]
    policies: tuple[PolicySpec, ...]
    variants: tuple[str, ...] = ("global-mse", "user-mse", "user-pairwise", "user-prob")
    rules: tuple[str, ...] = ("mean", "lcb:1", "ucb:1", "thompson")
    ns: tuple[int, ...] = (1, 2, 4, 8, 16)
    m_fit: int = 4
    seed: int = 0
    encoder_layers: int | None = None  # MiniLM layers behind the RMs' embedding features (None: all 6)

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder_layers", check_layers(self.encoder_layers))
        if not self.datasets or not self.policies:
            raise ConfigError("needs at least one entry in 'datasets' and in 'policies'")
        check_names([self.name], "name")
        check_names([d.name for d in self.datasets], "datasets[].name")
        check_names([p.name for p in self.policies], "policies[].name")
        for v in self.variants:
            if v not in VARIANTS:
                raise ConfigError(f"variants: unknown RM variant {v!r}; known variants: {', '.join(VARIANTS)}")
        for r in self.rules:
            try:
                Rule.parse(r)
            except ConfigError as e:
                raise ConfigError(f"rules: {e}") from None
        if not self.ns or min(self.ns) < 1:
            raise ConfigError(f"ns: N values must be positive integers, got {list(self.ns)}")
        for i, d in enumerate(self.datasets):
            if max(self.ns) > d.test.m:
                raise ConfigError(f"ns: N={max(self.ns)} is larger than datasets[{i}].test.m={d.test.m}")
            if not 2 <= self.m_fit <= d.test.m:
                raise ConfigError(f"m_fit: must be in [2, {d.test.m}] (datasets[{i}].test.m), got {self.m_fit}")

    @property
    def scorers(self) -> list[str]:
        """The scorers every cell reports: baselines, each variant, the oracle, then each probabilistic variant under each rule."""
        prob = [v for v in self.variants if RMConfig(variant=v).probabilistic]
        return ["random", "style", *self.variants, "oracle", *[f"{v}@{r}" for v in prob for r in self.rules if r != "mean"]]

    def check_models(self) -> None:
        """Check every data directory, policy model file and server setting, without loading anything."""
        for i, d in enumerate(self.datasets):
            if not Path(d.path).is_dir():
                raise ConfigError(f"study datasets[{i}].path: {d.path}: data directory does not exist")
        for i, pol in enumerate(self.policies):
            try:
                pol.check()
            except ConfigError as e:
                raise ConfigError(f"study policies[{i}] ({pol.name}): {e}") from None
        for i, d in enumerate(self.datasets):  # last: a warning, once every check has passed
            if _overlap(d.train, d.test):
                log.warning("study datasets[%d] (%s): train and test take the same queries of split %r; the RMs are "
                            "then measured on their own training queries", i, d.name, d.test.split)

    @classmethod
    def from_dict(cls, raw: Any, base: Path | None = None) -> StudyConfig:
        """Build from a parsed YAML mapping; unknown keys and wrong types are errors naming the key path.

        Relative data paths are resolved against ``base``.
        """
        raw = dict(mapping(raw, "top level"))
        raw.pop("kind", None)
        datasets = [_dataset(d, f"datasets[{i}]", base) for i, d in enumerate(as_list(raw.pop("datasets", []), "datasets"))]
        policies = [build(PolicySpec, p, f"policies[{i}]") for i, p in enumerate(as_list(raw.pop("policies", []), "policies"))]
        for key in ("variants", "rules", "ns"):
            if key in raw:
                raw[key] = tuple(as_list(raw[key], key))
        cfg = build(cls, {**raw, "datasets": tuple(datasets), "policies": tuple(policies)}, "top level")
        if "rules" in raw and set(cfg.rules) - {"mean"} and not any(v == "user-prob" for v in cfg.variants):
            raise ConfigError(f"study rules: {', '.join(r for r in cfg.rules if r != 'mean')} rank by a predicted "
                              "variance, which only the user-prob variant has; add user-prob to variants or drop the rules")
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> StudyConfig:
        """Load a study YAML file."""
        return load_yaml(cls, path)


def _overlap(a: SplitSpec, b: SplitSpec) -> bool:
    """Whether two pools share queries: the same split and overlapping [offset, offset + limit) ranges."""
    inf = float("inf")
    return a.split == b.split and a.offset < (b.offset + (b.limit or inf)) and b.offset < (a.offset + (a.limit or inf))


def _dataset(obj: Any, where: str, base: Path | None) -> DatasetSpec:
    d = dict(mapping(obj, where))
    for key in ("train", "test", "dev"):
        if d.get(key) is not None:
            split = dict(mapping(d[key], f"{where}.{key}"))
            if "n" in split and "m" not in split:  # the old name of m
                split["m"] = split.pop("n")
            d[key] = build(SplitSpec, split, f"{where}.{key}")
    p = Path(str(d.get("path", "")))
    if base is not None and not p.is_absolute():
        d["path"] = str((base / p).resolve())
    return build(DatasetSpec, d, where)


def quick_study() -> StudyConfig:
    """The CI smoke study: bundled sample, users 1-4 for training, users 5-8 for testing, M=4."""
    return StudyConfig(
        name="quick",
        datasets=(
            DatasetSpec(
                "sample", str(bundled_sample_dir()), train=SplitSpec("dev", m=4, limit=8), test=SplitSpec("dev", m=4, offset=8)
            ),
        ),
        policies=(PolicySpec.from_options("embedded"),),
        variants=("user-mse", "user-prob"),
        rules=("mean", "lcb:1"),
        ns=(1, 2, 4),
        m_fit=2,
    )


# -- running ------------------------------------------------------------------------------


def _policy_key(pol: PolicySpec) -> dict[str, Any]:
    """The policy's part of a pool's cache key (``base_url`` only when set, ``device`` only off the CPU, ``dtype``
    resolved and only off the device's default, ``greedy`` only when on, as the pool manifest records it: older caches stay valid)."""
    key = dataclasses.asdict(pol)
    if not key.get("greedy"):
        key.pop("greedy", None)
    if key["base_url"] is None:
        del key["base_url"]
    if key["device"] == "cpu":
        del key["device"]
    del key["dtype"]
    if (dtype := pol.manifest_dtype()) is not None:
        key["dtype"] = dtype
    return key


@dataclass
class _Cell:
    """One data set x policy of a study while it runs."""

    config: StudyConfig
    spec: DatasetSpec
    pol: PolicySpec
    out: Path
    encoder: Any
    progress: Any
    engine: Engine | None = None  # where sampling and scoring run (None: here)

    def pool(self, split: SplitSpec, policy: Any) -> tuple[Path, Dataset]:
        """Sample (resuming) and label one pool; returns its path and its split's data."""
        path = self.out / "cache" / f"pool-{cache_key(self.spec.path, split.key(), _policy_key(self.pol), self.config.seed)}.parquet"
        data = load_split(self.spec.path, split.split)
        queries = list(data.queries[split.offset :])[: split.limit]
        stages.sample_pool(queries, path, split.m, policy, self.progress, label=f"{self.spec.name}/{split.split} {self.pol.name}",
                           manifest=stages.sampling_manifest(self.pol, data, split.m, self.config.seed), engine=self.engine,
                           start_over=f"delete {path} to sample it again, or give the study another --out")
        stages.label_pool(path, data, overwrite=False)
        return path, data

    def pools(self) -> dict[str, tuple[Path, Dataset]]:
        """The cell's train, dev (if any) and test pools, sampled with one policy loaded at most once."""
        policy = lazy_policy(self.pol, load_split(self.spec.path, self.spec.train.split).task, self.config.seed,
                             on_load=self.progress.note)
        splits = {"train": self.spec.train, "dev": self.spec.dev, "test": self.spec.test}
        return {k: self.pool(s, policy) for k, s in splits.items() if s is not None}

    def scored(self, pools: dict[str, tuple[Path, Dataset]]) -> pd.DataFrame:
        """Train (or load) each RM variant on the train pool and score the test pool; cached."""
        cfg = self.config
        layers = [cfg.encoder_layers] if cfg.encoder_layers else []  # in the hashes only when set: old caches stay valid
        (train_p, train_d), (test_p, test_d) = pools["train"], pools["test"]
        dev_p, dev_d = pools.get("dev", (None, None))
        dev_name = dev_p and dev_p.name
        cache = self.out / "cache"
        scored_path = cache / f"scored-{cache_key(test_p.name, train_p.name, dev_name, cfg.variants, cfg.seed, *layers)}.parquet"
        scored = read_pool(scored_path if scored_path.exists() else test_p)
        train, dev = read_pool(train_p), (read_pool(dev_p) if dev_p else None)
        for variant in cfg.variants:
            if score_col(variant) in scored.columns:
                continue
            rm_dir = cache / f"rm-{cache_key(train_p.name, dev_name, variant, cfg.seed, *layers)}"
            rm_cfg = RMConfig(variant=variant, seed=cfg.seed, encoder_layers=cfg.encoder_layers)
            rm = cached_rm(rm_dir, lambda: stages.train_rm(rm_cfg, train, train_d, dev, dev_d, encoder=self.encoder, out=rm_dir))
            scored = stages.score_pool(scored, rm, test_d, encoder=self.encoder, engine=self.engine, progress=self.progress)
            write_pool(scored, scored_path)
        return scored

    def results(self, scored: pd.DataFrame) -> tuple[list[dict], list[dict]]:
        """Diagnose the scored test pool: one results row per scorer, and the law's points."""
        cfg = self.config
        diag = diagnose(scored, cfg.scorers, m_fit=cfg.m_fit, max_n=max(cfg.ns), seed=cfg.seed, ns=cfg.ns)
        plot_curves({n: d.observed for n, d in diag.scorers.items()}, self.out / f"curves_{self.spec.name}_{self.pol.name}.png",
                    diag.utility, title=f"{self.spec.name}, {self.pol.name}")
        rows, points = _result_rows(diag, {"dataset": self.spec.name, "policy": self.pol.name}, cfg.ns)
        return against_greedy_columns(rows, scored, list(diag.scorers), max(cfg.ns), cfg.seed), points


def _result_rows(diag: Diagnosis, where: dict[str, str], ns: tuple[int, ...]) -> tuple[list[dict], list[dict]]:
    """One results row per scorer of a diagnosis, and the tail form's predicted point beside every observed one."""
    rows, points = [], []
    for name, d in diag.scorers.items():
        pred = d.fit.predict(ns, "tail")
        points += [{**where, "scorer": name, "n": n, "observed": float(o), "predicted": float(e)}
                   for n, o, e in zip(d.observed.ns, d.observed.mean, pred)]
        q = d.fit
        rows.append({**where, "scorer": name, **{f"N={n}": v for n, v in zip(d.observed.ns, d.observed.mean)},
                     "frac_oracle_gain": diag.frac_oracle_gain(name), "corr": d.corr, "law_mu": q.mu, "law_c": q.c,
                     "law_sigma": q.sigma, "law_rho": q.rho, "law_rho_eff": q.rho_eff,
                     "law_max_err_frac": d.max_error["tail"], "queries": d.observed.n_queries})
    return rows, points


def _write_results(config: StudyConfig, out: Path, rows: list[dict], points: list[dict]) -> pd.DataFrame:
    with writing(out, "study results", "the study's cache is kept; make room and rerun to write them"):
        return _write_files(config, out, rows, points)


def _write_files(config: StudyConfig, out: Path, rows: list[dict], points: list[dict]) -> pd.DataFrame:
    law = pd.DataFrame(points)
    law.to_csv(out / "law.csv", index=False)
    for name, part in law.groupby("dataset", sort=False):
        plot_law_scatter(part, out / f"law_{name}.png", "rougeL", title=f"{name}: law (tail form, fit on {config.m_fit}) vs observed")
    table = pd.DataFrame(rows)
    table.to_csv(out / "results.csv", index=False)
    (out / "results.md").write_text(study_markdown(table), encoding="utf-8")
    return table


def run_paper(config: StudyConfig, out: str | Path, progress: stages.Progress | None = None,
              engine: Engine | None = None) -> pd.DataFrame:
    """Run (or resume) a paper study and write its results directory.

    Args:
        config: The study.
        out: Results directory; ``out/cache`` holds the reusable artefacts.
        progress: Where to report progress (default: nowhere).
        engine: Where sampling and scoring run (default: here; :class:`ttpkit.engine.Engine`).

    Returns:
        The combined results table (also written as CSV and Markdown).
    """
    config.check_models()  # a missing model fails now, not an hour into the study
    progress = progress or stages.NullProgress()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    with writing(out, "study folder"):
        (out / "cache").mkdir(parents=True, exist_ok=True)
    jsonio.write_json(dataclasses.asdict(config), out / "config.json")
    record_study(out, {"study": dataclasses.asdict(config)})
    encoder = stages.default_encoder(layers=config.encoder_layers)
    rows, points = [], []
    for spec in config.datasets:
        for pol in config.policies:
            cell = _Cell(config, spec, pol, out, encoder, progress, engine)
            progress.note(f"{spec.name} / {pol.name}: pools")
            pools = cell.pools()  # the policy is freed when this returns (RSS stays ~ one model)
            progress.note(f"{spec.name} / {pol.name}: reward models {', '.join(config.variants)}")
            cell_rows, cell_points = cell.results(cell.scored(pools))
            rows += cell_rows
            points += cell_points
    return _write_results(config, out, rows, points)
