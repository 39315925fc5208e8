"""The pool commands: ``sample``, ``label``, ``curves``, ``train-rm``, ``score``, ``diagnose``.

Each parses its options, makes one call into :mod:`ttpkit.stages` or
:mod:`ttpkit.scaling`, and prints. Heavy libraries load inside the commands.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ttpkit import jsonio
from ttpkit.cli._common import (
    ActorCpus,
    ActorGpus,
    Actors,
    Address,
    BaseUrl,
    Backend,
    DataDir,
    Device,
    EngineKind,
    Dtype,
    Model,
    PoolSplit,
    ProfileK,
    Seed,
    TaskFile,
    TaskName,
    Utility,
    app,
    console,
    deprecated,
    engine_option,
    friendly,
    ints,
    out,
    progress,
    quiet_libraries,
)
from ttpkit.errors import ConfigError


@app.command()
@friendly
def sample(
    data: DataDir,
    out_path: Annotated[Path, typer.Option("--out", help="Pool to write, resumed if it exists: a name ending in .parquet is one file; any other name is a directory of append-only part files (pool/).")],
    split: Annotated[str, typer.Option(help="Split to sample.")] = "test",
    m: Annotated[int, typer.Option("--m", help="Candidates per query (M).", min=1)] = 16,
    limit: Annotated[Optional[int], typer.Option(help="Only the first Q queries (after --offset).", min=1)] = None,
    offset: Annotated[int, typer.Option(help="Skip the first queries of the split (to add a range to a pool).", min=0)] = 0,
    backend: Backend = "embedded",
    model: Model = None,
    base_url: BaseUrl = None,
    task: TaskName = None,
    task_file: TaskFile = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus mass.")] = 0.95,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Token limit per candidate (default: the task's, 32 for one-line tasks, 192 for multi-line ones).", min=1)] = None,
    k: ProfileK = 4,
    seed: Seed = 0,
    int8: Annotated[bool, typer.Option(help="Opt-in int8 dynamic quantization of a local model (faster; changes samples).")] = False,
    force_new: Annotated[bool, typer.Option("--force-new", help="Start --out over instead of resuming it (a pool made with other settings is otherwise refused).")] = False,
    device: Device = "cpu",
    engine: EngineKind = "local",
    address: Address = "auto",
    actors: Actors = 2,
    actor_cpus: ActorCpus = 1.0,
    actor_gpus: ActorGpus = None,
    dtype: Dtype = None,
    n_old: Annotated[Optional[int], typer.Option("--n", hidden=True, min=1)] = None,
) -> None:
    """Sample M candidates per query from a personalized policy into a pool file (or directory), here or on Ray."""
    from ttpkit import stages
    from ttpkit.data import load_split, resolve_task
    from ttpkit.device import resolve_device
    from ttpkit.policy import PolicySpec
    from ttpkit.task import DEFAULT_MAX_NEW_TOKENS

    t0 = time.time()
    m = deprecated(m, n_old, "--n", "--m")
    eng = engine_option(engine, address, actors, actor_cpus, actor_gpus)
    remote = eng.kind == "ray" and device == "cuda"  # GPU actors: CUDA is checked where the model loads, not on this driver
    decoding = {"temperature": temperature, "top_p": top_p, "k": k, "int8": int8, "device": "cuda" if remote else resolve_device(device), "dtype": dtype}
    PolicySpec.from_options(backend, model, base_url, max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS, **decoding).check(device_here=not remote)
    quiet_libraries(backend)
    ds = load_split(data, split, resolve_task(task, task_file))
    tokens = max_new_tokens or ds.task.max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    spec = PolicySpec.from_options(backend, model, base_url, max_new_tokens=tokens, **decoding)
    queries = _query_range(ds, split, offset, limit)
    manifest = stages.sampling_manifest(spec, ds, m, seed)
    _check_out(out_path, manifest, force_new)
    n_path = _sample_with_progress(queries, out_path, m, spec, ds.task, seed, manifest, force_new, eng)
    console.print(f"wrote {out_path} in {time.time() - t0:.0f} s" + (f" (n_path {n_path})" if n_path else ""))


def _sample_with_progress(queries: list, out_path: Path, m: int, spec: Any, task: Any, seed: int, manifest: dict,
                          force_new: bool, eng: Any) -> str | None:
    """Sample into ``out_path`` under progress bars (the model loads, if a query needs it, with a note on the bars);
    returns the n_path recorded in the pool's manifest."""
    from ttpkit import stages
    from ttpkit.policy import lazy_policy

    with progress() as bar:
        policy = lazy_policy(spec, task, seed, on_load=bar.note)
        sampled = stages.sample_pool(queries, out_path, m, policy, bar, manifest=manifest, force_new=force_new, engine=eng)
    # the local engine built the policy already; under Ray the actors did, and their n_path stays with them
    return stages.record_n_path(out_path, policy()) if sampled and eng.kind == "local" else None


