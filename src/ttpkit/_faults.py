"""Fault injection for the kill tests (``tests/test_kill.py``): a process told to stop at a named point hangs there.

Points: ``fold`` (a pool file rewritten, its journal not yet removed), ``write``
(a temporary file written, not yet renamed), ``rm-save`` (a reward model's
weights written, its config not yet). With ``TTPKIT_FAULT`` unset,
:func:`fault_point` does nothing. ``TTPKIT_FAULT=<name>:<ERRNO>`` (``write:ENOSPC``,
``write:EROFS``) raises that ``OSError`` at the point instead, as a full or
read-only disk would (the bad-input corpus runs it through the real CLI).
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

__all__ = ["fault_point"]


def fault_point(name: str) -> None:
    """With ``TTPKIT_FAULT=<name>``, write ``$TTPKIT_FAULT_MARK`` and hang here (the test then kills the process).

    With ``TTPKIT_FAULT=<name>:<ERRNO>``, raise ``OSError(errno.<ERRNO>)`` here.
    """
    fault = os.environ.get("TTPKIT_FAULT")
    if fault == name:
        Path(os.environ.get("TTPKIT_FAULT_MARK", "ttpkit-fault")).write_text(name)
        time.sleep(3600)
    elif fault and fault.startswith(f"{name}:"):
        code = getattr(errno, fault.split(":", 1)[1])
        raise OSError(code, os.strerror(code))
