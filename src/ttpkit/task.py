"""Tasks: how one personalized-generation task maps onto the LaMP layout, registered by name or declared in a file.

A :class:`TaskSpec` says which profile fields hold the source and the target of
the user's past work, how to label them in prompts, and the output's shape.
Tasks are registered by name (:data:`TASKS`) or declared in a YAML/JSON file
(:func:`load_task_file`, ``--task-file``). :mod:`ttpkit.data` re-exports all of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ttpkit import yamlio
from ttpkit.errors import ConfigError, DataError
from ttpkit.text import check_text

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "MAX_NEW_TOKENS", "TASKS", "TASK_FILE_KEYS", "TaskSpec", "get_task", "load_task_file", "resolve_task"]


MAX_NEW_TOKENS = 32_768  # the most tokens per candidate a task file or --max-new-tokens may ask: the longest context of the models run
DEFAULT_MAX_NEW_TOKENS = 32  # tokens per candidate of a one-line task (a subject line, a headline) without its own limit


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
            :data:`DEFAULT_MAX_NEW_TOKENS`, enough for one line).
    """

    name: str
    source_field: str
    target_field: str
    source_label: str
    target_label: str
    instruction: str = ""
    multiline: bool = False
    max_new_tokens: int | None = None

    def full_input(self, text: str) -> str:
        """A query's input as the data hold it for a new input ``text``: the instruction, then the text."""
        return f"{self.instruction} {text}".strip() if self.instruction else text


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
    if path.exists() and not path.is_file():
        raise DataError(f"{path}: the task file is not a regular file (a directory, FIFO or device)")
    try:
        raw = yamlio.load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DataError(f"{path}: cannot read the task file ({e.strerror or e})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid YAML/JSON ({str(e).splitlines()[0]})") from None
    except RecursionError:
        raise DataError(f"{path}: nested too deeply to read") from None
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
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_NEW_TOKENS:
                raise DataError(f"{path}: task file key 'max_new_tokens' must be an integer in 1..{MAX_NEW_TOKENS}, got {value!r}")
        elif not isinstance(value, str) or (key != "instruction" and not value.strip()):
            raise DataError(f"{path}: task file key {key!r} must be a non-empty string, got {value!r}")
        else:
            check_text(value, f"{path}: task file key {key!r}")
    return TaskSpec(**raw)


def resolve_task(task: str | TaskSpec | None = None, task_file: str | Path | None = None) -> TaskSpec | None:
    """The task named by ``--task`` or declared by ``--task-file`` (None when neither is given).

    Raises:
        DataError: For an unknown name or a bad task file.
        ConfigError: If both are given.
    """
    if isinstance(task, TaskSpec):
        return task
    spec = load_task_file(task_file) if task_file is not None else None
    if task is not None and task_file is not None:
        raise ConfigError(f"--task {task} and --task-file {task_file}: give one (the file declares the task)")
    return spec or (get_task(task) if task is not None else None)
