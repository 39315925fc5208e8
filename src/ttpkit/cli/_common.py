"""What every command shares: the app, the two consoles, one-line errors, progress bars, shared options.

Nothing heavy is imported here, so ``ttpkit --help`` is instant.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import io
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer
from rich.console import Console

from ttpkit.errors import ConfigError, TtpkitError
from ttpkit.paths import cache_dir, check_cache_dir, describe_os_error, is_disk_error
from ttpkit.task import MAX_NEW_TOKENS
from ttpkit.text import check_text

__all__ = ["app", "check_model_cache", "console", "deprecated", "engine_option", "friendly", "ints", "out", "progress",
           "quiet_libraries", "setup_streams", "unicode_stdout"]

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Test-time personalization: sample N personalized candidates, score them, pick the best.",
)
console = Console(stderr=True)  # notes, warnings, errors and progress
out = Console()  # results


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Report ttpkit errors as one red line and exit code 2, without a traceback.

    Before the command runs, every text option is checked (:func:`ttpkit.text.check_text`: argv bytes that are
    not UTF-8 are refused, naming the option; paths are not text and may hold any bytes). An ``OSError`` of
    the place written to (a full disk, a read-only place) that no write site named is one line too.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            _check_text_options(kwargs)
            return fn(*args, **kwargs)
        except TtpkitError as e:
            _error_line(str(e))
        except OSError as e:
            if not is_disk_error(e):
                raise
            _error_line(_disk_message(e))

    return wrapper


def _error_line(message: str) -> None:
    from rich.markup import escape  # the message is text, never markup or :emoji: codes ("reg:x:")

    console.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True, highlight=False, emoji=False)
    raise typer.Exit(2) from None


def _check_text_options(kwargs: dict[str, Any]) -> None:
    """Refuse a text option (a ``str``, or a list of them) that is not valid Unicode, naming the option."""
    for name, value in kwargs.items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            if isinstance(v, str):
                check_text(v, _flag(name), ConfigError)


def _flag(name: str) -> str:
    """The option's spelling (``--input`` for the parameter ``text``) from the running command, else ``--name``."""
    try:
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - older typer uses click itself
        from click import get_current_context
    ctx = get_current_context(silent=True)
    for param in getattr(getattr(ctx, "command", None), "params", []):
        if param.name == name and param.opts:
            return max(param.opts, key=len)
    return "--" + name.replace("_", "-")


def _disk_message(e: OSError) -> str:
    """One line for an unnamed ``OSError`` of the place written to: the file, what happened, and the cache if it is there."""
    where = f"{e.filename}: " if e.filename else ""
    hint = ""
    if e.filename:
        with contextlib.suppress(ValueError, OSError):
            Path(os.fsdecode(e.filename)).resolve().relative_to(cache_dir().resolve())
            hint = f" (in ttpkit's cache {cache_dir()}; set TTPKIT_CACHE_DIR to a writable directory with room)"
    return f"{where}{describe_os_error(e)}{hint}"


def check_model_cache(backend: str) -> None:
    """For a backend that caches converted models (``caches_models`` in its table row), refuse a cache root that cannot be a directory."""
    from ttpkit.policy.backends import BACKENDS  # the backends' modules stay out of ``ttpkit --help``

    row = BACKENDS.get(backend)
    if row is not None and row.caches_models:
        check_cache_dir()


# what an ASCII (or other narrow) terminal shows for the characters ttpkit prints itself; anything else is escaped
_ASCII = {"±": "+/-", "—": "--", "–": "-", "…": "...", "σ": "sigma", "ρ": "rho", "κ": "kappa", "τ": "tau", "²": "^2",
          "×": "x", "≥": ">=", "≤": "<=", "≈": "~", "→": "->", "◀": "<", "‘": "'", "’": "'", "“": '"', "”": '"', "─": "-",
          "━": "=", "│": "|", "•": "*", "✓": "ok"}


def _narrow(e: UnicodeError) -> tuple[str, int]:
    """Codec error handler ``ttpkit``: ASCII spellings of ttpkit's own symbols, backslash escapes for the rest."""
    if not isinstance(e, UnicodeEncodeError):
        raise e
    bad = e.object[e.start:e.end]
    return "".join(_ASCII.get(ch) or ch.encode("ascii", "backslashreplace").decode() for ch in bad), e.end


def setup_streams() -> None:
    """Let stdout and stderr print any text: what their encoding lacks (``PYTHONIOENCODING=ascii``, a C locale) is
    spelled in ASCII (``±`` as ``+/-``) or escaped (``\\xe9``, argv bytes as ``\\udcff``) instead of crashing."""
    codecs.register_error("ttpkit", _narrow)
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="ttpkit")


def unicode_stdout() -> bool:
    """Whether stdout encodes all of Unicode (UTF-8 or UTF-16/32); else JSON on it must be written ASCII-only."""
    return (getattr(sys.stdout, "encoding", None) or "").lower().replace("-", "").startswith("utf")


def quiet_libraries(backend: str | None = None) -> None:
    """Offline model loading (``HF_HUB_OFFLINE=1``), no library warnings or progress bars, and a usable cache root.

    Args:
        backend: The policy backend about to load; one that caches converted models checks the cache root
            first (:func:`check_model_cache`).
    """
    if backend is not None:
        check_model_cache(backend)
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


