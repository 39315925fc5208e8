"""The ``sample`` command: M candidates per query from a personalized policy into a pool, here or on Ray.

A module of its own (:mod:`ttpkit.cli._pools` holds the commands that read a
pool), imported just before it, so ``--help`` lists the commands in the same order.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ttpkit.cli._common import (
    ActorCpus,
    ActorGpus,
    Actors,
    Address,
    BaseUrl,
    Backend,
    DataDir,
    Device,
    Dtype,
    MAX_M,
    MAX_NEW_TOKENS,
    MAX_QUERIES,
    EngineKind,
    Model,
    ProfileK,
    Seed,
    TaskFile,
    TaskName,
    app,
    console,
    deprecated,
    engine_option,
    friendly,
    progress,
    quiet_libraries,
)
from ttpkit.errors import ConfigError
from ttpkit.policy.base import SHIPPED

__all__ = ["sample"]


@app.command()
@friendly
def sample(
    data: DataDir,
    out_path: Annotated[Path, typer.Option("--out", help="Pool to write, resumed if it exists: a name ending in .parquet is one file; any other name is a directory of append-only part files (pool/).")],
    split: Annotated[str, typer.Option(help="Split to sample.")] = "test",
    m: Annotated[int, typer.Option("--m", help="Candidates per query (M).", min=1, max=MAX_M)] = 16,
    limit: Annotated[Optional[int], typer.Option(help="Only the first Q queries (after --offset).", min=1, max=MAX_QUERIES)] = None,
    offset: Annotated[int, typer.Option(help="Skip the first queries of the split (to add a range to a pool).", min=0, max=MAX_QUERIES)] = 0,
    backend: Backend = "embedded",
    model: Model = None,
    base_url: BaseUrl = None,
    task: TaskName = None,
    task_file: TaskFile = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature; 0 is greedy decoding (argmax). Default: ttpkit's shipped sampler (policy.base.SHIPPED).")] = SHIPPED.temperature,
    top_p: Annotated[float, typer.Option(help="Nucleus mass.")] = SHIPPED.top_p,
    max_new_tokens: Annotated[Optional[int], typer.Option(help="Token limit per candidate (default: the task's, 32 for one-line tasks, 192 for multi-line ones).", min=1, max=MAX_NEW_TOKENS)] = None,
    k: ProfileK = 4,
    seed: Seed = 0,
    greedy: Annotated[bool, typer.Option("--greedy/--no-greedy", help="Also decode each query greedily (temperature 0), as one more candidate marked in the pool's 'greedy' column: the baseline best-of-N is compared with, and one of the N candidates personalize chooses from. Default: the shipped sampler's.")] = SHIPPED.greedy,
    int8: Annotated[bool, typer.Option(help="Opt-in int8 dynamic quantization of a local model (faster; changes samples).")] = False,
    force_new: Annotated[bool, typer.Option("--force-new", help="Start --out over instead of resuming it (a pool made with other settings is otherwise refused).")] = False,
    device: Device = "cpu",
    engine: EngineKind = "local",
    address: Address = "auto",
    actors: Actors = 2,
    actor_cpus: ActorCpus = 1.0,
    actor_gpus: ActorGpus = None,
    dtype: Dtype = None,
    n_old: Annotated[Optional[int], typer.Option("--n", hidden=True, min=1, max=MAX_M)] = None,
) -> None:
    """Sample M candidates per query from a personalized policy into a pool file (or directory), here or on Ray."""
    from ttpkit.data import load_split, resolve_task
    from ttpkit.device import resolve_device
    from ttpkit.policy import PolicySpec
    from ttpkit.task import DEFAULT_MAX_NEW_TOKENS

    t0 = time.time()
    m = deprecated(m, n_old, "--n", "--m")
    eng = engine_option(engine, address, actors, actor_cpus, actor_gpus)
    remote = eng.kind == "ray" and device == "cuda"  # GPU actors: CUDA is checked where the model loads, not on this driver
    decoding = {"temperature": temperature, "top_p": top_p, "k": k, "int8": int8, "device": "cuda" if remote else resolve_device(device), "dtype": dtype, "greedy": greedy}
    PolicySpec.from_options(backend, model, base_url, max_new_tokens=max_new_tokens or DEFAULT_MAX_NEW_TOKENS, **decoding).check(device_here=not remote)
    quiet_libraries(backend)
    ds = load_split(data, split, resolve_task(task, task_file))
    spec = PolicySpec.from_options(backend, model, base_url, max_new_tokens=max_new_tokens or ds.task.max_new_tokens or DEFAULT_MAX_NEW_TOKENS, **decoding)
    queries = _query_range(ds, split, offset, limit)
    manifest = _check_out(out_path, spec, ds, queries, m, seed, force_new)
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


def _check_out(out_path: Path, spec: Any, ds: Any, queries: list, m: int, seed: int, force_new: bool) -> dict:
    """The run's manifest, once all that needs no model is checked, before it loads and before any progress is drawn.

    Refused here: a directory that is no pool or an unwritable place; (unless ``--force-new``) a pool made with
    other settings (another seed, M, model or ``--data``); and what a server answers to one probe request with
    the run's token limit (HTML, ``choices`` that is no list, a ``max_tokens`` it refuses;
    :meth:`~ttpkit.policy.PolicySpec.probe`), unless the pool holds every query already.
    """
    from ttpkit import stages
    from ttpkit.manifest import check_resume
    from ttpkit.pool import complete_queries, existing_pool, pool_manifest, pool_writer

    manifest = stages.sampling_manifest(spec, ds, m, seed)
    pool_writer(out_path)
    existing = None if force_new else existing_pool(out_path)
    if not force_new:
        check_resume(out_path, pool_manifest(existing), manifest)
    if existing is None or not {q.id for q in queries} <= complete_queries(existing, m):
        spec.probe(ds.task, seed)
    return manifest