def _query_range(ds: Any, split: str, offset: int, limit: int | None) -> list:
    """The queries of ``--offset``/``--limit``; none left is an error naming the split's size."""
    queries = ds.queries[offset:][:limit] if limit else ds.queries[offset:]
    if not queries:
        raise ConfigError(f"--offset {offset}: the {split} split has only {len(ds.queries)} queries")
    return queries


def _check_out(out_path: Path, manifest: dict, force_new: bool) -> None:
    """Refuse a directory that is no pool or an unwritable place, and (unless ``--force-new``) a pool made with
    other settings: before any model loads and before the progress display starts."""
    from ttpkit.manifest import check_resume
    from ttpkit.pool import existing_pool, pool_manifest, pool_writer

    pool_writer(out_path)
    if not force_new:
        check_resume(out_path, pool_manifest(existing_pool(out_path)), manifest)


@app.command()
@friendly
def label(
    pool: Annotated[Path, typer.Option(help="Pool to label in place (a file, or a directory: rewritten as a new set of parts).")],
    data: DataDir,
    split: Annotated[str, typer.Option(help="Split the pool was sampled from.")] = "test",
    task: TaskName = None,
    task_file: TaskFile = None,
) -> None:
    """Label candidates with ROUGE-1/ROUGE-L F1 against the reference (and add the style baseline)."""
    from ttpkit import stages
    from ttpkit.data import load_split, resolve_task
    from ttpkit.pool import QUERY_ID, ROUGE1, ROUGEL, ROUGELSUM, check_pool_data, read_pool

    ds = load_split(data, split, resolve_task(task, task_file))
    check_pool_data(read_pool(pool), ds, pool)  # another task or split is refused before the status display starts
    with console.status("labelling ..."):
        df = stages.label_pool(pool, ds)
    console.print(
        f"labelled {len(df)} candidates of {df[QUERY_ID].nunique()} queries: "
        f"mean rougeL {df[ROUGEL].mean():.3f}, rouge1 {df[ROUGE1].mean():.3f}, rougeLsum {df[ROUGELSUM].mean():.3f}"
    )


@app.command()
@friendly
def curves(
    pool: Annotated[Path, typer.Option(help="Labelled pool file.")],
    utility: Utility = "rougeL",
    scorers: Annotated[str, typer.Option(help="Comma-separated: oracle, random, or any score_<name> column (name@rule applies a rule).")] = "oracle,random,style",
    ns: Annotated[Optional[str], typer.Option("--ns", help="Comma-separated N values, each at most M (default: 1, 2, 4 ... up to M).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table | json | markdown.")] = "table",
    plot: Annotated[Optional[Path], typer.Option(help="PNG to write (default: <pool>.curves.png for tables).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap and of the thompson rule (0 to 2**63-1).", min=0, max=2**63 - 1)] = 0,
    n_old: Annotated[Optional[str], typer.Option("--n", hidden=True)] = None,
) -> None:
    """Exact expected utility of best-of-N for each scorer, with bootstrap intervals."""
    from ttpkit.paths import check_writable
    from ttpkit.pool import Scorer, candidates_per_query, n_grid, read_pool
    from ttpkit.report import curves_json, curves_markdown, curves_table, plot_curves
    from ttpkit.scaling import curves as compute

    if fmt not in ("table", "json", "markdown"):
        raise ConfigError(f"--format must be table, json or markdown, got {fmt!r}")
    ns = deprecated(ns, n_old, "--n", "--ns")
    grid = ints(ns, "--ns") if ns is not None else None
    names = Scorer.parse_list(scorers)
    png = plot or (pool.with_suffix(".curves.png") if fmt == "table" else None)
    if png is not None:
        check_writable(png, "--plot")
    df = read_pool(pool, require=[utility])
    result = compute(df, names, utility, grid or n_grid(candidates_per_query(df)), seed=seed)
    if fmt == "json":
        print(jsonio.dumps(curves_json(result), indent=2))
    elif fmt == "markdown":
        print(curves_markdown(result))
    else:
        out.print(curves_table(result, utility))
    if png is not None:
        plot_curves(result, png, utility)
        console.print(f"plot: {png}")


