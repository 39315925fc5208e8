"""The commands that run a whole job: ``bench``, ``personalize``, ``demo`` (``serve``: :mod:`ttpkit.cli._service`).

Each is a thin floor over one library call: :mod:`ttpkit.studies` (bench and
demo), :func:`ttpkit.online.personalize`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ttpkit import jsonio
from ttpkit.cli._common import (
    MAX_M,
    MAX_PERSONALIZE_N,
    ActorCpus,
    ActorGpus,
    Actors,
    Address,
    BaseUrl,
    Backend,
    Device,
    EngineKind,
    Dtype,
    Model,
    ProfileK,
    Seed,
    TaskFile,
    app,
    console,
    deprecated,
    engine_option,
    friendly,
    out,
    progress,
    quiet_libraries,
    unicode_stdout,
)
from ttpkit.errors import ConfigError


@app.command()
@friendly
def bench(
    study: Annotated[Optional[Path], typer.Argument(help="Study YAML (see studies/paper.yaml; `kind: failures` for studies/failures.yaml).")] = None,
    quick: Annotated[bool, typer.Option(help="Run the small smoke study on the bundled sample instead.")] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Results directory (default: runs/<study name>).")] = None,
    engine: EngineKind = "local",
    address: Address = "auto",
    actors: Actors = 2,
    actor_cpus: ActorCpus = 1.0,
    actor_gpus: ActorGpus = None,
) -> None:
    """Run a whole study (sample, label, train RMs, score, curves, law) from YAML; reruns resume; --engine ray samples and scores on Ray."""
    from ttpkit import report
    from ttpkit.paths import check_writable
    from ttpkit.studies import KINDS, load_study

    if (study is None) == (not quick):
        raise ConfigError("give a study YAML file or --quick (not both)")
    eng = engine_option(engine, address, actors, actor_cpus, actor_gpus)
    if quick:
        from ttpkit.studies.paper import quick_study

        kind, cfg = KINDS["paper"], quick_study()
    else:
        kind, cfg = load_study(study)
    cfg.check_models()
    quiet_libraries()
    target = check_writable(out_dir or Path("runs") / cfg.name, "--out", directory=True)  # before the progress display
    t0 = time.time()
    with progress() as bar:
        table = kind.load("run")(cfg, target, bar, engine=eng)
    for t in getattr(report, kind.tables)(table):
        out.print(t)
    console.print(f"wrote {target}/{kind.wrote} and plots in {time.time() - t0:.0f} s")


@app.command()
@friendly
def personalize(
    profile: Annotated[Path, typer.Option(help="JSON list of the user's profile items, or a LaMP questions file with --user.")],
    text: Annotated[str, typer.Option("--input", help="The new input (a commit message, a package description...).")],
    user: Annotated[Optional[str], typer.Option(help="User id to pick from a LaMP questions file.")] = None,
    task: Annotated[str, typer.Option("--task", help="Task name.")] = "git-commits",
    task_file: TaskFile = None,
    rm: Annotated[str, typer.Option(help="'default' (the task's bundled model chosen by cross-validation: user-prob for git-commits and debian-synopsis, the task-agnostic user-pairwise for other tasks), 'default:<variant>', or a model directory.")] = "default",
    n: Annotated[int, typer.Option("--n", help="Candidates to draw (N of best-of-N).", min=1, max=MAX_PERSONALIZE_N)] = 16,
    adaptive: Annotated[bool, typer.Option(help="Sample in rounds of 4 and stop when the next round's expected gain is small.")] = False,
    max_n: Annotated[int, typer.Option(help="Most candidates --adaptive may draw.", min=1, max=MAX_PERSONALIZE_N)] = 32,
    min_round_gain: Annotated[float, typer.Option("--min-round-gain", help="--adaptive stops below this expected gain per round (in RM score stds).")] = 0.05,
    rule: Annotated[str, typer.Option(help="mean | lcb:κ | ucb:κ | thompson (all but mean need a user-prob RM).")] = "mean",
    backend: Backend = "embedded",
    model: Model = None,
    base_url: BaseUrl = None,
    k: ProfileK = 4,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON record instead of the text and table.")] = False,
    seed: Seed = 0,
    device: Device = "cpu",
    dtype: Dtype = None,
    min_gain_old: Annotated[Optional[float], typer.Option("--min-gain", hidden=True)] = None,
) -> None:
    """Personalize one new input: sample N candidates, score them with a personalized RM, print the best."""
    from ttpkit.data import read_profile, resolve_task
    from ttpkit.device import resolve_device
    from ttpkit.online import Schedule, check_request, check_rm
    from ttpkit.online import personalize as run
    from ttpkit.policy import SHIPPED, PolicySpec
    from ttpkit.task import DEFAULT_MAX_NEW_TOKENS

    min_round_gain = deprecated(min_round_gain, min_gain_old, "--min-gain", "--min-round-gain")
    check_request(rule, Schedule(n, adaptive, max_n), text, user)  # the rule, N, the input: before any model loads
    spec = resolve_task(task if task_file is None else None, task_file)
    pol = PolicySpec.from_options(backend, model, base_url, k=k, max_new_tokens=spec.max_new_tokens or DEFAULT_MAX_NEW_TOKENS,
                                  device=resolve_device(device), dtype=dtype, temperature=SHIPPED.temperature,
                                  top_p=SHIPPED.top_p, greedy=SHIPPED.greedy)  # the shipped sampler, as ttpkit.personalize's
    pol.check()
    items = read_profile(profile, user)
    check_rm(rm, spec)  # its config and card, before the status display and any model load
    pol.probe(spec, seed)  # a server's answer to one request (HTML, no choices list, a max_tokens it refuses)
    quiet_libraries(backend)
    with console.status(f"sampling and scoring {'adaptively, up to ' + str(max_n) if adaptive else n} candidates ..."):
        res = run(items, text, task=spec, rm=rm, n=n, rule=rule, policy=pol, seed=seed, adaptive=adaptive, max_n=max_n,
                  min_round_gain=min_round_gain, user_id=user)
    for w in res.warnings:
        console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    if as_json:
        print(jsonio.dumps(res.as_dict(), indent=2, ensure_ascii=not unicode_stdout()))  # valid JSON on any terminal
    else:
        _print_personalized(res)


def _print_personalized(res: Any) -> None:
    """The answer on stdout, then the candidates' table; the law's expectation and the run's cost on stderr."""
    from ttpkit.report import personalized_notes, personalized_table

    print(res.text)
    out.print(personalized_table(res))
    for note in personalized_notes(res):
        console.print(note, soft_wrap=True)


