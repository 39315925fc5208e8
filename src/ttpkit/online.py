"""Test-time personalization online, one query at a time: sample N candidates, score them with a personalized RM, return the best.

:func:`personalize` is what ``ttpkit personalize`` runs. It builds the query
from a user's profile and a new input, samples candidates from a policy (the
embedded Gemma 3 270M by default), scores them with a reward model (the bundled
one for the task by default, :mod:`ttpkit.reward.bundled`), applies a selection
rule and returns a :class:`Personalized` record. With ``adaptive=True`` it
samples in rounds and stops when the next round's expected gain
(:func:`ttpkit.selection.next_round_gain`) falls below ``min_gain``.

Example:
    >>> from ttpkit import personalize  # doctest: +SKIP
    >>> out = personalize([{"text": "Fix the parser", "title": "parser: fix crash"}],
    ...                   "Handle empty lines in the config reader", task="git-commits", n=8)  # doctest: +SKIP
    >>> out.text  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ttpkit.data import ProfileItem, Query, TaskSpec, get_task, make_profile
from ttpkit.errors import ConfigError, DataError
from ttpkit.pool import IDX, QUERY_ID, TEXT, USER_ID, Rule

if TYPE_CHECKING:
    from ttpkit.policy import Policy, PolicySpec
    from ttpkit.reward.bundled import ModelCard
    from ttpkit.reward.features import Encoder
    from ttpkit.reward.models import RewardModel

__all__ = ["Expectation", "Personalized", "ScoredCandidate", "personalize"]

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
    """The answer of :func:`personalize` and how it was chosen."""

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

    @property
    def n(self) -> int:
        """Candidates drawn."""
        return len(self.candidates)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready record (``ttpkit personalize --json``)."""
        return {**asdict(self), "n": self.n}


def _profile(profile: Sequence[dict] | Sequence[ProfileItem], task: TaskSpec) -> tuple[ProfileItem, ...]:
    if all(isinstance(p, ProfileItem) for p in profile):
        return tuple(profile)  # type: ignore[arg-type]
    if not isinstance(profile, (list, tuple)):
        raise DataError(f"the profile must be a list of items, got {type(profile).__name__}")
    return make_profile(list(profile), task, f"profile for task {task.name}")


def _load_rm(rm: str | Path | RewardModel, task: TaskSpec) -> tuple[RewardModel, str]:
    from ttpkit.reward.bundled import AGNOSTIC, resolve_rm
    from ttpkit.reward.models import RewardModel

    if isinstance(rm, RewardModel):
        return rm, "(in memory)"
    path = resolve_rm(rm, task.name)
    model = RewardModel.load(path)
    if model.tasks_ and task.name not in model.tasks_ and AGNOSTIC not in model.tasks_:
        raise ConfigError(f"--rm {rm}: the model was trained on {', '.join(model.tasks_)}, not on {task.name}; "
                          "use --rm default (the task's bundled model, or the task-agnostic one)")
    return model, str(path)


def _query(items: tuple[ProfileItem, ...], text: str, task: TaskSpec, user_id: str | None) -> Query:
    uid = user_id or "user-" + hashlib.sha1("\n".join(f"{p.source}\t{p.target}" for p in items).encode()).hexdigest()[:12]
    qid = "personalize-" + hashlib.sha1(f"{uid}\n{text}".encode()).hexdigest()[:12]
    full = f"{task.instruction} {text}".strip() if task.instruction else text
    return Query(id=qid, user_id=uid, input=full, source=text, profile=items)


def _expectation(card: ModelCard | None, scores: np.ndarray, n: int) -> Expectation | None:
    from ttpkit.scaling import expected_max_normal

    if card is None:
        return None
    collapsed = n > 1 and float(np.std(scores)) <= card.tau * card.score_std
    gain = 0.0 if collapsed else card.rho_eff * card.sigma_eff * expected_max_normal(n)
    return Expectation(n=n, collapsed=collapsed, gain=float(gain), share=card.share)


