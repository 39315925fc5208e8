"""Runs bad-input cases through ``ttpkit.cli.main`` in one process (imports paid once, not once per case).

Reads ``[{"id", "argv", "cwd"}, ...]`` as JSON on stdin and writes
``{id: {"returncode", "stdout", "stderr"}}`` as JSON on stdout. Each case gets
fresh ``sys.argv``, working directory and standard streams; an exception that
escapes ``main`` is written into the case's stderr with its traceback, so the
test sees it exactly as it would from a separate process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import traceback


def _one(argv: list[str], cwd: str) -> dict:
    from ttpkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: object = 0
    os.chdir(cwd)
    sys.argv = ["ttpkit", *argv]
    sys.stdin = io.StringIO("")
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as e:
            code = e.code
        except BaseException:  # noqa: BLE001 - a traceback is what the test must see
            traceback.print_exc()
            code = 1
    code = code if isinstance(code, int) else (0 if code is None else 1)
    return {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "cwd": cwd}


def run() -> None:
    cases = json.loads(sys.stdin.read())
    real_stdout = sys.stdout
    results = {c["id"]: _one(c["argv"], c["cwd"]) for c in cases}
    real_stdout.write(json.dumps(results))


if __name__ == "__main__":
    run()
