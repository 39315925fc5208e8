"""The ``ttpkit`` command line. Heavy libraries are imported inside commands so ``--help`` is instant."""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console

from ttpkit.errors import TtpkitError

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
            console.print(f"[bold red]error:[/] {e}")
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


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise TtpkitError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise TtpkitError(f"{what} must be positive integers, got {text!r}")
    return values


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


def run_sample(
    data: Path,
    split: str,
    n: int,
    out_path: Path,
    limit: Optional[int] = None,
    backend: str = "embedded",
    model: Optional[str] = None,
    base_url: Optional[str] = None,
    task: Optional[str] = None,
    temperature: float = 1.0,
    top_p: float = 0.95,
    max_new_tokens: int = 32,
    k: int = 4,
    seed: int = 0,
    policy: Any = None,
    int8: bool = False,
) -> Any:
    """Sample ``n`` candidates per query into a resumable pool; returns the policy used."""
    from ttpkit.data import load_split
    from ttpkit.policy import SamplingConfig, make_policy
    from ttpkit.pool import fill_pool

    _quiet_libraries()
    ds = load_split(data, split, task)
    queries = list(ds.queries[:limit] if limit else ds.queries)
    try:
        cfg = SamplingConfig(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed, k=k)
    except ValueError as e:
        raise TtpkitError(str(e)) from None
    built: list[Any] = [policy]

    def build() -> Any:
        with console.status(f"loading policy ({backend}) ..."):
            built[0] = make_policy(backend, ds.task, cfg, model=model, base_url=base_url, int8=int8)
        return built[0]

    with _progress() as bar:
        job = bar.add_task(f"sampling N={n}", total=len(queries))

        def start(left: int) -> None:
            bar.update(job, completed=len(queries) - left)
            if 0 < left < len(queries):
                console.print(f"resuming: {len(queries) - left} of {len(queries)} queries already done")

        fill_pool(out_path, queries, n, policy or build, on_start=start, on_query=lambda: bar.advance(job))
    return built[0]


