"""The feedback loop's stage: logged personalize requests, with the text each user kept, as a labelled pool.

The service (:mod:`ttpkit.serve`, with ``--log-requests``) keeps each answer
and its scored candidates as a :class:`LoggedRequest`, and ``POST
/v1/feedback`` adds the text the user finally kept. :func:`export_feedback`
turns such requests into what the offline stages read: a LaMP split (each
request a query: its input, its user and the profile it was answered with; the
feedback text its gold) and a pool labelled with ROUGE against the feedback,
ready for ``ttpkit train-rm`` and ``ttpkit diagnose``. ``ttpkit export-pool``
runs it over the profile store's logged requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ttpkit import jsonio
from ttpkit.data import get_task, load_split
from ttpkit.errors import DataError
from ttpkit.manifest import stamp
from ttpkit.pool import POOL_COLUMNS, write_pool
from ttpkit.utility import add_labels

__all__ = ["LoggedRequest", "export_feedback"]


@dataclass(frozen=True)
class LoggedRequest:
    """One logged personalize request with its scored candidates and, once given, the feedback text."""

    id: str
    user_id: str
    task: str
    input: str
    profile: tuple[dict, ...]
    candidates: tuple[dict, ...]
    chosen: int
    seed: int
    feedback: str | None = None


def export_feedback(logged: Iterable[LoggedRequest], out: str | Path, data_dir: str | Path, task: str | None = None,
                    where: str = "the logged requests", manifest: dict | None = None) -> tuple[int, int]:
    """Requests with feedback as a labelled pool (utility: ROUGE against the feedback text) and its data split.

    Writes ``data_dir/train_questions.json`` and ``train_outputs.json`` and the
    pool ``out``. Returns ``(queries, candidates)``.

    Args:
        logged: Logged requests, each with its feedback text.
        out: The pool to write.
        data_dir: Directory for the pool's split.
        task: The task to export (needed when several are logged).
        where: Where the requests come from, for error messages (the store's URL).
        manifest: More fields for the pool's manifest (the store it came from).

    Raises:
        DataError: If no request has feedback, or requests of several tasks are given and ``task`` is None.
    """
    logged = list(logged)
    tasks = sorted({r.task for r in logged})
    if task is None and len(tasks) > 1:
        raise DataError(f"{where}: requests of several tasks are logged ({', '.join(tasks)}); pick one with --task")
    logged = [r for r in logged if r.task == (task or (tasks[0] if tasks else None))]
    if not logged:
        raise DataError(f"{where}: no logged request{' of task ' + task if task else ''} has feedback to learn from "
                        "(serve with --log-requests, then POST /v1/feedback)")
    spec = get_task(logged[0].task)
    questions = [{"id": r.id, "user_id": r.user_id, "input": spec.full_input(r.input), "profile": list(r.profile)}
                 for r in logged]
    golds = {"task": spec.name, "golds": [{"id": r.id, "output": r.feedback} for r in logged]}
    directory = Path(data_dir)
    jsonio.write_json(questions, directory / "train_questions.json", indent=None, ensure_ascii=False)
    jsonio.write_json(golds, directory / "train_outputs.json", indent=None, ensure_ascii=False)
    rows = [(r.id, r.user_id, int(c["idx"]), c["text"], "served", r.seed) for r in logged for c in r.candidates]
    pool = add_labels(pd.DataFrame(rows, columns=list(POOL_COLUMNS)), load_split(directory, "train", spec).by_id())
    write_pool(pool, out, stamp("pool", {"source": "export-pool", "task": spec.name, "split": "train",
                                         "data": str(directory), **(manifest or {})}))
    return len(logged), len(pool)
