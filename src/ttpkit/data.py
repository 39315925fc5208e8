"""LaMP-layout data: task specs, frozen records and a loader with precise errors.

A split lives in a directory as ``{split}_questions.json`` (a list of
``{id, input, profile: [...], user_id?}``) and, optionally,
``{split}_outputs.json`` (``{task, golds: [{id, output}]}``); either file may be
gzipped (``.json.gz``). A :class:`TaskSpec` says which profile fields hold the
source and the target of the user's past work, and how to label them in prompts.
Tasks are registered by name (:data:`TASKS`) or declared in a YAML/JSON file
(:func:`load_task_file`, ``--task-file``).
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
    "load_task_file",
    "make_profile",
    "read_json",
    "resolve_task",
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
        instruction: Instruction prefix of a query's input in the data
            (``Generate a subject line for the following commit message:``);
            ``ttpkit personalize`` puts it before a raw input.
        multiline: The output is a multi-line text (a package description, an
            abstract): decoding does not stop at the end of a line but at EOS, at
            a line that starts a new example (``<label>:``) or at the token limit,
            and few-shot prompts show past targets with their line breaks.
        max_new_tokens: The task's default token limit per candidate (``None``:
            the sampler's default, 32, enough for one line).
    """

    name: str
    source_field: str
    target_field: str
    source_label: str
    target_label: str
    instruction: str = ""
    multiline: bool = False
    max_new_tokens: int | None = None


TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("LaMP-4", "text", "title", "Article", "Headline"),
        TaskSpec("LaMP-5", "abstract", "title", "Abstract", "Title"),
        TaskSpec("LongLaMP-abstract", "title", "abstract", "Title", "Abstract", multiline=True, max_new_tokens=192),
        TaskSpec("LongLaMP-topic", "summary", "content", "Summary", "Post", multiline=True, max_new_tokens=192),
        TaskSpec("LongLaMP-review", "summary", "reviewText", "Summary", "Review", multiline=True, max_new_tokens=192),
        TaskSpec("git-commits", "text", "title", "Commit message", "Subject line",
                 "Generate a subject line for the following commit message:"),
        TaskSpec("debian-synopsis", "abstract", "title", "Package description", "Synopsis",
                 "Generate a one-line synopsis for the following Debian package description:"),
        TaskSpec("debian-description", "title", "abstract", "Synopsis", "Package description",
                 "Generate a package description for the following synopsis:", multiline=True, max_new_tokens=192),
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


TASK_FILE_KEYS = ("name", "source_field", "target_field", "source_label", "target_label")


def load_task_file(path: str | Path) -> TaskSpec:
    """Read a task declared in YAML or JSON: the keys of :data:`TASK_FILE_KEYS`, and optionally
    ``instruction`` (text), ``multiline`` (true/false) and ``max_new_tokens`` (a positive integer).

    Raises:
        DataError: If the file cannot be read or parsed, a key is missing, unknown or not a string.
    """
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"{path}: cannot read the task file ({e.strerror or e})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid YAML/JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise DataError(f"{path}: a task file is a mapping of {', '.join(TASK_FILE_KEYS)}, got {type(raw).__name__}")
    missing = [k for k in TASK_FILE_KEYS if k not in raw]
    if missing:
        raise DataError(f"{path}: the task file lacks {', '.join(missing)}")
    optional = {"instruction", "multiline", "max_new_tokens"}
    unknown = sorted(set(raw) - set(TASK_FILE_KEYS) - optional)
    if unknown:
        raise DataError(f"{path}: unknown task file keys {', '.join(unknown)}; known: {', '.join(TASK_FILE_KEYS)}, "
                        f"{', '.join(sorted(optional))}")
    for key, value in raw.items():
        if key == "multiline":
            if not isinstance(value, bool):
                raise DataError(f"{path}: task file key 'multiline' must be true or false, got {value!r}")
        elif key == "max_new_tokens":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DataError(f"{path}: task file key 'max_new_tokens' must be a positive integer, got {value!r}")
        elif not isinstance(value, str) or (key != "instruction" and not value.strip()):
            raise DataError(f"{path}: task file key {key!r} must be a non-empty string, got {value!r}")
    return TaskSpec(**raw)


def resolve_task(task: str | TaskSpec | None = None, task_file: str | Path | None = None) -> TaskSpec | None:
    """The task named by ``--task`` or declared by ``--task-file`` (None when neither is given).

    Raises:
        DataError: For an unknown name or a bad task file.
        ConfigError: If both are given and disagree.
    """
    from ttpkit.errors import ConfigError

    if isinstance(task, TaskSpec):
        return task
    spec = load_task_file(task_file) if task_file is not None else None
    if task is not None and spec is not None and task != spec.name:
        raise ConfigError(f"--task {task} and --task-file {task_file} (task {spec.name!r}) disagree; give one")
    return spec or (get_task(task) if task is not None else None)


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


def read_json(path: Path) -> Any:
    """Parse a JSON or gzipped JSON file.

    Raises:
        DataError: Naming the file when it cannot be read or parsed.
    """
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
        out.append(ProfileItem(id=str(item.get("id", j)), source=src, target=tgt))
    return tuple(out)


def bundled_sample_dir(task: str = "git-commits") -> Path:
    """Directory of a small real sample shipped with ttpkit (``dev`` split): ``git-commits`` or ``debian-description``."""
    path = Path(__file__).parent / "_sample" / task
    if not path.is_dir():
        raise DataError(f"no bundled sample for {task!r}; bundled: git-commits, debian-description")
    return path
