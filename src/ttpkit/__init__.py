"""ttpkit: test-time personalization of language models.

The pipeline, one module per stage: :mod:`ttpkit.data` -> :mod:`ttpkit.retrieval`
-> :mod:`ttpkit.policy` -> :mod:`ttpkit.pool` (the candidate pool and its schema)
-> :mod:`ttpkit.utility` -> :mod:`ttpkit.reward` -> :mod:`ttpkit.selection` ->
:mod:`ttpkit.scaling` -> :mod:`ttpkit.report`. :mod:`ttpkit.stages` runs each
stage once for every caller; :mod:`ttpkit.cli`, :mod:`ttpkit.bench` and
:mod:`ttpkit.serve` sit on top of it. Imports point from later stages to earlier
ones only.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ttpkit.data import Dataset, ProfileItem, Query, TaskSpec, load_split
from ttpkit.errors import DataError, TtpkitError

__all__ = ["DataError", "Dataset", "ProfileItem", "Query", "TaskSpec", "TtpkitError", "__version__", "load_split"]
