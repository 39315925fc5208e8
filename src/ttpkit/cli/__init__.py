"""The ``ttpkit`` command line. Heavy libraries are imported inside commands so ``--help`` is instant.

- :mod:`ttpkit.cli._common`: the app, consoles, one-line errors, progress bars, shared options.
- :mod:`ttpkit.cli._sample`: ``sample``.
- :mod:`ttpkit.cli._pools`: ``label``, ``curves``, ``train-rm``, ``score``, ``diagnose``.
- :mod:`ttpkit.cli._apps`: ``bench``, ``personalize``, ``demo``.
- :mod:`ttpkit.cli._service`: ``serve`` (the HTTP service) and ``export-pool`` (its feedback loop).
"""

from __future__ import annotations

import sys

import typer

from ttpkit.cli import _apps, _sample, _pools, _service  # noqa: F401  (they register the commands, in the order --help lists them)
from ttpkit.cli._common import app, console, setup_streams

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point: a bad option or value is one line on stderr and exit code 2.

    The standard streams are set up first (:func:`~ttpkit.cli._common.setup_streams`), so no text a stream's
    encoding lacks can crash a command: ``PYTHONIOENCODING=ascii ttpkit curves`` prints ``+/-`` for ``±``.
    """
    from rich.markup import escape

    setup_streams()

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
        console.print(f"[bold red]error:[/] {escape(message)}{hint}", soft_wrap=True, highlight=False, emoji=False)
        code = 2
    except click.ClickException as e:
        console.print(f"[bold red]error:[/] {escape(e.format_message())}", soft_wrap=True, highlight=False, emoji=False)
        code = e.exit_code
    except typer.Abort:
        console.print("aborted", highlight=False)
        code = 130
    sys.exit(code if isinstance(code, int) else 0)
