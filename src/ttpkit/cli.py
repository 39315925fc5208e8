"""The ``ttpkit`` command line. Heavy libraries are imported inside commands so ``--help`` is instant."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console

from ttpkit.errors import ConfigError, TtpkitError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Test-time personalization: sample N personalized candidates, score them, pick the best.",
)
console = Console(stderr=True)
out = Console()


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report ttpkit errors as one red line and exit code 2, without a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TtpkitError as e:
            console.print(f"[bold red]error:[/] {e}", soft_wrap=True, highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ["HF_HUB_OFFLINE"] = "1"
    import warnings

    warnings.filterwarnings("ignore")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


class _RichProgress:
    """:class:`ttpkit.stages.Progress` drawn as rich progress bars, with notes as lines above them."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.task: Any = None

    def start(self, label: str, total: int, done: int = 0) -> None:
        self.task = self.bar.add_task(label, total=total, completed=done)

    def advance(self, steps: int = 1) -> None:
        if self.task is not None:
            self.bar.advance(self.task, steps)

    def note(self, message: str) -> None:
        self.bar.console.print(message)  # a plain line: stage notes survive in non-terminal logs


@contextlib.contextmanager
def _progress() -> Iterator[_RichProgress]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        yield _RichProgress(bar)


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{what} must be positive integers, got {text!r}")
    return values


def _deprecated(value: Any, old: Any, old_flag: str, new_flag: str) -> Any:
    """``old`` (with a warning) if the deprecated flag was given, else ``value``."""
    if old is None:
        return value
    console.print(f"[yellow]warning:[/] {old_flag} is deprecated and will be removed; use {new_flag}", soft_wrap=True)
    return old


# options several commands share
DataDir = Annotated[Path, typer.Option("--data", help="LaMP-layout data directory.")]
TaskName = Annotated[Optional[str], typer.Option("--task", help="Task name; default from the data.")]
TaskFile = Annotated[Optional[Path], typer.Option("--task-file", help="YAML/JSON task declaration (name, source_field, target_field, source_label, target_label, instruction).")]
PoolSplit = Annotated[Optional[str], typer.Option("--split", help="Split of the pool (default: detected).")]
Seed = Annotated[int, typer.Option("--seed", help="Seed.")]
Utility = Annotated[str, typer.Option("--utility", help="Utility column: rougeL | rouge1 | rougeLsum (multi-line outputs).")]


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )


# ---------------------------------------------------------------------------------------------
# sample / label / curves
# ---------------------------------------------------------------------------------------------


@app.command()
@_friendly
def sample(
    data: DataDir,
    out_path: Annotated[Path, typer.Option("--out", help="Pool file to write (Parquet); resumed if it exists.")],
    split: Annotated[str, typer.Option(help="Split to sample.")] = "test",
    m: Annotated[int, typer.Option("--m", help="Candidates per query (M).", min=1)] = 16,
    limit: Annotated[Optional[int], typer.Option(help="Only the first Q queries (after --offset).", min=1)] = None,
    offset: Annotated[int, typer.Option(help="Skip the first queries of the split (to add a range to a pool).", min=0)] = 0,
    backend: Annotated[str, typer.Option(help="embedded | gguf | hf | openai.")] = "embedded",
    model: Annotated[Optional[str], typer.Option(help="GGUF file (gguf), model dir (hf) or served name (openai).")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")] = None,
    task: TaskName = None,
    task_file: TaskFile = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus mass.")] = 0.95,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Token limit per candidate (default: the task's, 32 for one-line tasks, 192 for multi-line ones).", min=1)] = None,
    k: Annotated[int, typer.Option(help="Retrieved profile items per prompt (0 = zero-shot).", min=0)] = 4,
    seed: Seed = 0,
    int8: Annotated[bool, typer.Option(help="Opt-in int8 dynamic quantization of a local model (faster; changes samples).")] = False,
    force_new: Annotated[bool, typer.Option("--force-new", help="Start --out over instead of resuming it (a pool made with other settings is otherwise refused).")] = False,
    n_old: Annotated[Optional[int], typer.Option("--n", hidden=True, min=1)] = None,
) -> None:
    """Sample M candidates per query from a personalized policy into a pool file."""
    from ttpkit import stages
    from ttpkit.data import load_split, resolve_task
    from ttpkit.manifest import check_resume
    from ttpkit.policy import PolicySpec, lazy_policy
    from ttpkit.pool import PoolWriter, pool_manifest

    t0 = time.time()
    m = _deprecated(m, n_old, "--n", "--m")
    PolicySpec(backend, backend, model, temperature, top_p, max_new_tokens or 32, k, int8, base_url).check()
    _quiet_libraries()
    ds = load_split(data, split, resolve_task(task, task_file))
    spec = PolicySpec(backend, backend, model, temperature, top_p, max_new_tokens or ds.task.max_new_tokens or 32, k, int8, base_url)
    queries = ds.queries[offset:][:limit] if limit else ds.queries[offset:]
    if not queries:
        raise ConfigError(f"--offset {offset}: the {split} split has only {len(ds.queries)} queries")
    manifest = stages.sampling_manifest(spec, ds, m, seed)
    if not force_new:  # refuse a mismatched pool before the progress display starts
        check_resume(out_path, pool_manifest(PoolWriter(out_path).existing()), manifest)
    with _progress() as bar:
        stages.sample_pool(queries, out_path, m, lazy_policy(spec, ds.task, seed, on_load=bar.note), bar,
                           manifest=manifest, force_new=force_new)
    console.print(f"wrote {out_path} in {time.time() - t0:.0f} s")