@app.command()
@friendly
def demo(
    out_dir: Annotated[Path, typer.Option("--out", help="Output directory.")] = Path("ttpkit-demo"),
    m: Annotated[int, typer.Option("--m", help="Candidates per query (M).", min=1, max=MAX_M)] = 8,
    seed: Seed = 0,
    n_old: Annotated[Optional[int], typer.Option("--n", hidden=True, min=1, max=MAX_M)] = None,
) -> None:
    """Run the whole loop on the bundled sample with the embedded Gemma 3 270M.

    Samples M candidates for each of the 16 bundled git-commits queries, labels
    them with ROUGE, scores them with the bundled default reward model, and
    prints best-of-N for random / style / the RM / oracle selection, and each
    against the greedy answer.
    """
    from ttpkit.paths import check_writable
    from ttpkit.report import curves_table, demo_example_lines, greedy_table
    from ttpkit.studies.demo import demo_data, run_demo

    t0 = time.time()
    m = deprecated(m, n_old, "--n", "--m")
    check_writable(out_dir, "--out", directory=True)
    quiet_libraries("embedded")
    console.print(f"[bold]ttpkit demo[/]: Gemma 3 270M, M={m}, bundled git-commits sample ({demo_data().path})")
    with progress() as bar:
        res = run_demo(out_dir, m, seed, bar)
    out.print(curves_table(res.curves, "rougeL"))
    out.print(greedy_table(res.greedy, "rougeL"))
    for line in demo_example_lines(res.example, res.data.by_id()):
        console.print(line, soft_wrap=True, highlight=False)
    console.print(f"wrote {out_dir}/pool.parquet, curves.json, curves.png in {time.time() - t0:.0f} s")
