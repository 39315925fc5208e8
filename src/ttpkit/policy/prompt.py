"""Few-shot prompts built from the items retrieved from the user's own profile."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from ttpkit.data import Query, TaskSpec
from ttpkit.retrieval import retrieve

__all__ = ["PromptBuilder", "cut_completion"]

log = logging.getLogger(__name__)


CHARS_PER_WORD = 10  # a field is also cut at 10 characters per allowed word (one 400,000-character "word" included)
_reported: set[str] = set()


def _clip(text: str, max_words: int, what: str = "") -> str:
    """``text`` on one line, cut to ``max_words`` words and ``CHARS_PER_WORD * max_words`` characters.

    The first cut of each kind (``what``) in a process is logged as a warning.
    """
    words = text.split()
    out = " ".join(words[:max_words])
    limit = CHARS_PER_WORD * max_words
    if len(out) > limit:
        out = out[:limit]
    if len(words) > max_words or len(out) < len(" ".join(words)):
        _report(what, f"clipped to {max_words} words / {limit:,} characters (it had {len(words):,} words, {len(text):,} characters)")
        return out + " ..."
    return out


def _report(what: str, message: str) -> None:
    kind = what.split(" (")[0]  # "a query's input (q17)" is reported once for all queries
    if kind and kind not in _reported:
        _reported.add(kind)
        log.warning("%s %s for the prompt; later clipping of this kind is not reported", what, message)


def _stop_pattern(task: TaskSpec) -> re.Pattern[str]:
    labels = "|".join(re.escape(x) for x in (task.source_label, task.target_label))
    return re.compile(rf"\n[ \t]*(?:{labels})[ \t]*:")


def cut_completion(text: str, task: TaskSpec) -> str:
    """The candidate a raw completion holds: its first line, or, for a multi-line task, everything
    before a line that starts a new example (``Synopsis:``, ``Package description:``), trailing blanks removed."""
    if not task.multiline:
        return text.split("\n")[0].strip()
    m = _stop_pattern(task).search(text)
    return (text[: m.start()] if m else text).strip()


def starts_new_example(text: str, task: TaskSpec) -> bool:
    """Whether a multi-line completion has begun a new example (decoding can stop)."""
    return bool(_stop_pattern(task).search(text))


@dataclass(frozen=True)
class PromptBuilder:
    """Turns a query into a few-shot completion prompt.

    The prompt lists ``k`` retrieved (source, target) pairs of the same user,
    least relevant first so the most relevant example sits next to the query,
    then the query's source and the target label; the model completes the line
    (or, for a multi-line task, the text up to the next example's label).

    Attributes:
        task: Field names and labels of the task.
        k: Number of retrieved shots (0 gives a zero-shot prompt).
        max_shot_words: Words kept of each shot's source. 80 words keeps a
            4-shot git-commits prompt near 600 tokens.
        max_query_words: Words kept of the query's source.
        max_target_words: Words kept of each shot's target (a multi-line
            target keeps its line breaks; a one-line target is put on one line).

    Every field is also cut at :data:`CHARS_PER_WORD` characters per allowed
    word, so no input can build a prompt beyond the model's context; the first
    cut of each kind is logged as a warning.
    """

    task: TaskSpec
    k: int = 4
    max_shot_words: int = 80
    max_query_words: int = 200
    max_target_words: int = 120

    def _target(self, text: str) -> str:
        if not self.task.multiline:
            return _clip(text, self.max_target_words, "a profile item's target")
        lines, kept = [], 0
        for line in text.strip().splitlines():
            words = line.split()
            if kept + len(words) > self.max_target_words:
                lines.append(" ".join(words[: self.max_target_words - kept]) + " ...")
                _report("a profile item's text", f"cut to its first {self.max_target_words} words "
                        f"(it had {len(text.split()):,})")
                break
            lines.append(_clip(line, self.max_target_words, "a profile item's target"))
            kept += len(words)
        return "\n".join(lines)

    def __call__(self, query: Query) -> str:
        t = self.task
        blocks = []
        for item in reversed(retrieve(query, self.k)):
            blocks.append(
                f"{t.source_label}: {_clip(item.source, self.max_shot_words, 'a profile item')}\n"
                f"{t.target_label}: {self._target(item.target)}\n"
            )
        source = _clip(query.source, self.max_query_words, f"a query's input ({query.id})")
        blocks.append(f"{t.source_label}: {source}\n{t.target_label}:")
        return "\n".join(blocks)
