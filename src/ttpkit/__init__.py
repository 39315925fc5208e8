"""ttpkit: test-time personalization of language models.

The pipeline, one module per stage: :mod:`ttpkit.data` -> :mod:`ttpkit.retrieval`
-> :mod:`ttpkit.policy` -> :mod:`ttpkit.utility` -> :mod:`ttpkit.reward` ->
:mod:`ttpkit.selection` -> :mod:`ttpkit.scaling` -> :mod:`ttpkit.report`, with
:mod:`ttpkit.cli` on top.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ttpkit.data import Dataset, ProfileItem, Query, TaskSpec, load_split
from ttpkit.errors import DataError, TtpkitError

__all__ = ["DataError", "Dataset", "ProfileItem", "Query", "TaskSpec", "TtpkitError", "__version__", "load_split"]
