"""LaMP-layout data: task specs, frozen records and a loader with precise errors.

A split lives in a directory as ``{split}_questions.json`` (a list of
``{id, input, profile: [...], user_id?}``) and, optionally,
``{split}_outputs.json`` (``{task, golds: [{id, output}]}``); either file may be
gzipped (``.json.gz``). A :class:`TaskSpec` says which profile fields hold the
source and the target of the user's past work, and how to label them in prompts.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttpkit.errors import DataError

__all__ = [
    "TASKS",
    "Dataset",
    "ProfileItem",
    "Query",
    "TaskSpec",
    "bundled_sample_dir",
    "get_task",
    "load_split",
]


@dataclass(frozen=True)
class TaskSpec:
    """How one personalized-generation task maps onto the LaMP layout.

    Attributes:
        name: Registry name (``LaMP-4``, ``git-commits``, ...).
        source_field: Profile field holding the input side of a past item.
        target_field: Profile field holding what the user wrote for it.
        source_label: Prompt label for the source (``Commit message``).
        target_label: Prompt label for the target (``Subject line``).
    """

    name: str
    source_field: str
    target_field: str
    source_label: str
    target_label: str


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("LaMP-4", "text", "title", "Article", "Headline"),
        TaskSpec("LaMP-5", "abstract", "title", "Abstract", "Title"),
        TaskSpec("LongLaMP-abstract", "title", "abstract", "Title", "Abstract"),
        TaskSpec("LongLaMP-topic", "summary", "content", "Summary", "Post"),
        TaskSpec("LongLaMP-review", "summary", "reviewText", "Summary", "Review"),
        TaskSpec("git-commits", "text", "title", "Commit message", "Subject line"),
        TaskSpec("debian-synopsis", "abstract", "title", "Package description", "Synopsis"),
    ]
}


def get_task(name: str) -> TaskSpec:
    """Return the registered task spec called ``name``.

    Raises:
        DataError: If the name is unknown; the message lists the known names.
    """
    try:
        return TASKS[name]
    except KeyError:
        raise DataError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}") from None


@dataclass(frozen=True)
class ProfileItem:
    """One past item of a user: what they were given (source) and what they wrote (target)."""

    id: str
    source: str
    target: str


@dataclass(frozen=True)
class Query:
    """One personalized-generation request.

    Attributes:
        id: Query id, unique within a split.
        user_id: The user's id (given, or derived from the profile).
        input: The full instruction text as stored in the data.
        source: The input with its instruction prefix removed (what prompts show).
        profile: The user's past items, in stored order.
        reference: The gold output, or ``None`` when the split has no outputs.
    """

    id: str
    user_id: str
    input: str
    source: str
    profile: tuple[ProfileItem, ...]
    reference: str | None = None


@dataclass(frozen=True)
class Dataset:
    """The queries of one split with the task they belong to."""

    task: TaskSpec
    queries: tuple[Query, ...]
    path: Path
    split: str

    def by_id(self) -> dict[str, Query]:
        """Map query id to query."""
        return {q.id: q for q in self.queries}


# "Generate a subject line for the following commit message: <body>" -> "<body>"
_PREFIX = re.compile(r"^\s*(?:generate|write|create|compose)\b[^:\n]{0,200}?:\s*", re.IGNORECASE)


def _strip_instruction(text: str) -> str:
    return _PREFIX.sub("", text, count=1).strip()


def _derive_user_id(profile: list[dict[str, Any]]) -> str:
    """Stable id from the profile content: the same profile always gets the same id."""
    blob = json.dumps(profile, sort_keys=True, ensure_ascii=False).encode()
    return "user-" + hashlib.sha1(blob).hexdigest()[:12]


def _find(directory: Path, stem: str) -> Path | None:
    for suffix in (".json", ".json.gz"):
        p = directory / f"{stem}{suffix}"
        if p.exists():
            return p
    return None


def _read_json(path: Path) -> Any:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None


def _need_str(obj: Any, field: str, where: str, path: Path) -> str:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: {where} is a {type(obj).__name__}, expected an object")
    if field not in obj:
        raise DataError(f"{path}: {where} has no field {field!r}")
    value = obj[field]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and field == "id":
        value = str(value)
    if not isinstance(value, str):
        raise DataError(f"{path}: {where} field {field!r} is {type(value).__name__}, expected a string")
    return value


def _detect_task(directory: Path, outputs: Any) -> str | None:
    if isinstance(outputs, dict) and isinstance(outputs.get("task"), str) and outputs["task"] in TASKS:
        return outputs["task"]
    if directory.name in TASKS:
        return directory.name
    return None


def load_split(data_dir: str | Path, split: str, task: str | None = None) -> Dataset:
    """Load one split of a LaMP-layout data directory.

    Args:
        data_dir: Directory holding ``{split}_questions.json[.gz]``.
        split: Split name (``train``, ``dev``, ``test``).
        task: Task name; by default taken from the outputs file's ``task`` field
            or the directory name.

    Returns:
        The split's queries. ``reference`` is ``None`` when there is no outputs
        file or no gold for a query.

    Raises:
        DataError: On a missing file or a malformed record; the message names
            the file, the record and the field.
    """
    directory = Path(data_dir)
    if not directory.is_dir():
        raise DataError(f"{directory}: data directory does not exist")
    qpath = _find(directory, f"{split}_questions")
    if qpath is None:
        found = sorted(p.name for p in directory.glob("*_questions.json*"))
        raise DataError(f"{directory}: no {split}_questions.json[.gz]; found: {', '.join(found) or 'nothing'}")
    opath = _find(directory, f"{split}_outputs")
    outputs = _read_json(opath) if opath else None

    golds: dict[str, str] = {}
    if outputs is not None:
        assert opath is not None
        if not isinstance(outputs, dict) or not isinstance(outputs.get("golds"), list):
            raise DataError(f"{opath}: expected an object with a 'golds' list")
        for i, g in enumerate(outputs["golds"]):
            gid = _need_str(g, "id", f"gold #{i}", opath)
            golds[gid] = _need_str(g, "output", f"gold #{i} (id {gid!r})", opath)

    task_name = task or _detect_task(directory, outputs)
    if task_name is None:
        raise DataError(
            f"{directory}: cannot tell the task; pass task= (known tasks: {', '.join(sorted(TASKS))})"
        )
    spec = get_task(task_name)

    raw = _read_json(qpath)
    if not isinstance(raw, list):
        raise DataError(f"{qpath}: expected a JSON list of queries, got {type(raw).__name__}")
    queries: list[Query] = []
    seen: set[str] = set()
    for i, rec in enumerate(raw):
        qid = _need_str(rec, "id", f"record #{i}", qpath)
        where = f"record #{i} (id {qid!r})"
        if qid in seen:
            raise DataError(f"{qpath}: {where} repeats an id")
        seen.add(qid)
        text = _need_str(rec, "input", where, qpath)
        prof = rec.get("profile")
        if not isinstance(prof, list):
            raise DataError(f"{qpath}: {where} field 'profile' must be a list")
        items = []
        for j, item in enumerate(prof):
            iw = f"{where} profile item #{j}"
            src = _need_str(item, spec.source_field, iw, qpath)
            tgt = _need_str(item, spec.target_field, iw, qpath)
            iid = str(item.get("id", j))
            items.append(ProfileItem(id=iid, source=src, target=tgt))
        uid = rec.get("user_id")
        if uid is None:
            uid = _derive_user_id(prof)
        elif not isinstance(uid, (str, int)):
            raise DataError(f"{qpath}: {where} field 'user_id' must be a string")
        queries.append(
            Query(
                id=qid,
                user_id=str(uid),
                input=text,
                source=_strip_instruction(text),
                profile=tuple(items),
                reference=golds.get(qid),
            )
        )
    return Dataset(task=spec, queries=tuple(queries), path=directory, split=split)


def bundled_sample_dir() -> Path:
    """Directory of the small real sample shipped with ttpkit (git-commits, ``dev`` split)."""
    return Path(__file__).parent / "_sample" / "git-commits"
