"""The records of one personalized answer (:mod:`ttpkit.online`'s public types): candidates, the law's expectation, the schedule.

Kept apart from :mod:`ttpkit.online`, which computes them, so that the service and the reports can name them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from ttpkit.errors import ConfigError
from ttpkit.selection import next_round

__all__ = ["MAX_INPUT_WORDS", "MAX_N", "Expectation", "Personalized", "ScoredCandidate", "Schedule"]

MAX_INPUT_WORDS = 200  # what the prompt keeps of an input (ttpkit.policy.prompt.PromptBuilder.max_query_words)


@dataclass(frozen=True)
class ScoredCandidate:
    """One sampled candidate with its reward (``std`` for a probabilistic RM)."""

    idx: int
    text: str
    score: float
    std: float | None
    selection: float  # the value the rule maximizes


@dataclass(frozen=True)
class Expectation:
    """What the law expects from best-of-``n`` for this user, with the RM's card quantities.

    Attributes:
        n: Candidates drawn.
        collapsed: The user's scores barely vary (below ``tau`` times the RM's
            score spread on its test users): selection is then close to random.
        gain: Expected ROUGE-L gain of best-of-``n`` over one sample,
            ρ_eff σ_eff e_n (0 when collapsed).
        share: The RM's share of the oracle gain on its test users.
    """

    n: int
    collapsed: bool
    gain: float
    share: float


@dataclass(frozen=True)
class Personalized:
    """The answer of :func:`personalize` and how it was chosen.

    ``greedy`` is the index of the greedy decode among the candidates (the
    answer the user would get without best-of-N; None when the policy did not
    add it), and ``chosen_is_greedy`` says whether best-of-N returned that same text.
    """

    text: str
    chosen: int
    candidates: tuple[ScoredCandidate, ...]
    rule: str
    rm: str
    task: str
    user_id: str
    rounds: int
    expected: Expectation | None
    seconds: float
    warnings: tuple[str, ...]
    greedy: int | None = None

    @property
    def greedy_text(self) -> str | None:
        """The greedy answer, if it was decoded."""
        return None if self.greedy is None else self.candidates[self.greedy].text

    @property
    def chosen_is_greedy(self) -> bool:
        """Whether the chosen text is the greedy answer's."""
        return self.greedy is not None and self.text == self.greedy_text

    @property
    def n(self) -> int:
        """Candidates drawn."""
        return len(self.candidates)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record (``ttpkit personalize --json``)."""
        return {**asdict(self), "n": self.n, "greedy_text": self.greedy_text, "chosen_is_greedy": self.chosen_is_greedy}


MAX_N = 256  # most candidates one personalization draws (serve's n too); 10**8 would try to allocate terabytes


@dataclass(frozen=True)
class Schedule:
    """How many candidates :func:`personalize` draws: ``n`` at once, or adaptive rounds.

    Attributes:
        n: Candidates to draw without ``adaptive``.
        adaptive: Sample in rounds of ``round_size`` up to ``max_n``, and stop
            when the next round's expected gain, in units of the RM's score
            spread on its test users, falls below ``min_round_gain``
            (:func:`ttpkit.selection.next_round`).
        max_n: Most candidates ``adaptive`` draws.
        round_size: Candidates per round.
        min_round_gain: The adaptive threshold.
    """

    n: int = 16
    adaptive: bool = False
    max_n: int = 32
    round_size: int = 4
    min_round_gain: float = 0.05

    def check(self) -> None:
        """Raise :class:`ConfigError` for settings that cannot draw a candidate."""
        if not self.adaptive and not 1 <= self.n <= MAX_N:
            raise ConfigError(f"n must be in 1..{MAX_N}, got {self.n}")
        if self.adaptive and self.max_n > MAX_N:
            raise ConfigError(f"max_n must be at most {MAX_N}, got {self.max_n}")
        if self.adaptive and not (1 <= self.round_size <= self.max_n):
            raise ConfigError(f"adaptive sampling needs 1 <= round_size <= max_n, got {self.round_size} and {self.max_n}")

    @property
    def first(self) -> int:
        """Candidates of the first round."""
        return self.round_size if self.adaptive else self.n

    def next(self, values: np.ndarray, scale: float | None) -> int:
        """Candidates of the next round after the selection scores ``values`` (0: stop)."""
        return next_round(values, self.max_n, self.round_size, self.min_round_gain, scale) if self.adaptive else 0
