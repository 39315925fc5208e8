"""LaMP-layout data: frozen records, a loader with precise errors, and profile files (tasks: :mod:`ttpkit.task`).

A split lives in a directory as ``{split}_questions.json`` (a list of
``{id, input, profile: [...], user_id?}``) and, optionally,
``{split}_outputs.json`` (``{task, golds: [{id, output}]}``); either file may be
gzipped (``.json.gz``). A :class:`TaskSpec` says which profile fields hold the
source and the target of the user's past work (:mod:`ttpkit.task`, re-exported
here). :func:`read_profile` reads one user's profile for ``ttpkit personalize``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttpkit._args import PATH, STR, checked, instance, optional
from ttpkit.errors import ConfigError, DataError
from ttpkit.task import TASK_FILE_KEYS, TASKS, TaskSpec, get_task, load_task_file, resolve_task
from ttpkit.text import check_text, find_bad_text

__all__ = [
    "TASKS",
    "TASK_FILE_KEYS",
    "Dataset",
    "ProfileItem",
    "Query",
    "TaskSpec",
    "bundled_sample_dir",
    "check_split",
    "get_task",
    "load_task_file",
    "make_profile",
    "read_profile",
    "read_json",
    "resolve_task",
    "load_split",
]


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
    """Stable id from the profile content: the same profile always gets the same id.

    Fields ttpkit reads are checked text by now; any other field is hashed as it is (``surrogatepass``).
    """
    blob = json.dumps(profile, sort_keys=True, ensure_ascii=False).encode("utf-8", "surrogatepass")
    return "user-" + hashlib.sha1(blob).hexdigest()[:12]


def _find(directory: Path, stem: str) -> Path | None:
    """``<stem>.json`` or ``<stem>.json.gz``; both at once is a :class:`DataError` (which one is meant?)."""
    found = [p for p in (directory / f"{stem}.json", directory / f"{stem}.json.gz") if p.exists()]
    if len(found) > 1:
        raise DataError(f"{directory}: both {found[0].name} and {found[1].name} exist; keep one")
    return found[0] if found else None


_SPLIT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")  # a file-name stem: no "/", no "..", nothing outside data_dir


def check_split(split: str) -> str:
    """``split`` if it names files inside the data directory, else a :class:`ConfigError` (``../other/dev`` is refused)."""
    if not isinstance(split, str) or not _SPLIT.fullmatch(split) or ".." in split:
        raise ConfigError(f"--split {split!r}: a split is a name such as train, dev or test (letters, digits, "
                          "'_', '-', '.'; no path)")
    return split


def read_json(path: Path) -> Any:
    """Parse a JSON or gzipped JSON file.

    Raises:
        DataError: Naming the file when it cannot be read or parsed, is not a regular file (a FIFO would block
            for ever) or nests too deeply for the parser.
    """
    if path.exists() and not path.is_file():
        raise DataError(f"{path}: not a regular file (a directory, FIFO or device); give a JSON file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:  # type: ignore[operator]
            return json.load(f)
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not valid UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                        "ttpkit reads UTF-8 JSON") from None
    except (json.JSONDecodeError, OSError, EOFError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise DataError(f"{path}: JSON nested too deeply to read") from None


def _need_str(obj: Any, field: str, where: str, path: Path) -> str:
    if not isinstance(obj, dict):
        raise DataError(f"{path}: {where} is a {type(obj).__name__}, expected an object")
    if field not in obj:
        raise DataError(f"{path}: {where} has no field {field!r}")
    value = obj[field]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and field == "id":
        if not math.isfinite(value):
            raise DataError(f"{path}: {where} field 'id' is {value}; an id is a string or a finite number")
        value = str(value)
    if not isinstance(value, str):
        raise DataError(f"{path}: {where} field {field!r} is {type(value).__name__}, expected a string")
    return check_text(value, f"{path}: {where} field {field!r}")


def _detect_task(directory: Path, outputs: Any) -> str | None:
    if isinstance(outputs, dict) and isinstance(outputs.get("task"), str) and outputs["task"] in TASKS:
        return outputs["task"]
    if directory.name in TASKS:
        return directory.name
    return None


@checked(data_dir=PATH, split=STR, task=optional(STR | instance(TaskSpec, says="a TaskSpec")))
def load_split(data_dir: str | Path, split: str, task: str | TaskSpec | None = None) -> Dataset:
    """Load one split of a LaMP-layout data directory.

    Args:
        data_dir: Directory holding ``{split}_questions.json[.gz]``.
        split: Split name (``train``, ``dev``, ``test``).
        task: Task name or spec; by default taken from the outputs file's
            ``task`` field or the directory name.

    Returns:
        The split's queries. ``reference`` is ``None`` when there is no outputs
        file or no gold for a query.

    Raises:
        DataError: On a missing file or a malformed record; the message names
            the file, the record and the field.
    """
    check_split(split)
    directory = Path(data_dir)
    if not directory.is_dir():
        raise DataError(f"{directory}: data directory does not exist")
    qpath = _find(directory, f"{split}_questions")
    if qpath is None:
        found = sorted(p.name for p in directory.glob("*_questions.json*"))
        raise DataError(f"{directory}: no {split}_questions.json[.gz]; found: {', '.join(found) or 'nothing'}")
    opath = _find(directory, f"{split}_outputs")
    outputs = read_json(opath) if opath else None

    golds: dict[str, str] = {}
    if outputs is not None:
        assert opath is not None
        if not isinstance(outputs, dict) or not isinstance(outputs.get("golds"), list):
            raise DataError(f"{opath}: expected an object with a 'golds' list")
        for i, g in enumerate(outputs["golds"]):
            gid = _need_str(g, "id", f"gold #{i}", opath)
            if gid in golds:
                raise DataError(f"{opath}: gold #{i} repeats id {gid!r}; each query has one reference")
            golds[gid] = _need_str(g, "output", f"gold #{i} (id {gid!r})", opath)
            if not golds[gid].strip():
                raise DataError(f"{opath}: gold #{i} (id {gid!r}) field 'output' is empty; a reference needs text")

    if isinstance(task, TaskSpec):
        spec = task
    else:
        task_name = task or _detect_task(directory, outputs)
        if task_name is None:
            raise DataError(
                f"{directory}: cannot tell the task; pass --task NAME (known: {', '.join(sorted(TASKS))}) "
                "or declare it with --task-file FILE"
            )
        spec = get_task(task_name)

    raw = read_json(qpath)
    if not isinstance(raw, list):
        raise DataError(f"{qpath}: expected a JSON list of queries, got {type(raw).__name__}")
    if not raw:
        raise DataError(f"{qpath}: the list of queries is empty")
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
        items = make_profile(prof, spec, qpath, where)
        uid = rec.get("user_id")
        if uid is None:
            uid = _derive_user_id(prof)
        elif isinstance(uid, bool) or not isinstance(uid, (str, int)):
            raise DataError(f"{qpath}: {where} field 'user_id' must be a string, got {json.dumps(uid)}")
        elif not str(uid).strip():
            raise DataError(f"{qpath}: {where} field 'user_id' is empty; leave it out to derive one from the profile")
        else:
            check_text(str(uid), f"{qpath}: {where} field 'user_id'")
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


def make_profile(items: list[Any], task: TaskSpec, path: str | Path = "profile", where: str = "") -> tuple[ProfileItem, ...]:
    """Profile records (dicts with the task's source and target fields, optional ``id``) as :class:`ProfileItem`.

    Raises:
        DataError: Naming the file, the item and the field when an item lacks one.
    """
    out = []
    for j, item in enumerate(items):
        iw = f"{where + ' ' if where else ''}profile item #{j}"
        src = _need_str(item, task.source_field, iw, Path(path))
        tgt = _need_str(item, task.target_field, iw, Path(path))
        pid = check_text(str(item.get("id", j)), f"{path}: {iw} field 'id'")
        out.append(ProfileItem(id=pid, source=src, target=tgt))
    return tuple(out)


def read_profile(path: str | Path, user: str | None = None) -> list:
    """A user's profile items as raw records: a JSON list of items, or (with ``user``) that user's profile in a LaMP questions file.

    Raises:
        ConfigError: If the file is missing, is not a list, is a questions file
            without ``user``, or has no record (or no profile list) for ``user``.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--profile {path}: no such file")
    raw = read_json(path)
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: expected a JSON list (profile items, or LaMP questions with --user)")
    if user is None:
        if raw and isinstance(raw[0], dict) and "profile" in raw[0]:
            raise ConfigError(f"{path} is a LaMP questions file: pass --user ID to pick whose profile to use")
        return _checked_items(raw, path, "")
    for rec in raw:
        if isinstance(rec, dict) and str(rec.get("user_id")) == user:
            profile = rec.get("profile")
            if not isinstance(profile, list):
                raise ConfigError(f"{path}: the record of user {user!r} has no profile list")
            return _checked_items(profile, path, f"the profile of user {user!r}, ")
    raise ConfigError(f"{path}: no record with user_id {user!r}")


def _checked_items(items: list, path: Path, where: str) -> list:
    """``items``, or a :class:`DataError` naming the file, the item and the field of text that is not valid Unicode."""
    bad = find_bad_text(items)
    if bad is not None:
        raise DataError(f"{path}: {where}item {bad[0]} is not valid UTF-8 text ({bad[1]})")
    return items


def bundled_sample_dir(task: str = "git-commits") -> Path:
    """Directory of a small real sample shipped with ttpkit (``dev`` split): ``git-commits`` or ``debian-description``."""
    path = Path(__file__).parent / "_sample" / task
    if not path.is_dir():
        raise DataError(f"no bundled sample for {task!r}; bundled: git-commits, debian-description")
    return path
