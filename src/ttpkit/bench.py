"""``ttpkit bench``: the whole study from one YAML file, resumable.

For every data set x policy it samples and labels the train / dev / test pools,
trains each reward-model variant, scores the test pool, and diagnoses it
(best-of-N curves for every scorer and selection rule, the law), all through
:mod:`ttpkit.stages` and :func:`ttpkit.scaling.diagnose`. It writes one results
directory: ``results.csv`` and ``results.md`` (one row per data set x policy x
scorer), ``law.csv`` (law-predicted and observed value at every N), and plots
``curves_<data set>_<policy>.png`` and ``law_<data set>.png``. Each stage caches
its artefact under ``<out>/cache`` by a hash of its inputs, so a rerun skips
finished work, and sampling itself resumes mid-pool.

A study file is checked completely when it loads (keys, types, variants, rules,
backends, N against pool sizes), and its models before any work starts, so a
bad setting fails in a second with its key path, not an hour in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttpkit.errors import ConfigError
from ttpkit.manifest import record_study
from ttpkit.policy import PolicySpec
from ttpkit.pool import Rule

__all__ = ["DatasetSpec", "PolicySpec", "SplitSpec", "StudyConfig", "quick_study", "run_study"]

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
        from ttpkit.reward.features import check_layers
        from ttpkit.reward.models import VARIANTS

        object.__setattr__(self, "encoder_layers", check_layers(self.encoder_layers))
        if not self.datasets or not self.policies:
            raise ConfigError("needs at least one entry in 'datasets' and in 'policies'")
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
        from ttpkit.reward.models import RMConfig

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

    @classmethod
    def from_dict(cls, raw: Any, base: Path | None = None) -> StudyConfig:
        """Build from a parsed YAML mapping; unknown keys and wrong types are errors naming the key path.

        Relative data paths are resolved against ``base``.
        """
        raw = dict(_mapping(raw, "top level"))
        datasets = [_dataset(d, f"datasets[{i}]", base) for i, d in enumerate(_list(raw.pop("datasets", []), "datasets"))]
        policies = [_build(PolicySpec, p, f"policies[{i}]") for i, p in enumerate(_list(raw.pop("policies", []), "policies"))]
        for key in ("variants", "rules", "ns"):
            if key in raw:
                raw[key] = tuple(_list(raw[key], key))
        cfg = _build(cls, {**raw, "datasets": tuple(datasets), "policies": tuple(policies)}, "top level")
        if "rules" in raw and set(cfg.rules) - {"mean"} and not any(v == "user-prob" for v in cfg.variants):
            raise ConfigError(f"study rules: {', '.join(r for r in cfg.rules if r != 'mean')} rank by a predicted "
                              "variance, which only the user-prob variant has; add user-prob to variants or drop the rules")
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path) -> StudyConfig:
        """Load a study YAML file (``yaml.safe_load``)."""
        import yaml

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: study file not found")
        try:
            raw = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        try:
            return cls.from_dict(raw, base=p.parent)
        except ConfigError as e:
            raise ConfigError(f"{p}: {e}") from None


# -- loading helpers ------------------------------------------------------------------------


def _mapping(obj: Any, where: str) -> dict:
    if not isinstance(obj, dict):
        raise ConfigError(f"study {where}: expected a mapping, got {type(obj).__name__}")
    return obj


def _list(obj: Any, where: str) -> list:
    if not isinstance(obj, list):
        raise ConfigError(f"study {where}: expected a list, got {type(obj).__name__}")
    return obj


def _type_ok(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a field's annotation (scalars, optionals, tuples; nested dataclasses are built already)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, a) for a in args)
    if origin is tuple:
        return isinstance(value, tuple) and all(_type_ok(v, args[0]) for v in value)
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def _build(kind: type, obj: Any, where: str) -> Any:
    """``kind(**obj)`` after checking keys and types; every error names the key path."""
    obj = _mapping(obj, where)
    hints = typing.get_type_hints(kind)
    extra = set(obj) - set(hints)
    if extra:
        raise ConfigError(f"study {where}: unknown keys {sorted(extra)}; allowed: {sorted(hints)}")
    for key, value in obj.items():
        if not _type_ok(value, hints[key]):
            want = getattr(hints[key], "__name__", str(hints[key]))
            raise ConfigError(f"study {where}.{key}: {value!r} is not a valid {want}")
    try:
        return kind(**obj)
    except TypeError as e:
        raise ConfigError(f"study {where}: {e}") from None
    except ConfigError as e:
        raise ConfigError(f"study {where}: {e}") from None


def _dataset(obj: Any, where: str, base: Path | None) -> DatasetSpec:
    d = dict(_mapping(obj, where))
    for key in ("train", "test", "dev"):
        if d.get(key) is not None:
            split = dict(_mapping(d[key], f"{where}.{key}"))
            if "n" in split and "m" not in split:  # the old name of m
                split["m"] = split.pop("n")
            d[key] = _build(SplitSpec, split, f"{where}.{key}")
    p = Path(str(d.get("path", "")))
    if base is not None and not p.is_absolute():
        d["path"] = str((base / p).resolve())
    return _build(DatasetSpec, d, where)


def quick_study() -> StudyConfig:
    """The CI smoke study: bundled sample, users 1-4 for training, users 5-8 for testing, M=4."""
    from ttpkit.data import bundled_sample_dir

    return StudyConfig(
        name="quick",
        datasets=(
            DatasetSpec(
                "sample", str(bundled_sample_dir()), train=SplitSpec("dev", m=4, limit=8), test=SplitSpec("dev", m=4, offset=8)
            ),
        ),
        policies=(PolicySpec("gemma3-270m"),),
        variants=("user-mse", "user-prob"),
        rules=("mean", "lcb:1"),
        ns=(1, 2, 4),
        m_fit=2,
    )


# -- running ------------------------------------------------------------------------------


def _hash(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o) else str(o))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _policy_key(pol: PolicySpec) -> dict[str, Any]:
    """The policy's part of a pool's cache key (``base_url`` only when set: older caches stay valid)."""
    key = dataclasses.asdict(pol)
    if key["base_url"] is None:
        del key["base_url"]
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

    def pool(self, split: Any, policy: Any) -> tuple[Path, Any]:
        """Sample (resuming) and label one pool; returns its path and its split's data."""
        from ttpkit import stages
        from ttpkit.data import load_split

        path = self.out / "cache" / f"pool-{_hash(self.spec.path, split.key(), _policy_key(self.pol), self.config.seed)}.parquet"
        data = load_split(self.spec.path, split.split)
        queries = list(data.queries[split.offset :])[: split.limit]
        stages.sample_pool(queries, path, split.m, policy, self.progress, label=f"{self.spec.name}/{split.split} {self.pol.name}",
                           manifest=stages.sampling_manifest(self.pol, data, split.m, self.config.seed))
        stages.label_pool(path, data, overwrite=False)
        return path, data


