"""ttpkit: test-time personalization of language models.

The pipeline, one module per stage: :mod:`ttpkit.data` -> :mod:`ttpkit.retrieval`
-> :mod:`ttpkit.policy` -> :mod:`ttpkit.pool` (the candidate pool and its schema)
-> :mod:`ttpkit.utility` -> :mod:`ttpkit.reward` -> :mod:`ttpkit.selection` ->
:mod:`ttpkit.scaling` -> :mod:`ttpkit.report`. :mod:`ttpkit.stages` runs each
stage once for every caller; :mod:`ttpkit.studies` (YAML studies of every kind, one
runner), :func:`ttpkit.personalize` (:mod:`ttpkit.online`: one query in, the chosen
answer out), :mod:`ttpkit.cli` and :mod:`ttpkit.serve` sit on top of it. Imports point
from later stages to earlier ones only.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ttpkit.data import Dataset, ProfileItem, Query, TaskSpec, load_split
from ttpkit.errors import DataError, TtpkitError

__all__ = ["DataError", "Dataset", "Personalized", "ProfileItem", "Query", "TaskSpec", "TtpkitError", "__version__",
           "load_split", "personalize"]


def __getattr__(name: str):  # ttpkit.online loads pandas; import it only when asked (keeps `ttpkit --help` instant)
    if name in ("personalize", "Personalized"):
        from ttpkit import online

        return getattr(online, name)
    raise AttributeError(f"module 'ttpkit' has no attribute {name!r}")