@app.command("train-rm")
@friendly
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
    device: Device = "cpu",
) -> None:
    """Train a personalized reward model on a labelled pool (CPU, minutes; --device places its encoder)."""
    from ttpkit import stages
    from ttpkit.data import resolve_task
    from ttpkit.device import resolve_device
    from ttpkit.pool import read_pool
    from ttpkit.report import plot_training
    from ttpkit.reward import RMConfig

    t0, device = time.time(), resolve_device(device)
    spec = resolve_task(task, task_file)
    cfg = RMConfig(variant=variant, beta=beta, hidden=hidden, seed=seed, encoder_layers=encoder_layers, encoder_dtype=encoder_dtype)
    train = read_pool(pool, require=[utility])
    dev = read_pool(dev_pool, require=[utility]) if dev_pool is not None else None
    quiet_libraries()
    train_data = stages.dataset_for_pool(data, train, split, spec, where=pool)
    dev_data = stages.dataset_for_pool(data, dev, dev_split, spec, where=dev_pool) if dev is not None else None
    cfg = dataclasses.replace(cfg, long_form=train_data.task.multiline if long_form is None else long_form)
    with console.status(f"training {variant} on {len(train)} candidates ..."):
        rm = stages.train_rm(cfg, train, train_data, dev, dev_data, out=out_dir, utility=utility,
                             encoder=stages.default_encoder(encoder_dtype, cfg.encoder_layers, device))
    plot_training(rm.history_, out_dir / "training.png", title=variant)
    last = rm.history_[-1] if rm.history_ else {}
    console.print(f"saved {variant} to {out_dir} ({len(rm.history_)} logged steps, dev loss {last.get('dev_loss', float('nan')):.4f}) in {time.time() - t0:.0f} s")


@app.command()
@friendly
def score(
    rm_dir: Annotated[str, typer.Option("--rm", help="A reward model directory; 'default' / 'default:user-prob' (the bundled model for the pool's task); 'mbr' (consensus, no training); or 'reg:<base>:<beta>' (z(score_<base>) + beta z(mbr), after scoring <base> and mbr).")],
    pool: Annotated[Path, typer.Option(help="Pool to score in place (a file, or a directory: rewritten as a new set of parts).")],
    data: DataDir,
    name: Annotated[Optional[str], typer.Option(help="Column suffix (default: the scorer's name: the variant, mbr or reg).")] = None,
    split: PoolSplit = None,
    task: TaskName = None,
    task_file: TaskFile = None,
    encoder_dtype: Annotated[Optional[str], typer.Option(help="float32 | bfloat16 | auto (bf16 on CPUs with native bf16); default: the model's own setting.")] = None,
    device: Device = "cpu",
    engine: EngineKind = "local",
    address: Address = "auto",
    actors: Actors = 2,
    actor_cpus: ActorCpus = 1.0,
    actor_gpus: ActorGpus = None,
) -> None:
    """Add score_<name> (and std_<name> for a probabilistic RM) to a pool, here or on Ray actors."""
    from ttpkit import stages
    from ttpkit.data import resolve_task
    from ttpkit.device import resolve_device
    from ttpkit.pool import check_scorer_name, read_pool, score_col, write_pool
    from ttpkit.reward import resolve_scorer

    eng = engine_option(engine, address, actors, actor_cpus, actor_gpus)
    if name is not None:
        check_scorer_name(name)  # before the pool is read and the model loads
    device = resolve_device(device)
    df = read_pool(pool)
    quiet_libraries()
    ds = stages.dataset_for_pool(data, df, split, resolve_task(task, task_file), where=pool)
    rm = resolve_scorer(rm_dir, ds.task.name)
    layers = getattr(getattr(rm, "config", None), "encoder_layers", False)  # a scorer without an encoder has none
    dtype = encoder_dtype or getattr(getattr(rm, "config", None), "encoder_dtype", "float32")
    encoder = stages.default_encoder(dtype, layers, device) if (encoder_dtype or device != "cpu") and layers is not False else None
    with console.status(f"scoring {len(df)} candidates ..."):
        df = stages.score_pool(df, rm, ds, name=name, encoder=encoder, engine=eng)
    write_pool(df, pool)
    console.print(f"added {score_col(name or rm.name)} to {pool} ({len(df)} candidates)")


