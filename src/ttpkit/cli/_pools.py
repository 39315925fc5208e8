"""The commands on a sampled pool: ``label``, ``curves``, ``train-rm``, ``score``, ``diagnose`` (``sample`` is :mod:`ttpkit.cli._sample`).

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
    MAX_CURVE_N,
    ActorCpus,
    ActorGpus,
    Actors,
    Address,
    DataDir,
    Device,
    EngineKind,
    PoolSplit,
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
    quiet_libraries,
)
from ttpkit.errors import ConfigError


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
    greedy_pool: Annotated[Optional[Path], typer.Option("--greedy", help="Labelled pool of greedy decodes (ttpkit sample --temperature 0 --m 1) to compare with, for a pool sampled without --greedy.")] = None,
    with_greedy: Annotated[bool, typer.Option("--with-greedy", help="Against greedy, count the pool's own greedy row as one of the N candidates (greedy + N-1 samples), as personalize does.")] = False,
    n_old: Annotated[Optional[str], typer.Option("--n", hidden=True)] = None,
) -> None:
    """Exact expected utility of best-of-N for each scorer, with bootstrap intervals, and against the greedy answer where there is one."""
    from ttpkit.paths import check_writable
    from ttpkit.pool import ScorerRef, candidates_per_query, n_grid, read_pool
    from ttpkit.scaling import curves as compute

    if fmt not in ("table", "json", "markdown"):
        raise ConfigError(f"--format must be table, json or markdown, got {fmt!r}")
    ns = deprecated(ns, n_old, "--n", "--ns")
    grid = ints(ns, "--ns") if ns is not None else None
    names = ScorerRef.parse_list(scorers)
    png = plot or (pool.with_suffix(".curves.png") if fmt == "table" else None)
    if png is not None:
        check_writable(png, "--plot")
    df = read_pool(pool, require=[utility])
    grid = grid or n_grid(candidates_per_query(df))
    result = compute(df, names, utility, grid, seed=seed)
    versus = _versus_greedy(df, names, utility, grid, seed, greedy_pool, with_greedy)
    _print_curves(result, versus, fmt, utility, png)


def _print_curves(result: dict, versus: dict, fmt: str, utility: str, png: Optional[Path]) -> None:
    """Print the curves (and against greedy, if any) as ``fmt``; draw them into ``png``."""
    from ttpkit.report import curves_json, curves_markdown, curves_table, greedy_json, greedy_markdown, greedy_table
    from ttpkit.report import plot_curves, plot_versus_greedy

    if fmt == "json":
        print(jsonio.dumps({**curves_json(result), **({"against_greedy": greedy_json(versus)} if versus else {})}, indent=2))
    elif fmt == "markdown":
        print(curves_markdown(result) + ("\n\n" + greedy_markdown(versus) if versus else ""))
    else:
        out.print(curves_table(result, utility))
        if versus:
            out.print(greedy_table(versus, utility))
    if png is not None:
        plot_curves(result, png, utility)
        console.print(f"plot: {png}")
        if versus:
            console.print(f"plot: {plot_versus_greedy(versus, png.with_suffix('.greedy.png'), utility)}")


def _versus_greedy(df: Any, names: list, utility: str, grid: Any, seed: int, greedy_pool: Optional[Path],
                   with_greedy: bool) -> dict:
    """Best-of-N against greedy when the pool has greedy rows or ``--greedy`` names a pool of them; {} otherwise."""
    from ttpkit.pool import greedy_rows, read_pool
    from ttpkit.scaling import versus_greedy

    greedy = read_pool(greedy_pool, require=[utility]) if greedy_pool is not None else None
    if greedy is None and not len(greedy_rows(df)):
        if with_greedy:
            raise ConfigError("--with-greedy: the pool has no greedy rows (sample it with --greedy)")
        return {}
    return versus_greedy(df, names, utility, list(grid), "with-greedy" if with_greedy else "samples", greedy, seed=seed)


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
    hidden: Annotated[int, typer.Option(help="Hidden width.", min=1, max=65_536)] = 32,
    seed: Seed = 0,
    split: Annotated[Optional[str], typer.Option(help="Split of --pool (default: detected).")] = None,
    dev_split: Annotated[Optional[str], typer.Option(help="Split of --dev-pool (default: detected).")] = None,
    encoder_layers: Annotated[Optional[int], typer.Option(help="Use the first L of MiniLM's 6 layers for the embedding features (default: all); 2 encodes 2-2.5x as fast with no measurable loss on the two real data sets; `ttpkit score` then uses 2 too.", max=1_000)] = None,
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
    needs = rm.needs
    dtype = encoder_dtype or needs.encoder_dtype
    encoder = stages.default_encoder(dtype, needs.encoder_layers, device) if (encoder_dtype or device != "cpu") and needs.encoder else None
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
    m_fit: Annotated[int, typer.Option(help="Candidates per query the law is measured on (at most M).", min=2, max=MAX_CURVE_N)] = 4,
    max_n: Annotated[int, typer.Option("--max-n", help="Predict the curve up to this N.", min=2, max=MAX_CURVE_N)] = 32,
    tau: Annotated[float, typer.Option(help="Collapse threshold (fraction of the global score spread).")] = 0.05,
    cost: Annotated[float, typer.Option(help="Cost of one sample (any unit).")] = 1.0,
    min_gain_per_cost: Annotated[float, typer.Option("--min-gain-per-cost", help="Stop doubling N when the gain per unit of cost falls below this.")] = 1e-3,
    data: Annotated[Optional[Path], typer.Option(help="Data directory, to show references of hacked queries.")] = None,
    split: PoolSplit = None,
    task: TaskName = None,
    task_file: TaskFile = None,
    seed: Seed = 0,
    greedy_pool: Annotated[Optional[Path], typer.Option("--greedy", help="Labelled pool of greedy decodes to compare with, for a pool sampled without --greedy.")] = None,
    n_max_old: Annotated[Optional[int], typer.Option("--n-max", hidden=True, min=2, max=MAX_CURVE_N)] = None,
    min_gain_old: Annotated[Optional[float], typer.Option("--min-gain", hidden=True)] = None,
) -> None:
    """Fit the law per scorer (five forms); find where more samples stop paying, collapsed users and hacked queries; recommend N."""
    from ttpkit import stages
    from ttpkit.data import resolve_task
    from ttpkit.paths import check_writable
    from ttpkit.pool import ScorerRef, read_pool
    from ttpkit.report import diagnosis_tables, peak_sentence, write_diagnosis
    from ttpkit.scaling import diagnose as run

    max_n = deprecated(max_n, n_max_old, "--n-max", "--max-n")
    min_gain_per_cost = deprecated(min_gain_per_cost, min_gain_old, "--min-gain", "--min-gain-per-cost")
    names = ScorerRef.parse_list(scorers)
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
    _diagnose_greedy(df, list(diag.scorers), utility, seed, greedy_pool, out_dir)
    console.print(f"wrote {out_dir}/report.md, law.json and plots")


def _diagnose_greedy(df: Any, names: list, utility: str, seed: int, greedy_pool: Optional[Path], out_dir: Path) -> None:
    """Against greedy, where the pool has greedy rows or ``--greedy`` names a pool of them: printed, and written beside the report."""
    from ttpkit.pool import candidates_per_query, n_grid
    from ttpkit.report import greedy_json, greedy_markdown, greedy_table, write_json

    versus = _versus_greedy(df, names, utility, n_grid(candidates_per_query(df)), seed, greedy_pool, False)
    if versus:
        out.print(greedy_table(versus, utility))
        (out_dir / "against_greedy.md").write_text(greedy_markdown(versus))
        write_json(greedy_json(versus), out_dir / "against_greedy.json")
