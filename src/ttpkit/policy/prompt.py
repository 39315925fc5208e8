"""Few-shot prompts built from the items retrieved from the user's own profile."""

from __future__ import annotations

from dataclasses import dataclass

from ttpkit.data import Query, TaskSpec
from ttpkit.retrieval import retrieve

__all__ = ["PromptBuilder"]


def _clip(text: str, max_words: int) -> str:
    words = text.split()
    if len(words) <= max_words:
        return " ".join(words)
    return " ".join(words[:max_words]) + " ..."


@dataclass(frozen=True)
class PromptBuilder:
    """Turns a query into a few-shot completion prompt.

    The prompt lists ``k`` retrieved (source, target) pairs of the same user,
    least relevant first so the most relevant example sits next to the query,
    then the query's source and the target label; the model completes the line.

    Attributes:
        task: Field names and labels of the task.
        k: Number of retrieved shots (0 gives a zero-shot prompt).
        max_shot_words: Words kept of each shot's source. 80 words keeps a
            4-shot git-commits prompt near 600 tokens.
        max_query_words: Words kept of the query's source.
    """

    task: TaskSpec
    k: int = 4
    max_shot_words: int = 80
    max_query_words: int = 200

    def __call__(self, query: Query) -> str:
        t = self.task
        blocks = []
        for item in reversed(retrieve(query, self.k)):
            blocks.append(
                f"{t.source_label}: {_clip(item.source, self.max_shot_words)}\n"
                f"{t.target_label}: {' '.join(item.target.split())}\n"
            )
        blocks.append(f"{t.source_label}: {_clip(query.source, self.max_query_words)}\n{t.target_label}:")
        return "\n".join(blocks)