@app.command()
@_friendly
def label(
    pool: Annotated[Path, typer.Option(help="Pool file to label in place.")],
    data: DataDir,
    split: Annotated[str, typer.Option(help="Split the pool was sampled from.")] = "test",
    task: TaskName = None,
    task_file: TaskFile = None,
) -> None:
    """Label candidates with ROUGE-1/ROUGE-L F1 against the reference (and add the style baseline)."""
    from ttpkit import stages
    from ttpkit.data import load_split, resolve_task
    from ttpkit.pool import QUERY_ID, ROUGE1, ROUGEL, ROUGELSUM

    with console.status("labelling ..."):
        df = stages.label_pool(pool, load_split(data, split, resolve_task(task, task_file)))
    console.print(
        f"labelled {len(df)} candidates of {df[QUERY_ID].nunique()} queries: "
        f"mean rougeL {df[ROUGEL].mean():.3f}, rouge1 {df[ROUGE1].mean():.3f}, rougeLsum {df[ROUGELSUM].mean():.3f}"
    )


@app.command()
@_friendly
def curves(
    pool: Annotated[Path, typer.Option(help="Labelled pool file.")],
    utility: Utility = "rougeL",
    scorers: Annotated[str, typer.Option(help="Comma-separated: oracle, random, or any score_<name> column (name@rule applies a rule).")] = "oracle,random,style",
    ns: Annotated[Optional[str], typer.Option("--ns", help="Comma-separated N values, each at most M (default: 1, 2, 4 ... up to M).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | json | markdown.")] = "table",
    plot: Annotated[Optional[Path], typer.Option(help="PNG to write (default: <pool>.curves.png for tables).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of the thompson rule.")] = 0,
    n_old: Annotated[Optional[str], typer.Option("--n", hidden=True)] = None,
) -> None:
    """Exact expected utility of best-of-N for each scorer, with bootstrap intervals."""
    from ttpkit.paths import check_writable
    from ttpkit.pool import Scorer, candidates_per_query, n_grid, read_pool
    from ttpkit.report import curves_json, curves_markdown, curves_table, plot_curves
    from ttpkit.scaling import curves as compute

    if fmt not in ("table", "json", "markdown"):
        raise ConfigError(f"--format must be table, json or markdown, got {fmt!r}")
    ns = _deprecated(ns, n_old, "--n", "--ns")
    grid = _ints(ns, "--ns") if ns is not None else None
    names = Scorer.parse_list(scorers)
    png = plot or (pool.with_suffix(".curves.png") if fmt == "table" else None)
    if png is not None:
        check_writable(png, "--plot")
    df = read_pool(pool, require=[utility])
    result = compute(df, names, utility, grid or n_grid(candidates_per_query(df)), seed=seed)
    if fmt == "json":
        print(json.dumps(curves_json(result), indent=2, allow_nan=False))
    elif fmt == "markdown":
        print(curves_markdown(result))
    else:
        out.print(curves_table(result, utility))
    if png is not None:
        plot_curves(result, png, utility)
        console.print(f"plot: {png}")


