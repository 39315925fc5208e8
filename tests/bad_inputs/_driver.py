"""Runs bad-input cases through ``ttpkit.cli.main`` in one process (imports paid once, not once per case).

Reads ``[{"id", "argv", "cwd", "env"?}, ...]`` as JSON on stdin and writes
``{id: {"returncode", "stdout", "stderr"}}`` as JSON on stdout. Each case gets
fresh ``sys.argv``, working directory and standard streams, and its ``env``
variables for its run only (``TTPKIT_CACHE_DIR``, ``TTPKIT_FAULT``); an exception that
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


def _one(argv: list[str], cwd: str, env: dict[str, str] | None = None) -> dict:
    from ttpkit.cli import main

    out, err = io.StringIO(), io.StringIO()
    code: object = 0
    os.chdir(cwd)
    sys.argv = ["ttpkit", *argv]
    sys.stdin = io.StringIO("")
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as e:
            code = e.code
        except BaseException:  # noqa: BLE001 - a traceback is what the test must see
            traceback.print_exc()
            code = 1
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    code = code if isinstance(code, int) else (0 if code is None else 1)
    return {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "cwd": cwd}


def run() -> None:
    cases = json.loads(sys.stdin.read())
    real_stdout = sys.stdout
    results = {c["id"]: _one(c["argv"], c["cwd"], c.get("env")) for c in cases}
    real_stdout.write(json.dumps(results))


if __name__ == "__main__":
    run()