class RichProgress:
    """:class:`ttpkit.stages.Progress` drawn as rich progress bars, with notes as lines above them."""

    def __init__(self, bar: Any) -> None:
        self.bar = bar
        self.task: Any = None

    def start(self, label: str, total: int, done: int = 0) -> None:  # noqa: D102
        self.task = self.bar.add_task(label, total=total, completed=done)

    def advance(self, steps: int = 1) -> None:  # noqa: D102
        if self.task is not None:
            self.bar.advance(self.task, steps)

    def note(self, message: str) -> None:  # noqa: D102
        self.bar.console.print(message)  # a plain line: stage notes survive in non-terminal logs


@contextlib.contextmanager
def progress() -> Iterator[RichProgress]:
    """Rich progress bars on stderr for the duration of the block."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        yield RichProgress(bar)


def ints(text: str, what: str, most: int | None = None) -> list[int]:
    """Comma-separated positive integers of at most ``most`` (default :data:`MAX_CURVE_N`; ``--ns 1,2,4``)."""
    most = most or MAX_CURVE_N
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise ConfigError(f"{what} must be positive integers, got {text!r}")
    if max(values) > most:
        raise ConfigError(f"{what} must be integers in 1..{most}, got {max(values)}")
    return values


def deprecated(value: Any, old: Any, old_flag: str, new_flag: str) -> Any:
    """``old`` (with a warning) if the deprecated flag was given, else ``value``."""
    if old is None:
        return value
    console.print(f"[yellow]warning:[/] {old_flag} is deprecated and will be removed; use {new_flag}", soft_wrap=True)
    return old


def engine_option(kind: str, address: str, actors: int, actor_cpus: float, actor_gpus: float | None) -> Any:
    """The :class:`ttpkit.engine.Engine` of the engine flags, checked (known kind, Ray installed) before any model loads."""
    from ttpkit.engine import Engine

    return Engine(kind, address=address, num_actors=actors, num_cpus=actor_cpus, num_gpus=actor_gpus).check()


# options several commands share
DataDir = Annotated[Path, typer.Option("--data", help="LaMP-layout data directory.")]
TaskName = Annotated[Optional[str], typer.Option("--task", help="Task name; default from the data.")]
TaskFile = Annotated[Optional[Path], typer.Option("--task-file", help="YAML/JSON task declaration (name, source_field, target_field, source_label, target_label, instruction).")]
PoolSplit = Annotated[Optional[str], typer.Option("--split", help="Split of the pool (default: detected).")]
MAX_SEED = 2**63 - 1  # ttpkit.policy.base.MAX_SEED (not imported: this module stays light)
# Every integer option has an upper bound the CLI states ("… is not in the range 1<=x<=100000"), far above any real
# run: a larger value would reach numpy or torch as an integer no C type holds (issue 31; tests/test_cli.py checks
# that no integer option lacks one).
MAX_M = 100_000  # candidates per query (sample and bench --m)
MAX_QUERIES = 10**9  # --limit, --offset
MAX_K = 1_000  # retrieved profile items per prompt
MAX_PERSONALIZE_N = 256  # ttpkit.online.MAX_N: candidates one personalization draws
MAX_CURVE_N = 2**20  # the largest N of a curve or a law's prediction (--ns, diagnose --max-n and --m-fit)
Seed = Annotated[int, typer.Option("--seed", help="Seed (0 to 2**63-1).", min=0, max=MAX_SEED)]
Utility = Annotated[str, typer.Option("--utility", help="Utility column: rougeL | rouge1 | rougeLsum (multi-line outputs).")]
Backend = Annotated[str, typer.Option(help="embedded | gguf | hf | openai | vllm (pip install 'ttpkit[vllm]').")]
Model = Annotated[Optional[str], typer.Option(help="GGUF file (gguf), model dir (hf), served name (openai); for vllm a model dir, a GGUF file or 'embedded'.")]
BaseUrl = Annotated[Optional[str], typer.Option(help="OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1.")]
ProfileK = Annotated[int, typer.Option(help="Retrieved profile items per prompt (0 = zero-shot).", min=0, max=MAX_K)]
Device = Annotated[str, typer.Option("--device", help="auto | cpu | cuda: where local models run (auto: CUDA when torch sees one; bf16 there).")]
EngineKind = Annotated[str, typer.Option("--engine", help="local | ray: run here, or on Ray actors that each load the model once (pip install 'ttpkit[ray]').")]
Address = Annotated[str, typer.Option("--address", help="Ray cluster for --engine ray: auto (RAY_ADDRESS, or a cluster `ray start` began on this machine, else a new local one), host:port or ray://host:port.")]
Actors = Annotated[int, typer.Option("--actors", help="Ray actors for --engine ray (each loads the model once).", min=1, max=10_000)]
ActorCpus = Annotated[float, typer.Option("--actor-cpus", help="CPUs each Ray actor reserves; also its torch threads.", min=0.01)]
ActorGpus = Annotated[Optional[float], typer.Option("--actor-gpus", help="GPUs each Ray actor reserves (default: 1 with --device cuda, else 0).", min=0)]
Dtype = Annotated[Optional[str], typer.Option("--dtype", help="float32 | bfloat16 | auto: precision of a local (or vllm) policy; bfloat16 changes samples (auto: bf16 on CUDA and on CPUs with AVX512-BF16/AMX; default: bf16 on CUDA and, for ttpkit's sampler, on CPUs with native bf16; else float32).")]


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False) -> None:
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