# ---------------------------------------------------------------------------------------------
# reward models
# ---------------------------------------------------------------------------------------------


@app.command("train-rm")
@_friendly
def train_rm(
    pool: Annotated[Path, typer.Option(help="Labelled training pool.")],
    data: DataDir,
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the model.")],
    dev_pool: Annotated[Optional[Path], typer.Option(help="Labelled dev pool for early stopping (default: hold out 20% of users).")] = None,
    variant: Annotated[str, typer.Option(help="global-mse | user-mse | user-pairwise | user-prob.")] = "user-prob",
    utility: Utility = "rougeL",
    beta: Annotated[float, typer.Option(help="β of β-NLL for user-prob (0 = plain NLL).")] = 0.0,
    hidden: Annotated[int, typer.Option(help="Hidden width.", min=1)] = 32,
    seed: Seed = 0,
    split: Annotated[Optional[str], typer.Option(help="Split of --pool (default: detected).")] = None,
    dev_split: Annotated[Optional[str], typer.Option(help="Split of --dev-pool (default: detected).")] = None,
    encoder_layers: Annotated[Optional[int], typer.Option(help="Use the first L of MiniLM's 6 layers for the embedding features (default: all); 2 encodes 2-2.5x as fast with no measurable loss on the two real data sets; `ttpkit score` then uses 2 too.")] = None,
    encoder_dtype: Annotated[str, typer.Option(help="Encoder dtype of training and later scoring: float32 | bfloat16 | auto (bf16 on CPUs with native bf16).")] = "float32",
    long_form: Annotated[Optional[bool], typer.Option("--long-form/--no-long-form", help="Add the multi-line features (repetition, vocabulary, coverage, line structure); default: on for multi-line tasks.")] = None,
    task: TaskName = None,
    task_file: TaskFile = None,
) -> None:
    """Train a personalized reward model on a labelled pool (CPU, minutes)."""
    from ttpkit import stages
    from ttpkit.data import resolve_task
    from ttpkit.pool import read_pool
    from ttpkit.report import plot_training
    from ttpkit.reward.models import RMConfig

    t0 = time.time()
    spec = resolve_task(task, task_file)
    cfg = RMConfig(variant=variant, beta=beta, hidden=hidden, seed=seed, encoder_layers=encoder_layers, encoder_dtype=encoder_dtype)
    train = read_pool(pool, require=[utility])
    dev = read_pool(dev_pool, require=[utility]) if dev_pool is not None else None
    _quiet_libraries()
    train_data = stages.dataset_for_pool(data, train, split, spec)
    dev_data = stages.dataset_for_pool(data, dev, dev_split, spec) if dev is not None else None
    cfg = dataclasses.replace(cfg, long_form=train_data.task.multiline if long_form is None else long_form)
    with console.status(f"training {variant} on {len(train)} candidates ..."):
        rm = stages.train_rm(cfg, train, train_data, dev, dev_data, out=out_dir, utility=utility,
                             encoder=stages.default_encoder(encoder_dtype, cfg.encoder_layers))
    plot_training(rm.history_, out_dir / "training.png", title=variant)
    last = rm.history_[-1] if rm.history_ else {}
    console.print(f"saved {variant} to {out_dir} ({len(rm.history_)} logged steps, dev loss {last.get('dev_loss', float('nan')):.4f}) in {time.time() - t0:.0f} s")