def _score_variants(cell: _Cell, pools: dict[str, tuple[Path, Any]]) -> Any:
    """Train (or load) each RM variant on the cell's train pool and score its test pool; cached."""
    from ttpkit import stages
    from ttpkit.pool import read_pool, score_col, write_pool
    from ttpkit.reward.models import RewardModel, RMConfig

    cfg = cell.config
    layers = [cfg.encoder_layers] if cfg.encoder_layers else []  # in the hashes only when set: old caches stay valid
    (train_p, train_d), (test_p, test_d) = pools["train"], pools["test"]
    dev_p, dev_d = pools.get("dev", (None, None))
    dev_name = dev_p and dev_p.name
    scored_path = cell.out / "cache" / f"scored-{_hash(test_p.name, train_p.name, dev_name, cfg.variants, cfg.seed, *layers)}.parquet"
    scored = read_pool(scored_path if scored_path.exists() else test_p)
    train, dev = read_pool(train_p), (read_pool(dev_p) if dev_p else None)
    for variant in cfg.variants:
        if score_col(variant) in scored.columns:
            continue
        rm_dir = cell.out / "cache" / f"rm-{_hash(train_p.name, dev_name, variant, cfg.seed, *layers)}"
        if (rm_dir / "model.safetensors").exists():
            rm = RewardModel.load(rm_dir)
        else:
            rm_cfg = RMConfig(variant=variant, seed=cfg.seed, encoder_layers=cfg.encoder_layers)
            rm = stages.train_rm(rm_cfg, train, train_d, dev, dev_d, encoder=cell.encoder, out=rm_dir)
        scored = stages.score_pool(scored, rm, test_d, encoder=cell.encoder)
        write_pool(scored, scored_path)
    return scored