@app.command()
@_friendly
def sample(
    data: Annotated[Path, typer.Option(help="LaMP-layout data directory.")],
    out_path: Annotated[Path, typer.Option("--out", help="Pool file to write (Parquet); resumed if it exists.")],
    split: Annotated[str, typer.Option(help="Split to sample.")] = "test",
    n: Annotated[int, typer.Option(help="Candidates per query.", min=1)] = 16,
    limit: Annotated[Optional[int], typer.Option(help="Only the first Q queries.", min=1)] = None,
    backend: Annotated[str, typer.Option(help="embedded | gguf | hf | openai.")] = "embedded",
    model: Annotated[Optional[str], typer.Option(help="GGUF file (gguf), model dir (hf) or served name (openai).")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")] = None,
    task: Annotated[Optional[str], typer.Option(help="Task name; default from the data.")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.")] = 1.0,
    top_p: Annotated[float, typer.Option(help="Nucleus mass.")] = 0.95,
    max_new_tokens: Annotated[int, typer.Option(help="Token limit per candidate.")] = 32,
    k: Annotated[int, typer.Option(help="Retrieved profile items per prompt (0 = zero-shot).", min=0)] = 4,
    seed: Annotated[int, typer.Option(help="Run seed.")] = 0,
    int8: Annotated[bool, typer.Option(help="Opt-in int8 dynamic quantization of a local model (faster; changes samples).")] = False,
) -> None:
    """Sample N candidates per query from a personalized policy into a pool file."""
    t0 = time.time()
    run_sample(data, split, n, out_path, limit, backend, model, base_url, task, temperature, top_p, max_new_tokens, k, seed, int8=int8)
    console.print(f"wrote {out_path} in {time.time() - t0:.0f} s")


def run_label(pool_path: Path, data: Path, split: str, task: Optional[str] = None) -> Any:
    """Add ``rouge1``, ``rougeL`` and ``score_style`` to a pool file in place; returns the frame."""
    from ttpkit.data import load_split
    from ttpkit.pool import PoolWriter, read_pool, write_pool
    from ttpkit.reward.style import style_scores
    from ttpkit.utility import label_pool

    ds = load_split(data, split, task)
    PoolWriter(pool_path).fold()
    pool = read_pool(pool_path)
    queries = ds.by_id()
    with console.status(f"labelling {len(pool)} candidates ..."):
        pool = label_pool(pool, queries)
        pool["score_style"] = style_scores(pool, queries)
    write_pool(pool, pool_path)
    return pool


@app.command()
@_friendly
def label(
    pool: Annotated[Path, typer.Option(help="Pool file to label in place.")],
    data: Annotated[Path, typer.Option(help="LaMP-layout data directory (with outputs).")],
    split: Annotated[str, typer.Option(help="Split the pool was sampled from.")] = "test",
    task: Annotated[Optional[str], typer.Option(help="Task name; default from the data.")] = None,
) -> None:
    """Label candidates with ROUGE-1/ROUGE-L F1 against the reference (and add the style baseline)."""
    df = run_label(pool, data, split, task)
    console.print(
        f"labelled {len(df)} candidates of {df['query_id'].nunique()} queries: "
        f"mean rougeL {df['rougeL'].mean():.3f}, rouge1 {df['rouge1'].mean():.3f}"
    )


@app.command()
@_friendly
def curves(
    pool: Annotated[Path, typer.Option(help="Labelled pool file.")],
    utility: Annotated[str, typer.Option(help="rougeL | rouge1.")] = "rougeL",
    scorers: Annotated[str, typer.Option(help="Comma-separated: oracle, random, or any score_<name> column.")] = "oracle,random,style",
    n: Annotated[str, typer.Option(help="Comma-separated N values.")] = "1,2,4,8",
    fmt: Annotated[str, typer.Option("--format", help="table | json | markdown.")] = "table",
    plot: Annotated[Optional[Path], typer.Option(help="PNG to write (default: <pool>.curves.png for tables).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random scorer and the bootstrap.")] = 0,
) -> None:
    """Exact expected utility of best-of-N for each scorer, with bootstrap intervals."""
    import json

    from ttpkit.pool import read_pool
    from ttpkit.report import curves_json, curves_markdown, curves_table, plot_curves
    from ttpkit.scaling import curves as compute

    if fmt not in ("table", "json", "markdown"):
        raise TtpkitError(f"--format must be table, json or markdown, got {fmt!r}")
    df = read_pool(pool)
    names = [s.strip() for s in scorers.split(",") if s.strip()]
    result = compute(df, names, utility, _ints(n, "--n"), seed=seed)
    if fmt == "json":
        print(json.dumps(curves_json(result), indent=2))
    elif fmt == "markdown":
        print(curves_markdown(result))
    else:
        out.print(curves_table(result, utility))
        png = plot or pool.with_suffix(".curves.png")
        plot_curves(result, png, utility)
        console.print(f"plot: {png}")
    if plot is not None and fmt != "table":
        plot_curves(result, plot, utility)


# ---------------------------------------------------------------------------------------------
# reward models
# ---------------------------------------------------------------------------------------------


def _dataset_for_pool(data: Path, pool: Any, split: Optional[str], task: Optional[str] = None) -> Any:
    """Load the split that holds the pool's queries (``split``, or the first of train/dev/test that does)."""
    from ttpkit.data import load_split

    ids = set(pool["query_id"])
    for name in [split] if split else ["train", "dev", "test"]:
        try:
            ds = load_split(data, name, task)
        except TtpkitError:
            if split:
                raise
            continue
        if ids <= set(ds.by_id()):
            return ds
        if split:
            raise TtpkitError(f"{data}: split {split!r} lacks {len(ids - set(ds.by_id()))} of the pool's queries")
    raise TtpkitError(f"{data}: no split holds all of the pool's queries; pass --split")


def _encoder(dtype: str = "float32", layers: int | None = None) -> Any:
    from ttpkit.policy.local import cache_dir
    from ttpkit.reward.features import Encoder

    return Encoder(cache_file=cache_dir() / "embeddings" / "all-MiniLM-L6-v2.safetensors", dtype=dtype, layers=layers)


@app.command("train-rm")
@_friendly
def train_rm(
    pool: Annotated[Path, typer.Option(help="Labelled training pool.")],
    data: Annotated[Path, typer.Option(help="LaMP-layout data directory (profiles and inputs).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory for the model.")],
    dev_pool: Annotated[Optional[Path], typer.Option(help="Labelled dev pool for early stopping (default: hold out 20% of users).")] = None,
    variant: Annotated[str, typer.Option(help="global-mse | user-mse | user-pairwise | user-prob.")] = "user-prob",
    utility: Annotated[str, typer.Option(help="Utility column to learn.")] = "rougeL",
    beta: Annotated[float, typer.Option(help="β of β-NLL for user-prob (0 = plain NLL).")] = 0.0,
    hidden: Annotated[int, typer.Option(help="Hidden width.")] = 32,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
    split: Annotated[Optional[str], typer.Option(help="Split of --pool (default: detected).")] = None,
    dev_split: Annotated[Optional[str], typer.Option(help="Split of --dev-pool (default: detected).")] = None,
    encoder_layers: Annotated[Optional[int], typer.Option(help="Use the first L of MiniLM's 6 layers for the embedding features (default: all); 2 encodes 2-2.5x as fast with no measurable loss on the two real data sets; `ttpkit score` then uses 2 too.")] = None,
) -> None:
    """Train a personalized reward model on a labelled pool (CPU, minutes)."""
    from ttpkit.pool import read_pool
    from ttpkit.report import plot_training
    from ttpkit.reward.models import RewardModel, RMConfig

    _quiet_libraries()
    t0 = time.time()
    cfg = RMConfig(variant=variant, beta=beta, hidden=hidden, seed=seed, encoder_layers=encoder_layers)
    train = read_pool(pool)
    ds = _dataset_for_pool(data, train, split)
    dev = dev_ds = None
    if dev_pool is not None:
        dev = read_pool(dev_pool)
        dev_ds = _dataset_for_pool(data, dev, dev_split)
    enc = _encoder(layers=cfg.encoder_layers)
    with console.status(f"training {variant} on {len(train)} candidates ..."):
        rm = RewardModel(cfg).fit(train, ds.by_id(), dev, dev_ds.by_id() if dev_ds else None, encoder=enc, utility=utility)
    enc.save_cache()
    rm.save(out_dir)
    plot_training(rm.history_, out_dir / "training.png", title=variant)
    last = rm.history_[-1] if rm.history_ else {}
    console.print(f"saved {variant} to {out_dir} ({len(rm.history_)} logged steps, dev loss {last.get('dev_loss', float('nan')):.4f}) in {time.time() - t0:.0f} s")


@app.command()
@_friendly
def score(
    rm_dir: Annotated[Path, typer.Option("--rm", help="Reward model directory.")],
    pool: Annotated[Path, typer.Option(help="Pool to score in place.")],
    data: Annotated[Path, typer.Option(help="LaMP-layout data directory.")],
    name: Annotated[Optional[str], typer.Option(help="Column suffix (default: the variant).")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split of the pool (default: detected).")] = None,
    encoder_dtype: Annotated[str, typer.Option(help="float32, or bfloat16 (opt-in: 1.3-1.9x faster scoring on CPUs with native bf16; embeddings at cosine >= 0.9999 to float32).")] = "float32",
) -> None:
    """Add score_<name> (and std_<name> for user-prob) to a pool."""
    from ttpkit.pool import read_pool, write_pool
    from ttpkit.reward.models import RewardModel

    _quiet_libraries()
    rm = RewardModel.load(rm_dir)
    df = read_pool(pool)
    ds = _dataset_for_pool(data, df, split)
    enc = _encoder(encoder_dtype, rm.config.encoder_layers)  # the layers the RM was trained with
    with console.status(f"scoring {len(df)} candidates ..."):
        scores = rm.score(df, ds.by_id(), encoder=enc)
    enc.save_cache()
    col = name or rm.config.variant
    df[f"score_{col}"] = scores.mean
    if rm.config.probabilistic:
        df[f"std_{col}"] = scores.std
    write_pool(df, pool)
    console.print(f"added score_{col} to {pool} ({len(df)} candidates)")


@app.command()
@_friendly
def diagnose(
    pool: Annotated[Path, typer.Option(help="Labelled (and scored) pool.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Report directory.")],
    scorers: Annotated[str, typer.Option(help="Comma-separated scorers (oracle, random, style, RM columns, name@rule).")] = "oracle,random,style",
    utility: Annotated[str, typer.Option(help="Utility column.")] = "rougeL",
    m_fit: Annotated[int, typer.Option(help="Candidates per query the law is measured on.", min=2)] = 4,
    n_max: Annotated[int, typer.Option(help="Predict the curve up to this N.", min=2)] = 32,
    tau: Annotated[float, typer.Option(help="Collapse threshold (fraction of the global score spread).")] = 0.05,
    cost: Annotated[float, typer.Option(help="Cost of one sample (any unit).")] = 1.0,
    min_gain: Annotated[float, typer.Option(help="Stop doubling N when the gain per unit of cost falls below this.")] = 1e-3,
    data: Annotated[Optional[Path], typer.Option(help="Data directory, to show references of hacked queries.")] = None,
    split: Annotated[Optional[str], typer.Option(help="Split of the pool (default: detected).")] = None,
    seed: Annotated[int, typer.Option(help="Seed.")] = 0,
) -> None:
    """Fit the four-quantity law per scorer; find collapsed users and hacked queries; recommend N."""
    from ttpkit.pool import read_pool
    from ttpkit.report import write_diagnosis

    df = read_pool(pool)
    refs = None
    if data is not None:
        ds = _dataset_for_pool(data, df, split)
        refs = {q.id: q.reference or "" for q in ds.queries}
    names = [x.strip() for x in scorers.split(",") if x.strip()]
    law = write_diagnosis(df, names, out_dir, utility, m_fit, n_max, tau, refs, cost, min_gain, seed)
    from rich.table import Table

    table = Table(title=f"law fit on M_fit={m_fit} ({law['settings']['queries']} queries)")
    for col in ("scorer", "μ̄", "c", "σ̄", "ρ̄", "ρ_eff", "R² plain", "R² tail", "err plain", "err tail", "N*"):
        table.add_column(col, justify="right")
    for name, e in law["scorers"].items():
        q = e["quantities"]
        r2 = lambda f: "n/a" if e["r2"][f] != e["r2"][f] else f"{e['r2'][f]:.2f}"  # noqa: E731
        err = lambda f: f"{e['max_error_frac_of_oracle_gain'][f]:.0%}"  # noqa: E731
        table.add_row(name, f"{q['mu']:.3f}", f"{q['c']:.2f}", f"{q['sigma']:.3f}", f"{q['rho']:.3f}", f"{q['rho_eff']:.3f}",
                      r2("plain"), r2("tail"), err("plain"), err("tail"), str(e["compute"]["recommended_n"]))
    out.print(table)
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

    if (study is None) == (not quick):
        raise TtpkitError("give a study YAML file or --quick (not both)")
    _quiet_libraries()
    cfg = quick_study() if quick else StudyConfig.from_yaml(study)
    target = out_dir or Path("runs") / cfg.name
    t0 = time.time()
    with _progress() as bar:
        table = run_study(cfg, target, bar)
    cols = ["dataset", "policy", "scorer", *[c for c in table.columns if c.startswith("N=")], "frac_oracle_gain", "corr"]
    from rich.table import Table

    t = Table(title=f"study {cfg.name}: expected rougeL of best-of-N")
    for c in cols:
        t.add_column(c, justify="right")
    for _, row in table[cols].iterrows():
        t.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    out.print(t)
    console.print(f"wrote {target}/results.csv, results.md and plots in {time.time() - t0:.0f} s")


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------


@app.command()
@_friendly
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("ttpkit-demo"),
    n: Annotated[int, typer.Option(help="Candidates per query.", min=1)] = 8,
    seed: Annotated[int, typer.Option(help="Run seed.")] = 0,
) -> None:
    """Run the whole loop on the bundled sample with the embedded Gemma 3 270M.

    Samples N candidates for each of the 16 bundled git-commits queries, labels
    them with ROUGE, and prints best-of-N for random / style / oracle selection.
    """
    from ttpkit.data import bundled_sample_dir
    from ttpkit.report import curves_json, curves_table, plot_curves, write_json
    from ttpkit.scaling import curves as compute

    t0 = time.time()
    data = bundled_sample_dir()
    pool_path = out_dir / "pool.parquet"
    console.print(f"[bold]ttpkit demo[/]: Gemma 3 270M, N={n}, bundled git-commits sample ({data})")
    run_sample(data, "dev", n, pool_path, seed=seed)
    df = run_label(pool_path, data, "dev")
    ns = [x for x in (1, 2, 4, 8, 16, 32, 64) if x <= n]
    result = compute(df, ["random", "style", "oracle"], "rougeL", ns, seed=seed)
    out.print(curves_table(result, "rougeL"))
    write_json(curves_json(result), out_dir / "curves.json")
    plot_curves(result, out_dir / "curves.png", "rougeL", title=f"ttpkit demo: best-of-N, {result['oracle'].n_queries} queries")
    best = df.loc[df.groupby("query_id")["rougeL"].idxmax()].head(3)
    for _, row in best.iterrows():
        console.print(f"  best candidate for {row['query_id']}: [italic]{row['text']}[/] (rougeL {row['rougeL']:.2f})")
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

    _quiet_libraries()
    if backend == "openai":
        raise TtpkitError("serve needs a local backend: embedded, gguf or hf")
    policy = make_policy(backend, get_task(task), model=model)
    uvicorn.run(create_app(policy, model_name=policy.name), host=host, port=port)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