@app.command()
@_friendly
def score(
    rm_dir: Annotated[str, typer.Option("--rm", help="Reward model directory, or 'default' / 'default:user-prob' (the bundled model for the pool's task).")],
    pool: Annotated[Path, typer.Option(help="Pool to score in place.")],
    data: DataDir,
    name: Annotated[Optional[str], typer.Option(help="Column suffix (default: the variant).")] = None,
    split: PoolSplit = None,
    task: TaskName = None,
    task_file: TaskFile = None,
    encoder_dtype: Annotated[Optional[str], typer.Option(help="float32 | bfloat16 | auto (bf16 on CPUs with native bf16); default: the model's own setting.")] = None,
) -> None:
    """Add score_<name> (and std_<name> for user-prob) to a pool."""
    from ttpkit import stages
    from ttpkit.data import resolve_task
    from ttpkit.pool import read_pool, score_col, write_pool
    from ttpkit.reward.bundled import resolve_rm
    from ttpkit.reward.models import RewardModel

    df = read_pool(pool)
    _quiet_libraries()
    ds = stages.dataset_for_pool(data, df, split, resolve_task(task, task_file))
    rm = RewardModel.load(resolve_rm(rm_dir, ds.task.name))
    encoder = stages.default_encoder(encoder_dtype or rm.config.encoder_dtype, rm.config.encoder_layers)  # the RM's depth
    with console.status(f"scoring {len(df)} candidates ..."):
        df = stages.score_pool(df, rm, ds, name=name, encoder=encoder)
    write_pool(df, pool)
    console.print(f"added {score_col(name or rm.config.variant)} to {pool} ({len(df)} candidates)")


@app.command()
@_friendly
def diagnose(
    pool: Annotated[Path, typer.Option(help="Labelled (and scored) pool.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Report directory.")],
    scorers: Annotated[str, typer.Option(help="Comma-separated scorers (oracle, random, style, RM columns, name@rule).")] = "oracle,random,style",
    utility: Utility = "rougeL",
    m_fit: Annotated[int, typer.Option(help="Candidates per query the law is measured on (at most M).", min=2)] = 4,
    n_max: Annotated[int, typer.Option(help="Predict the curve up to this N.", min=2)] = 32,
    tau: Annotated[float, typer.Option(help="Collapse threshold (fraction of the global score spread).")] = 0.05,
    cost: Annotated[float, typer.Option(help="Cost of one sample (any unit).")] = 1.0,
    min_gain: Annotated[float, typer.Option(help="Stop doubling N when the gain per unit of cost falls below this.")] = 1e-3,
    data: Annotated[Optional[Path], typer.Option(help="Data directory, to show references of hacked queries.")] = None,
    split: PoolSplit = None,
    task: TaskName = None,
    task_file: TaskFile = None,
    seed: Seed = 0,
) -> None:
    """Fit the law per scorer (five forms); find where more samples stop paying, collapsed users and hacked queries; recommend N."""
    from ttpkit import stages
    from ttpkit.data import resolve_task
    from ttpkit.paths import check_writable
    from ttpkit.pool import Scorer, read_pool
    from ttpkit.report import diagnosis_tables, peak_sentence, write_diagnosis
    from ttpkit.scaling import diagnose as run

    names = Scorer.parse_list(scorers)
    check_writable(out_dir, "--out", directory=True)
    df = read_pool(pool, require=[utility])
    refs = None
    if data is not None:
        refs = {q.id: q.reference or "" for q in stages.dataset_for_pool(data, df, split, resolve_task(task, task_file)).queries}
    diag = run(df, names, utility, m_fit, n_max, tau, refs, cost, min_gain, seed)
    write_diagnosis(diag, out_dir)
    for table in diagnosis_tables(diag):
        out.print(table)
    for name in diag.scorers:
        if name not in ("oracle", "random"):
            out.print(f"{name}: {peak_sentence(diag, name)}", highlight=False)
    console.print(f"wrote {out_dir}/report.md, law.json and plots")


