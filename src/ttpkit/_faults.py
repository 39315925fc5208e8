"""Fault injection for the kill tests (``tests/test_kill.py``): a process told to stop at a named point hangs there.

Points: ``fold`` (a pool file rewritten, its journal not yet removed), ``write``
(a temporary file written, not yet renamed), ``rm-save`` (a reward model's
weights written, its config not yet). With ``TTPKIT_FAULT`` unset,
:func:`fault_point` does nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["fault_point"]


def fault_point(name: str) -> None:
    """With ``TTPKIT_FAULT=<name>``, write ``$TTPKIT_FAULT_MARK`` and hang here (the test then kills the process)."""
    if os.environ.get("TTPKIT_FAULT") == name:
        Path(os.environ.get("TTPKIT_FAULT_MARK", "ttpkit-fault")).write_text(name)
        time.sleep(3600)