def _cell_results(cell: _Cell, scored: Any) -> tuple[list[dict], list[dict]]:
    """Diagnose the scored test pool: one results row per scorer, and the law's points."""
    from ttpkit.report import plot_curves
    from ttpkit.scaling import diagnose

    cfg, where = cell.config, {"dataset": cell.spec.name, "policy": cell.pol.name}
    diag = diagnose(scored, cfg.scorers, m_fit=cfg.m_fit, n_max=max(cfg.ns), seed=cfg.seed, ns=cfg.ns)
    rows, points = [], []
    for name, d in diag.scorers.items():
        pred = d.fit.predict(cfg.ns, "tail")
        points += [{**where, "scorer": name, "n": n, "observed": float(o), "predicted": float(e)}
                   for n, o, e in zip(d.observed.ns, d.observed.mean, pred)]
        q = d.fit
        rows.append({**where, "scorer": name, **{f"N={n}": v for n, v in zip(d.observed.ns, d.observed.mean)},
                     "frac_oracle_gain": diag.frac_oracle_gain(name), "corr": d.corr, "law_mu": q.mu, "law_c": q.c,
                     "law_sigma": q.sigma, "law_rho": q.rho, "law_rho_eff": q.rho_eff,
                     "law_max_err_frac": d.max_error["tail"], "queries": d.observed.n_queries})
    plot_curves({n: d.observed for n, d in diag.scorers.items()}, cell.out / f"curves_{cell.spec.name}_{cell.pol.name}.png",
                diag.utility, title=f"{cell.spec.name}, {cell.pol.name}")
    return rows, points


def _write_results(config: StudyConfig, out: Path, rows: list[dict], points: list[dict]) -> Any:
    import pandas as pd

    from ttpkit.report import plot_law_scatter, study_markdown

    law = pd.DataFrame(points)
    law.to_csv(out / "law.csv", index=False)
    for name, part in law.groupby("dataset", sort=False):
        plot_law_scatter(part, out / f"law_{name}.png", "rougeL", title=f"{name}: law (tail form, fit on {config.m_fit}) vs observed")
    table = pd.DataFrame(rows)
    table.to_csv(out / "results.csv", index=False)
    (out / "results.md").write_text(study_markdown(table))
    return table


def run_study(config: StudyConfig, out: str | Path, progress: Any = None) -> Any:
    """Run (or resume) a study and write its results directory.

    Args:
        config: The study.
        out: Results directory; ``out/cache`` holds the reusable artefacts.
        progress: A :class:`ttpkit.stages.Progress` (default: reports nothing).

    Returns:
        The combined results table (a DataFrame, also written as CSV and Markdown).
    """
    from ttpkit import stages
    from ttpkit.data import load_split
    from ttpkit.policy import lazy_policy

    config.check_models()  # a missing model fails now, not an hour into the study
    progress = progress or stages.NullProgress()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{out}: exists and is not a directory")
    (out / "cache").mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    record_study(out, {"study": dataclasses.asdict(config)})
    encoder = stages.default_encoder(layers=config.encoder_layers)
    rows, points = [], []
    for spec in config.datasets:
        for pol in config.policies:
            cell = _Cell(config, spec, pol, out, encoder, progress)
            progress.note(f"{spec.name} / {pol.name}: pools")
            policy = lazy_policy(pol, load_split(spec.path, spec.train.split).task, config.seed, on_load=progress.note)
            splits = {"train": spec.train, "dev": spec.dev, "test": spec.test}
            pools = {k: cell.pool(s, policy) for k, s in splits.items() if s is not None}
            del policy  # free this setting's model before the next one loads (RSS stays ~ one model)
            progress.note(f"{spec.name} / {pol.name}: reward models {', '.join(config.variants)}")
            cell_rows, cell_points = _cell_results(cell, _score_variants(cell, pools))
            rows += cell_rows
            points += cell_points
    return _write_results(config, out, rows, points)