@app.command()
@_friendly
def bench(
    study: Annotated[Optional[Path], typer.Argument(help="Study YAML (see studies/paper.yaml).")] = None,
    quick: Annotated[bool, typer.Option(help="Run the small smoke study on the bundled sample instead.")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Results directory (default: runs/<study name>).")] = None,
) -> None:
    """Run a whole study (sample, label, train RMs, score, curves, law) from YAML; reruns resume."""
    from ttpkit.bench import StudyConfig, quick_study, run_study
    from ttpkit.report import study_tables

    if (study is None) == (not quick):
        raise ConfigError("give a study YAML file or --quick (not both)")
    if study is not None and _study_kind(study) == "failures":
        return _bench_failures(study, out_dir)
    cfg = quick_study() if quick else StudyConfig.from_yaml(study)
    cfg.check_models()
    _run_study(run_study, cfg, out_dir, study_tables, "results.csv, results.md")


def _run_study(run: Callable[..., Any], cfg: Any, out_dir: Optional[Path], tables: Callable[[Any], list], wrote: str) -> None:
    """Run a study with progress bars into ``out_dir`` (default ``runs/<name>``), then print its tables."""
    _quiet_libraries()
    from ttpkit.paths import check_writable

    target = check_writable(out_dir or Path("runs") / cfg.name, "--out", directory=True)  # before the progress display
    t0 = time.time()
    with _progress() as bar:
        table = run(cfg, target, bar)
    for t in tables(table):
        out.print(t)
    console.print(f"wrote {target}/{wrote} and plots in {time.time() - t0:.0f} s")


def _study_kind(path: Path) -> str:
    """The ``kind`` key of a study file (``paper`` when absent)."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text()) if path.is_file() else None
    except yaml.YAMLError:
        return "paper"  # StudyConfig.from_yaml reports the syntax error
    return str(raw.get("kind", "paper")) if isinstance(raw, dict) else "paper"


def _bench_failures(study: Path, out_dir: Optional[Path]) -> None:
    """``ttpkit bench`` for a ``kind: failures`` study (see :mod:`ttpkit.regimes`)."""
    import yaml

    from ttpkit.regimes import FailureStudy, run_failures
    from ttpkit.report import regime_tables

    try:
        cfg = FailureStudy.from_dict(yaml.safe_load(study.read_text()), base=study.parent)
    except ConfigError as e:
        raise ConfigError(f"{study}: {e}") from None
    _run_study(run_failures, cfg, out_dir, regime_tables, "regimes.csv, paired.csv, calibration.csv")


# ---------------------------------------------------------------------------------------------
# personalize
# ---------------------------------------------------------------------------------------------


def _read_profile(path: Path, user: Optional[str]) -> list:
    """A JSON list of profile items, or (with ``--user``) the profile of that user in a LaMP questions file."""
    from ttpkit.data import read_json

    if not path.is_file():
        raise ConfigError(f"--profile {path}: no such file")
    raw = read_json(path)
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: expected a JSON list (profile items, or LaMP questions with --user)")
    if user is None:
        if raw and isinstance(raw[0], dict) and "profile" in raw[0]:
            raise ConfigError(f"{path} is a LaMP questions file: pass --user ID to pick whose profile to use")
        return raw
    for rec in raw:
        if isinstance(rec, dict) and str(rec.get("user_id")) == user:
            profile = rec.get("profile")
            if not isinstance(profile, list):
                raise ConfigError(f"{path}: the record of user {user!r} has no profile list")
            return profile
    raise ConfigError(f"{path}: no record with user_id {user!r}")


@app.command()
@_friendly
def personalize(
    profile: Annotated[Path, typer.Option(help="JSON list of the user's profile items, or a LaMP questions file with --user.")],
    text: Annotated[str, typer.Option("--input", help="The new input (a commit message, a package description...).")],
    user: Annotated[Optional[str], typer.Option(help="User id to pick from a LaMP questions file.")] = None,
    task: Annotated[str, typer.Option("--task", help="Task name.")] = "git-commits",
    task_file: TaskFile = None,
    rm: Annotated[str, typer.Option(help="'default' (bundled user-pairwise for the task, or the task-agnostic one), 'default:user-prob', or a model directory.")] = "default",
    n: Annotated[int, typer.Option("--n", help="Candidates to draw (N of best-of-N).", min=1)] = 16,
    adaptive: Annotated[bool, typer.Option(help="Sample in rounds of 4 and stop when the next round's expected gain is small.")] = False,
    max_n: Annotated[int, typer.Option(help="Most candidates --adaptive may draw.", min=1)] = 32,
    min_gain: Annotated[float, typer.Option(help="--adaptive stops below this expected gain per round (in RM score stds).")] = 0.05,
    rule: Annotated[str, typer.Option(help="mean | lcb:κ | ucb:κ | thompson (all but mean need a user-prob RM).")] = "mean",
    backend: Annotated[str, typer.Option(help="embedded | gguf | hf | openai.")] = "embedded",
    model: Annotated[Optional[str], typer.Option(help="GGUF file (gguf), model dir (hf) or served name (openai).")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")] = None,
    k: Annotated[int, typer.Option(help="Retrieved profile items per prompt (0 = zero-shot).", min=0)] = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON record instead of the text and table.")] = False,
    seed: Seed = 0,
) -> None:
    """Personalize one new input: sample N candidates, score them with a personalized RM, print the best."""
    from ttpkit.data import resolve_task
    from ttpkit.online import personalize as run
    from ttpkit.policy import PolicySpec
    from ttpkit.pool import Rule

    Rule.parse(rule)  # fail before any model loads
    spec = resolve_task(task if task_file is None else None, task_file)
    pol = PolicySpec("gemma3-270m" if backend == "embedded" else backend, backend, model, k=k, base_url=base_url,
                     max_new_tokens=spec.max_new_tokens or 32)
    pol.check()
    items = _read_profile(profile, user)
    _quiet_libraries()
    with console.status(f"sampling and scoring {'adaptively, up to ' + str(max_n) if adaptive else n} candidates ..."):
        res = run(items, text, task=spec, rm=rm, n=n, rule=rule, policy=pol, seed=seed, adaptive=adaptive, max_n=max_n,
                  min_gain=min_gain, user_id=user)
    for w in res.warnings:
        console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    if as_json:
        print(json.dumps(res.as_dict(), indent=2, ensure_ascii=False, allow_nan=False))
        return
    from ttpkit.report import personalized_table

    print(res.text)
    out.print(personalized_table(res))
    e = res.expected
    if e is not None:
        law = ("this user's scores barely vary (collapsed): expect about what one sample gives" if e.collapsed else
               f"the law expects best-of-{e.n} to add {e.gain:+.3f} ROUGE-L over one sample for this user "
               f"(this RM recovers {e.share:.0%} of the oracle gain on its test users)")
        console.print(law, soft_wrap=True)
    from ttpkit.reward.bundled import MODELS_DIR

    where = Path(res.rm)
    rm_name = f"bundled {where.relative_to(MODELS_DIR)}" if where.is_relative_to(MODELS_DIR) else res.rm
    console.print(f"{res.n} candidates in {res.rounds} round{'s' if res.rounds > 1 else ''}, {res.seconds:.1f} s; RM {rm_name}", soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------


@app.command()
@_friendly
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("ttpkit-demo"),
    m: Annotated[int, typer.Option("--m", help="Candidates per query (M).", min=1)] = 8,
    seed: Seed = 0,
    n_old: Annotated[Optional[int], typer.Option("--n", hidden=True, min=1)] = None,
) -> None:
    """Run the whole loop on the bundled sample with the embedded Gemma 3 270M.

    Samples M candidates for each of the 16 bundled git-commits queries, labels
    them with ROUGE, scores them with the bundled user-pairwise reward model, and
    prints best-of-N for random / style / the RM / oracle selection.
    """
    from ttpkit import stages
    from ttpkit.data import bundled_sample_dir, load_split
    from ttpkit.paths import check_writable
    from ttpkit.policy import PolicySpec, lazy_policy
    from ttpkit.manifest import check_resume
    from ttpkit.pool import QUERY_ID, ROUGEL, TEXT, n_grid, pool_manifest, read_pool, score_col, write_pool
    from ttpkit.report import curves_json, curves_table, plot_curves, write_json
    from ttpkit.reward.bundled import bundled_path
    from ttpkit.reward.models import RewardModel
    from ttpkit.scaling import curves as compute

    t0 = time.time()
    m = _deprecated(m, n_old, "--n", "--m")
    check_writable(out_dir, "--out", directory=True)
    _quiet_libraries()
    data = load_split(bundled_sample_dir(), "dev")
    console.print(f"[bold]ttpkit demo[/]: Gemma 3 270M, M={m}, bundled git-commits sample ({data.path})")
    spec = PolicySpec("gemma3-270m")
    manifest = stages.sampling_manifest(spec, data, m, seed)
    try:  # the demo's folder is scratch: a pool made with another --m or --seed is started over
        check_resume(out_dir / "pool.parquet", pool_manifest(read_pool(out_dir / "pool.parquet")), manifest)
        fresh = False
    except TtpkitError:
        fresh = True
    with _progress() as bar:
        stages.sample_pool(data.queries, out_dir / "pool.parquet", m, lazy_policy(spec, data.task, seed, bar.note), bar,
                           manifest=manifest, force_new=fresh)
    df = stages.label_pool(out_dir / "pool.parquet", data)
    rm = RewardModel.load(bundled_path(data.task.name))
    with console.status(f"scoring {len(df)} candidates with the bundled {rm.name} reward model ..."):
        df = stages.score_pool(df, rm, data, name="rm")
    write_pool(df, out_dir / "pool.parquet")
    result = compute(df, ["random", "style", "rm", "oracle"], ROUGEL, n_grid(m), seed=seed)
    out.print(curves_table(result, ROUGEL))
    write_json(curves_json(result), out_dir / "curves.json")
    plot_curves(result, out_dir / "curves.png", ROUGEL, title=f"ttpkit demo: best-of-N, {result['oracle'].n_queries} queries")
    qid = df.groupby(QUERY_ID)[ROUGEL].std().idxmax()  # the query whose candidates differ most
    one = df[df[QUERY_ID] == qid].reset_index(drop=True)
    pick, best = one[score_col("rm")].idxmax(), one[ROUGEL].idxmax()
    console.print(f"\nquery {qid}: reference [italic]{data.by_id()[qid].reference}[/]")
    for i, row in one.iterrows():
        mark = ("RM pick " if i == pick else "") + ("oracle pick" if i == best else "")
        console.print(f"  {row[score_col('rm')]:+.2f}  {row[ROUGEL]:.2f}  {row[TEXT][:60]}  [bold]{mark}[/]", soft_wrap=True, highlight=False)
    console.print("  (RM score, then rougeL)", highlight=False)
    console.print(f"wrote {out_dir}/pool.parquet, curves.json, curves.png in {time.time() - t0:.0f} s")


@app.command()
@_friendly
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
    backend: Annotated[str, typer.Option(help="embedded | gguf | hf.")] = "embedded",
    model: Annotated[Optional[str], typer.Option(help="GGUF file (gguf) or model dir (hf).")] = None,
    task: Annotated[str, typer.Option(help="Task whose labels prompts use (raw prompts ignore it).")] = "git-commits",
) -> None:
    """Serve a local policy as an OpenAI-compatible completions endpoint."""
    import uvicorn

    from ttpkit.data import get_task
    from ttpkit.policy import make_policy
    from ttpkit.serve import create_app

    if backend == "openai":
        raise ConfigError("serve needs a local backend: embedded, gguf or hf")
    _check_port(host, port)  # before the model loads
    _quiet_libraries()
    policy = make_policy(backend, get_task(task), model=model)
    uvicorn.run(create_app(policy, model_name=policy.name), host=host, port=port)


def _check_port(host: str, port: int) -> None:
    """Fail at once when ``host:port`` cannot be bound (busy, or not an address of this machine)."""
    import socket

    if not 0 < port < 65536:
        raise ConfigError(f"--port must be in 1..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise ConfigError(f"--host {host}: cannot resolve it ({e.strerror})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as e:
            raise ConfigError(f"cannot listen on {host}:{port} ({e.strerror}); is another server using it? pick --port") from None


def main() -> None:
    """Console-script entry point: a bad option or value is one line on stderr and exit code 2."""
    from rich.markup import escape

    try:
        from typer._click import exceptions as click  # recent typer vendors click
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click import exceptions as click

    try:
        code = app(standalone_mode=False)
    except click.NoArgsIsHelpError as e:
        print(e.format_message(), file=sys.stderr)
        code = 2
    except click.UsageError as e:
        hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
        message = " ".join(e.format_message().split())  # click's messages may span lines
        console.print(f"[bold red]error:[/] {escape(message)}{hint}", soft_wrap=True, highlight=False)
        code = 2
    except click.ClickException as e:
        console.print(f"[bold red]error:[/] {escape(e.format_message())}", soft_wrap=True, highlight=False)
        code = e.exit_code
    except typer.Abort:
        console.print("aborted", highlight=False)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
