"""``ttpkit bench``: the whole study from one YAML file, resumable.

For every data set x policy it samples and labels the train / dev / test pools,
trains each reward-model variant, scores the test pool, computes best-of-N
curves for every scorer and selection rule, fits the law, and writes one results
directory: ``results.csv`` and ``results.md`` (one row per data set x policy x
scorer), ``law.csv`` (law-predicted and observed value at every N), and plots
``curves_<data set>_<policy>.png`` and ``law_<data set>.png``. Each stage caches its
artefact under ``<out>/cache`` by a hash of its inputs, so a rerun skips
finished work, and sampling itself resumes mid-pool.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ttpkit.errors import ConfigError, TtpkitError

__all__ = ["DatasetSpec", "PolicySpec", "SplitSpec", "StudyConfig", "quick_study", "run_study"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitSpec:
    """Which queries of a split to pool and how many candidates each.

    Attributes:
        split: Split name.
        n: Candidates per query.
        offset: Skip the first ``offset`` queries.
        limit: Keep at most ``limit`` queries after the offset.
    """

    split: str
    n: int = 8
    offset: int = 0
    limit: int | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """A data set and the pools taken from it (``dev`` optional: RMs then hold out users of train)."""

    name: str
    path: str
    train: SplitSpec
    test: SplitSpec
    dev: SplitSpec | None = None


@dataclass(frozen=True)
class PolicySpec:
    """A policy setting: backend and decoding (see :class:`ttpkit.policy.SamplingConfig`)."""

    name: str
    backend: str = "embedded"
    model: str | None = None
    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 32
    k: int = 4
    int8: bool = False


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

        object.__setattr__(self, "encoder_layers", check_layers(self.encoder_layers))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], base: Path | None = None) -> StudyConfig:
        """Build from a parsed YAML mapping; unknown keys are errors. Relative paths are resolved against ``base``."""

        def build(kind: type, obj: Any, where: str) -> Any:
            if not isinstance(obj, dict):
                raise TtpkitError(f"study {where}: expected a mapping, got {type(obj).__name__}")
            names = {f.name for f in dataclasses.fields(kind)}
            extra = set(obj) - names
            if extra:
                raise TtpkitError(f"study {where}: unknown keys {sorted(extra)}; allowed: {sorted(names)}")
            try:
                return kind(**obj)
            except (TypeError, ConfigError) as e:
                raise TtpkitError(f"study {where}: {e}") from None

        raw = dict(raw)
        datasets = []
        for i, d in enumerate(raw.pop("datasets", [])):
            d = dict(d)
            for key in ("train", "test", "dev"):
                if d.get(key) is not None:
                    d[key] = build(SplitSpec, d[key], f"datasets[{i}].{key}")
            p = Path(d.get("path", ""))
            if base is not None and not p.is_absolute():
                d["path"] = str((base / p).resolve())
            datasets.append(build(DatasetSpec, d, f"datasets[{i}]"))
        policies = [build(PolicySpec, p, f"policies[{i}]") for i, p in enumerate(raw.pop("policies", []))]
        if not datasets or not policies:
            raise TtpkitError("study: needs at least one entry in 'datasets' and in 'policies'")
        for key in ("variants", "rules", "ns"):
            if key in raw:
                raw[key] = tuple(raw[key])
        return build(cls, {**raw, "datasets": tuple(datasets), "policies": tuple(policies)}, "top level")

    @classmethod
    def from_yaml(cls, path: str | Path) -> StudyConfig:
        """Load a study YAML file (``yaml.safe_load``)."""
        import yaml

        p = Path(path)
        if not p.exists():
            raise TtpkitError(f"{p}: study file not found")
        raw = yaml.safe_load(p.read_text())
        if not isinstance(raw, dict):
            raise TtpkitError(f"{p}: a study file is a YAML mapping")
        return cls.from_dict(raw, base=p.parent)


def quick_study() -> StudyConfig:
    """The CI smoke study: bundled sample, users 1-4 for training, users 5-8 for testing, N=4."""
    from ttpkit.data import bundled_sample_dir

    return StudyConfig(
        name="quick",
        datasets=(
            DatasetSpec(
                "sample", str(bundled_sample_dir()), train=SplitSpec("dev", n=4, limit=8), test=SplitSpec("dev", n=4, offset=8)
            ),
        ),
        policies=(PolicySpec("gemma3-270m"),),
        variants=("user-mse", "user-prob"),
        rules=("mean", "lcb:1"),
        ns=(1, 2, 4),
        m_fit=2,
    )


def _hash(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, default=lambda o: dataclasses.asdict(o) if dataclasses.is_dataclass(o) else str(o))
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class _Ctx:
    out: Path
    seed: int
    policies: dict[str, Any] = field(default_factory=dict)
    encoder: Any = None


def _pool(ctx: _Ctx, ds: DatasetSpec, spec: SplitSpec, pol: PolicySpec, progress: Any) -> Path:
    """Sample (resuming) and label one pool; returns its path."""
    from ttpkit.data import load_split
    from ttpkit.policy import SamplingConfig, make_policy
    from ttpkit.pool import fill_pool, read_pool, write_pool
    from ttpkit.reward.style import style_scores
    from ttpkit.utility import label_pool

    path = ctx.out / "cache" / f"pool-{_hash(ds.path, spec, pol, ctx.seed)}.parquet"
    data = load_split(ds.path, spec.split)
    queries = list(data.queries[spec.offset :])[: spec.limit]
    key = _hash(pol, data.task.name)

    def build() -> Any:  # one policy object per setting, loaded only when a pool needs sampling
        if key not in ctx.policies:
            cfg = SamplingConfig(pol.temperature, pol.top_p, pol.max_new_tokens, ctx.seed, pol.k)
            ctx.policies[key] = make_policy(pol.backend, data.task, cfg, model=pol.model, int8=pol.int8)
        return ctx.policies[key]

    task: list[Any] = []
    label = f"{ds.name}/{spec.split} {pol.name} N={spec.n}"
    fill_pool(
        path,
        queries,
        spec.n,
        build,
        on_start=lambda left: task.append(progress.add_task(label, total=left)) if progress and left else None,
        on_query=lambda: progress.advance(task[0]) if progress else None,
    )
    df = read_pool(path)
    if "rougeL" not in df.columns:
        by_id = data.by_id()
        df = label_pool(df, by_id)
        df["score_style"] = style_scores(df, by_id)
        write_pool(df, path)
    return path


def run_study(config: StudyConfig, out: str | Path, progress: Any = None) -> Any:
    """Run (or resume) a study and write its results directory.

    Args:
        config: The study.
        out: Results directory; ``out/cache`` holds the reusable artefacts.
        progress: Optional ``rich.progress.Progress`` for progress bars.

    Returns:
        The combined results table (a DataFrame, also written as CSV and Markdown).
    """
    import pandas as pd

    from ttpkit.data import load_split
    from ttpkit.pool import read_pool, write_pool
    from ttpkit.report import plot_curves, plot_law_scatter
    from ttpkit.reward.features import Encoder
    from ttpkit.reward.models import RewardModel, RMConfig, within_query_corr
    from ttpkit.scaling import curves, fit_law

    from ttpkit.policy import resolve_model

    for pol in config.policies:  # a missing model fails now, not an hour into the study
        if pol.backend in ("gguf", "hf") and pol.model is not None and not resolve_model(pol.model).exists():
            raise TtpkitError(f"policy {pol.name}: model {pol.model} not found")
    out = Path(out)
    ctx = _Ctx(out=out, seed=config.seed)
    from ttpkit.policy.local import cache_dir

    ctx.encoder = Encoder(cache_file=cache_dir() / "embeddings" / "all-MiniLM-L6-v2.safetensors", layers=config.encoder_layers)
    layers = [config.encoder_layers] if config.encoder_layers else []  # in the RM hashes only when set: old caches stay valid
    (out / "cache").mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2) + "\n")
    rows, law_points = [], []
    say = progress.console.print if progress is not None else log.info  # stage lines survive a non-terminal log
    for ds in config.datasets:
        for pol in config.policies:
            say(f"{ds.name} / {pol.name}: pools")
            train_p = _pool(ctx, ds, ds.train, pol, progress)
            dev_p = _pool(ctx, ds, ds.dev, pol, progress) if ds.dev else None
            test_p = _pool(ctx, ds, ds.test, pol, progress)
            ctx.policies.clear()  # free this setting's model before the next one loads (RSS stays ~ one model)
            train, test = read_pool(train_p), read_pool(test_p)
            dev = read_pool(dev_p) if dev_p else None
            q_train = load_split(ds.path, ds.train.split).by_id()
            q_test = load_split(ds.path, ds.test.split).by_id()
            q_dev = load_split(ds.path, ds.dev.split).by_id() if ds.dev else None
            scored_path = out / "cache" / f"scored-{_hash(test_p.name, train_p.name, dev_p and dev_p.name, config.variants, config.seed, *layers)}.parquet"
            scored = read_pool(scored_path) if scored_path.exists() else test
            say(f"{ds.name} / {pol.name}: reward models {', '.join(config.variants)}")
            for variant in config.variants:
                if f"score_{variant}" in scored.columns:
                    continue
                rm_dir = out / "cache" / f"rm-{_hash(train_p.name, dev_p and dev_p.name, variant, config.seed, *layers)}"
                if (rm_dir / "model.safetensors").exists():
                    rm = RewardModel.load(rm_dir)
                else:
                    rm = RewardModel(RMConfig(variant=variant, seed=config.seed, encoder_layers=config.encoder_layers)).fit(
                        train, q_train, dev, q_dev, encoder=ctx.encoder
                    )
                    rm.save(rm_dir)
                s = rm.score(scored, q_test, encoder=ctx.encoder)
                scored[f"score_{variant}"] = s.mean
                if rm.config.probabilistic:
                    scored[f"std_{variant}"] = s.std
                write_pool(scored, scored_path)
            ctx.encoder.save_cache()
            scorers = ["random", "style", *config.variants, "oracle"]
            if "user-prob" in config.variants:
                scorers += [f"user-prob@{r}" for r in config.rules if r != "mean"]
            ns = [n for n in config.ns if n <= ds.test.n]
            res = curves(scored, scorers, "rougeL", ns, seed=config.seed)
            oracle = res["oracle"]
            gain = oracle.mean[-1] - oracle.mean[0]
            for name, c in res.items():
                base = name.split("@")[0]
                col = "rougeL" if name == "oracle" else (f"score_{base}" if name != "random" else None)
                corr = within_query_corr(scored[col].to_numpy(), scored["rougeL"].to_numpy(), scored["query_id"].to_numpy()) if col else 0.0
                law = fit_law(scored, name, "rougeL", m_fit=config.m_fit, seed=config.seed)
                pred = law.predict(ns, "tail")
                law_points += [
                    {"dataset": ds.name, "policy": pol.name, "scorer": name, "n": n, "observed": float(o), "predicted": float(e)}
                    for n, o, e in zip(c.ns, c.mean, pred)
                ]
                rows.append(
                    {
                        "dataset": ds.name,
                        "policy": pol.name,
                        "scorer": name,
                        **{f"N={n}": v for n, v in zip(c.ns, c.mean)},
                        "frac_oracle_gain": (c.mean[-1] - c.mean[0]) / gain if gain > 0 else float("nan"),
                        "corr": corr,
                        "law_mu": law.mu,
                        "law_c": law.c,
                        "law_sigma": law.sigma,
                        "law_rho": law.rho,
                        "law_rho_eff": law.rho_eff,
                        "law_max_err_frac": float(abs(pred - c.mean).max() / gain) if gain > 0 else float("nan"),
                        "queries": c.n_queries,
                    }
                )
            plot_curves(res, out / f"curves_{ds.name}_{pol.name}.png", "rougeL", title=f"{ds.name}, {pol.name}")
    points = pd.DataFrame(law_points)
    points.to_csv(out / "law.csv", index=False)
    for name, part in points.groupby("dataset", sort=False):
        plot_law_scatter(part, out / f"law_{name}.png", "rougeL", title=f"{name}: law (tail form, fit on {config.m_fit}) vs observed")
    table = pd.DataFrame(rows)
    table.to_csv(out / "results.csv", index=False)
    (out / "results.md").write_text(_markdown(table))
    return table


def _markdown(table: Any) -> str:
    cols = list(table.columns)
    cell = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"