def personalize(
    profile: Sequence[dict] | Sequence[ProfileItem],
    input: str,
    task: str | TaskSpec = "git-commits",
    rm: str | Path | RewardModel = "default",
    n: int = 16,
    rule: str = "mean",
    policy: Policy | PolicySpec | None = None,
    seed: int = 0,
    adaptive: bool = False,
    max_n: int = 32,
    round_size: int = 4,
    min_gain: float = 0.05,
    user_id: str | None = None,
    encoder: Encoder | None = None,
) -> Personalized:
    """Pick the best of ``n`` personalized candidates for one new input.

    Args:
        profile: The user's past items: dicts with the task's source and target
            fields (and optionally ``id``), or :class:`ProfileItem`.
        input: The new input (a commit message, a package description...).
        task: Task name or spec (see :func:`ttpkit.data.resolve_task`).
        rm: ``default`` (the bundled ``user-pairwise`` for the task, or the
            task-agnostic one), ``default:user-prob``, a model directory, or a model.
        n: Candidates to draw (without ``adaptive``).
        rule: Selection rule (``mean``, ``lcb:κ``, ``ucb:κ``, ``thompson``);
            rules other than ``mean`` need a probabilistic RM.
        policy: A policy, or a policy setting (default: the embedded Gemma 3 270M, 4-shot).
        seed: Sampling seed.
        adaptive: Sample in rounds of ``round_size`` up to ``max_n``, and stop
            when the next round's expected gain, in units of the RM's score
            spread on its test users, falls below ``min_gain``.
        max_n, round_size, min_gain: The adaptive schedule.
        user_id: The user's id (default: derived from the profile).
        encoder: Sentence encoder (default: the RM's depth and dtype, with the on-disk cache).

    Raises:
        DataError: For a profile item that lacks the task's fields or an empty input.
        ConfigError: For an unknown rule, a rule the RM cannot apply, bad N
            settings, or an RM trained on another task.
    """
    from ttpkit import stages
    from ttpkit.policy import PolicySpec
    from ttpkit.reward.bundled import load_card
    from ttpkit.selection import apply_rule, next_round_gain

    t0 = time.time()
    spec = get_task(task) if isinstance(task, str) else task
    parsed = Rule.parse(rule)
    if parsed.name == "soft":
        raise ConfigError("personalize picks one answer: use mean, lcb:κ, ucb:κ or thompson (soft:τ is for curves)")
    if not adaptive and n < 1:
        raise ConfigError(f"n must be >= 1, got {n}")
    if adaptive and not (1 <= round_size <= max_n):
        raise ConfigError(f"adaptive sampling needs 1 <= round_size <= max_n, got {round_size} and {max_n}")
    if not isinstance(input, str) or not input.strip():
        raise DataError("the input is empty")
    items = _profile(profile, spec)
    model, model_dir = _load_rm(rm, spec)
    if parsed.name != "mean" and not model.probabilistic:
        raise ConfigError(f"rule {rule!r} needs a probabilistic RM (user-prob); {model_dir} is {model.config.variant}")
    warnings = []
    if not items:
        warnings.append("empty profile: no personalization; the prompt is zero-shot and the RM sees no history")
    words = len(input.split())
    if words > MAX_INPUT_WORDS:
        warnings.append(f"the input has {words} words; the prompt keeps the first {MAX_INPUT_WORDS}")
    query = _query(items, input, spec, user_id)
    default = PolicySpec("gemma3-270m", max_new_tokens=spec.max_new_tokens or 32)
    pol = policy if policy is not None and not isinstance(policy, PolicySpec) else (policy or default).build(spec, seed)
    enc = encoder or stages.default_encoder(model.config.encoder_dtype, model.config.encoder_layers)
    card = load_card(model_dir) if model_dir != "(in memory)" else None

    rows: list[dict] = []
    rounds, target = 0, (round_size if adaptive else n)
    while True:
        rq = Query(id=f"{query.id}#{rounds}", user_id=query.user_id, input=query.input, source=query.source, profile=items)
        cands = pol.sample([rq], target - len(rows))[0]
        rows += [{QUERY_ID: query.id, USER_ID: query.user_id, IDX: len(rows) + i, TEXT: c.text} for i, c in enumerate(cands)]
        rounds += 1
        pool = pd.DataFrame(rows)
        s = model.score(pool, {query.id: query}, encoder=enc)
        values = apply_rule(s.mean, s.std if model.probabilistic else None, parsed, seed)
        if not adaptive or len(rows) >= max_n:
            break
        step = min(round_size, max_n - len(rows))
        if len(rows) >= 2 and next_round_gain(values, step, card.score_std if card else None) < min_gain:
            break
        target = len(rows) + step
    enc.save_cache()
    best = int(np.argmax(values))
    std = np.asarray(s.std) if model.probabilistic else None
    scored = tuple(ScoredCandidate(int(r[IDX]), r[TEXT], float(s.mean[i]), None if std is None else float(std[i]), float(values[i]))
                   for i, r in enumerate(rows))
    return Personalized(
        text=rows[best][TEXT], chosen=best, candidates=scored, rule=str(rule), rm=model_dir, task=spec.name,
        user_id=query.user_id, rounds=rounds, expected=_expectation(card, np.asarray(s.mean), len(rows)),
        seconds=time.time() - t0, warnings=tuple(warnings),
    )