@app.command()
@friendly
def diagnose(
    pool: Annotated[Path, typer.Option(help="Labelled (and scored) pool.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Report directory.")],
    scorers: Annotated[str, typer.Option(help="Comma-separated scorers (oracle, random, style, RM columns, name@rule).")] = "oracle,random,style",
    utility: Utility = "rougeL",
    m_fit: Annotated[int, typer.Option(help="Candidates per query the law is measured on (at most M).", min=2)] = 4,
    max_n: Annotated[int, typer.Option("--max-n", help="Predict the curve up to this N.", min=2)] = 32,
    tau: Annotated[float, typer.Option(help="Collapse threshold (fraction of the global score spread).")] = 0.05,
    cost: Annotated[float, typer.Option(help="Cost of one sample (any unit).")] = 1.0,
    min_gain_per_cost: Annotated[float, typer.Option("--min-gain-per-cost", help="Stop doubling N when the gain per unit of cost falls below this.")] = 1e-3,
    data: Annotated[Optional[Path], typer.Option(help="Data directory, to show references of hacked queries.")] = None,
    split: PoolSplit = None,
    task: TaskName = None,
    task_file: TaskFile = None,
    seed: Seed = 0,
    n_max_old: Annotated[Optional[int], typer.Option("--n-max", hidden=True, min=2)] = None,
    min_gain_old: Annotated[Optional[float], typer.Option("--min-gain", hidden=True)] = None,
) -> None:
    """Fit the law per scorer (five forms); find where more samples stop paying, collapsed users and hacked queries; recommend N."""
    from ttpkit import stages
    from ttpkit.data import resolve_task
    from ttpkit.paths import check_writable
    from ttpkit.pool import Scorer, read_pool
    from ttpkit.report import diagnosis_tables, peak_sentence, write_diagnosis
    from ttpkit.scaling import diagnose as run

    max_n = deprecated(max_n, n_max_old, "--n-max", "--max-n")
    min_gain_per_cost = deprecated(min_gain_per_cost, min_gain_old, "--min-gain", "--min-gain-per-cost")
    names = Scorer.parse_list(scorers)
    check_writable(out_dir, "--out", directory=True)
    df = read_pool(pool, require=[utility])
    refs = None
    if data is not None:
        refs = {q.id: q.reference or "" for q in stages.dataset_for_pool(data, df, split, resolve_task(task, task_file), where=pool).queries}
    diag = run(df, names, utility, m_fit=m_fit, max_n=max_n, tau=tau, references=refs, cost_per_sample=cost,
               min_gain_per_cost=min_gain_per_cost, seed=seed)
    write_diagnosis(diag, out_dir)
    for table in diagnosis_tables(diag):
        out.print(table)
    for name in diag.scorers:
        if name not in ("oracle", "random"):
            out.print(f"{name}: {peak_sentence(diag, name)}", highlight=False)
    console.print(f"wrote {out_dir}/report.md, law.json and plots")
