"""Test-time personalization online, one query at a time: sample N candidates, score them with a personalized RM, return the best.

:func:`personalize` is what ``ttpkit personalize`` runs. It builds the query
from a user's profile and a new input, samples candidates from a policy (the
embedded Gemma 3 270M by default), scores them with a reward model (the bundled
one for the task by default, :mod:`ttpkit.reward.bundled`), applies a selection
rule and returns a :class:`Personalized` record. With ``adaptive=True`` it
samples in rounds and stops by the one stopping rule of adaptive best-of-N
(:func:`ttpkit.selection.next_round`): when the next round's expected gain (the
law's, :func:`ttpkit.scaling.tail_gain`) falls below ``min_round_gain``. The
per-query steps are one public core, :func:`answer` over an :class:`OnlineRM`,
which the service (:mod:`ttpkit.serve`) calls too.

Example:
    >>> from ttpkit import personalize  # doctest: +SKIP
    >>> out = personalize([{"text": "Fix the parser", "title": "parser: fix crash"}],
    ...                   "Handle empty lines in the config reader", task="git-commits", n=8)  # doctest: +SKIP
    >>> out.text  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ttpkit import stages
from ttpkit._answer import (
    MAX_INPUT_WORDS,
    MAX_N,
    Expectation,
    Personalized,
    Schedule,
    ScoredCandidate,
)
from ttpkit._args import (
    BOOL,
    INT,
    PATH,
    REAL,
    STR,
    checked,
    has,
    instance,
    list_of,
    optional,
)
from ttpkit.data import ProfileItem, Query, TaskSpec, get_task, make_profile
from ttpkit.errors import ConfigError, DataError
from ttpkit.policy import Policy, PolicySpec
from ttpkit.policy.base import SHIPPED
from ttpkit.pool import GREEDY, IDX, LOGP, N_TOKENS, QUERY_ID, TEXT, USER_ID, Rule
from ttpkit.reward._load import load_rm
from ttpkit.reward.bundled import AGNOSTIC, ModelCard, load_card, resolve_rm
from ttpkit.reward.config import read_rm_config
from ttpkit.reward.encoder import Encoder
from ttpkit.reward.models import RewardModel, Scores
from ttpkit.reward.stack import StackedScorer
from ttpkit.scaling import tail_gain
from ttpkit.selection import apply_rule
from ttpkit.text import check_text

__all__ = ["MAX_N", "Expectation", "OnlineRM", "Personalized", "ScoredCandidate", "Schedule", "answer", "check_request", "check_rm",
           "make_query", "personalize"]

def _profile(profile: Sequence[dict] | Sequence[ProfileItem], task: TaskSpec) -> tuple[ProfileItem, ...]:
    if all(isinstance(p, ProfileItem) for p in profile):
        for j, p in enumerate(profile):  # dicts are checked by make_profile; records made in Python are checked here
            for field in ("id", "source", "target"):
                check_text(getattr(p, field), f"profile item #{j} field {field!r}")
        return tuple(profile)  # type: ignore[arg-type]
    return make_profile(list(profile), task, f"profile for task {task.name}")


def check_rm(rm: str | Path, task: TaskSpec) -> Path:
    """The model directory ``--rm`` names for ``task``, its config (or ``stacked.json``) and ``card.json`` checked, no weights read.

    What ``ttpkit personalize`` and ``ttpkit serve`` run before any model loads.

    Raises:
        ConfigError: For a name that is no model directory, or a model trained on another task.
        DataError: For a damaged or malformed config or card (naming the file and the key).
    """
    path = resolve_rm(rm, task.name)
    if (path / "stacked.json").is_file():  # a stacked ranker: its task, and the RM behind it, checked the same way
        stacked = StackedScorer.load(path)
        tasks = [stacked.task] if stacked.task else []
        if stacked.rm_model:
            check_rm(stacked.rm_model, task)
    else:
        meta, _ = read_rm_config(path)
        tasks = meta.get("tasks", [])
    if tasks and task.name not in tasks and AGNOSTIC not in tasks:
        raise ConfigError(f"--rm {rm}: the model was trained on {', '.join(tasks)}, not on {task.name}; "
                          "use --rm default (the task's bundled model, or the task-agnostic one)")
    load_card(path)
    return path


@dataclass(frozen=True)
class OnlineRM:
    """A reward model ready to answer queries: the model, where it came from, its card and its encoder.

    Attributes:
        model: A :class:`RewardModel`, or anything with its ``score`` and ``probabilistic`` (the service's joins a batch).
        path: The model's directory (``(in memory)`` for a model passed in).
        card: Its model card (None for a model passed in).
        encoder: The sentence encoder it scores with.
    """

    model: Any
    path: str
    card: ModelCard | None
    encoder: Any

    @classmethod
    def load(cls, rm: str | Path | RewardModel, task: TaskSpec, encoder: Encoder | None = None,
             device: str = "cpu") -> OnlineRM:
        """The model ``rm`` names for ``task`` (see :func:`check_rm`), its card and encoder (default: the RM's depth and dtype)."""
        if isinstance(rm, (str, Path)):
            path = str(check_rm(rm, task))
            model, card = load_rm(path), load_card(path)
        else:
            model, path, card = rm, "(in memory)", None
        needs = model.needs
        enc = encoder or stages.default_encoder(needs.encoder_dtype, needs.encoder_layers, device)
        return cls(model, path, card, enc)

    def check_rule(self, rule: Rule, text: str) -> None:
        """Raise :class:`ConfigError` when ``rule`` needs a probabilistic RM and this one is not."""
        if rule.name != "mean" and not self.model.probabilistic:
            kind = getattr(getattr(self.model, "config", None), "variant", None) or type(self.model).__name__
            raise ConfigError(f"rule {text!r} needs a probabilistic RM (user-prob); {self.path} is {kind}")


def make_query(items: tuple[ProfileItem, ...], text: str, task: TaskSpec, user_id: str | None) -> Query:
    """The query of one new input ``text`` for the user with profile ``items`` (``user_id`` default: the profile's hash)."""
    uid = user_id or "user-" + hashlib.sha1("\n".join(f"{p.source}\t{p.target}" for p in items).encode()).hexdigest()[:12]
    qid = "personalize-" + hashlib.sha1(f"{uid}\n{text}".encode()).hexdigest()[:12]
    return Query(id=qid, user_id=uid, input=task.full_input(text), source=text, profile=items)


def _expectation(card: ModelCard | None, scores: np.ndarray, n: int) -> Expectation | None:
    if card is None:
        return None
    collapsed = n > 1 and float(np.std(scores)) <= card.tau * card.score_std
    gain = 0.0 if collapsed else tail_gain(card.rho_eff, card.sigma_eff, n)
    return Expectation(n=n, collapsed=collapsed, gain=float(gain), share=card.share)


def check_request(rule: str, schedule: Schedule, input: str, user_id: str | None = None) -> Rule:
    """The parsed rule, once the rule, the schedule, the input and the user id are known to be usable.

    Raises:
        ConfigError: For an unknown rule, ``soft:τ`` or bad N settings.
        DataError: For an empty input, or an input or user id that is not valid Unicode.
    """
    parsed = Rule.parse(rule)
    if parsed.name == "soft":
        raise ConfigError("personalize picks one answer: use mean, lcb:κ, ucb:κ or thompson (soft:τ is for curves)")
    schedule.check()
    if not isinstance(input, str) or not input.strip():
        raise DataError("the input is empty")
    check_text(input, "the input")
    if user_id is not None:
        check_text(user_id, "the user id")
    return parsed


def _warnings(items: tuple[ProfileItem, ...], input: str) -> tuple[str, ...]:
    out = []
    if not items:
        out.append("empty profile: no personalization; the prompt is zero-shot and the RM sees no history")
    words = len(input.split())
    if words > MAX_INPUT_WORDS:
        out.append(f"the input has {words} words; the prompt keeps the first {MAX_INPUT_WORDS}")
    return tuple(out)


def _policy(policy: Policy | PolicySpec | None, task: TaskSpec, seed: int) -> Policy:
    if policy is not None and not isinstance(policy, PolicySpec):
        return policy
    spec = policy or PolicySpec("gemma3-270m", temperature=SHIPPED.temperature, top_p=SHIPPED.top_p,
                                max_new_tokens=task.max_new_tokens or 32, greedy=SHIPPED.greedy)
    return spec.build(task, seed)


def _draw(
    pol: Policy, rm: OnlineRM, query: Query, rule: Rule, seed: int, schedule: Schedule,
) -> tuple[list[dict], Scores, np.ndarray, int]:
    """Sample, score and select round by round until the schedule stops: ``(rows, scores, values, rounds)``."""
    rows: list[dict] = []
    rounds, target, scale = 0, schedule.first, rm.card.score_std if rm.card else None
    greedy = bool(getattr(getattr(pol, "config", None), "greedy", False))  # the greedy row is one of the first round's N
    while True:
        rq = Query(id=f"{query.id}#{rounds}", user_id=query.user_id, input=query.input, source=query.source,
                   profile=query.profile)
        cands = pol.sample([rq], max(target - len(rows) - (greedy and not rounds), 1))[0]
        cands = [c for c in cands if not (c.greedy and rounds)]  # a later round's greedy row repeats the first's
        if greedy and not rounds and len(cands) > target:  # n=1: the greedy answer alone (one sample was decoded beside it)
            cands = [c for c in cands if c.greedy]
        rows += [{QUERY_ID: query.id, USER_ID: query.user_id, IDX: len(rows) + i, TEXT: c.text, GREEDY: c.greedy,
                  LOGP: c.logp, N_TOKENS: c.n_tokens} for i, c in enumerate(cands)]
        rounds += 1
        s = rm.model.score(pd.DataFrame(rows), {query.id: query}, encoder=rm.encoder)
        values = apply_rule(s.mean, s.std if rm.model.probabilistic else None, rule, seed)
        step = schedule.next(values, scale)
        if not step:
            return rows, s, values, rounds
        target = len(rows) + step


def _scored(rows: list[dict], s: Scores, values: np.ndarray, probabilistic: bool) -> tuple[ScoredCandidate, ...]:
    std = np.asarray(s.std) if probabilistic else None
    return tuple(ScoredCandidate(int(r[IDX]), r[TEXT], float(s.mean[i]), None if std is None else float(std[i]), float(values[i]))
                 for i, r in enumerate(rows))


def answer(query: Query, task: TaskSpec, policy: Policy, rm: OnlineRM, rule: str, schedule: Schedule, seed: int) -> Personalized:
    """The per-query core of :func:`personalize` and the service: sample, score and select until ``schedule`` stops.

    ``rule`` (checked by :func:`check_request` and :meth:`OnlineRM.check_rule`) is recorded as given.
    """
    t0 = time.time()
    rows, s, values, rounds = _draw(policy, rm, query, Rule.parse(rule), seed, schedule)
    best = int(np.argmax(values))
    greedy = next((i for i, r in enumerate(rows) if r[GREEDY]), None)
    return Personalized(
        text=rows[best][TEXT], chosen=best, candidates=_scored(rows, s, values, rm.model.probabilistic), rule=str(rule),
        rm=rm.path, task=task.name, user_id=query.user_id, rounds=rounds,
        expected=_expectation(rm.card, np.asarray(s.mean), len(rows)), seconds=time.time() - t0,
        warnings=_warnings(query.profile, query.source), greedy=greedy,
    )


@checked(profile=list_of(instance(dict, ProfileItem, says=""), "a list of profile items (dicts or ProfileItem)"),
         input=STR, task=STR | instance(TaskSpec, says="a TaskSpec"), rm=PATH | has("score", "a reward model"),
         n=INT, rule=STR, policy=optional(has("sample", "a Policy") | instance(PolicySpec, says="a PolicySpec")),
         seed=INT, adaptive=BOOL, max_n=INT, round_size=INT, min_round_gain=REAL, user_id=optional(STR),
         encoder=optional(has("encode", "an encoder")), min_gain=optional(REAL))
def personalize(
    profile: Sequence[dict] | Sequence[ProfileItem], input: str, task: str | TaskSpec = "git-commits",
    rm: str | Path | RewardModel = "default", n: int = 16, rule: str = "mean", policy: Policy | PolicySpec | None = None,
    seed: int = 0, adaptive: bool = False, max_n: int = 32, round_size: int = 4, min_round_gain: float = 0.05,
    user_id: str | None = None, encoder: Encoder | None = None, *, min_gain: float | None = None,
) -> Personalized:
    """Pick the best of ``n`` personalized candidates for one new input.

    Args:
        profile: The user's past items: dicts with the task's source and target
            fields (and optionally ``id``), or :class:`ProfileItem`.
        input: The new input (a commit message, a package description...).
        task: Task name or spec (see :func:`ttpkit.data.resolve_task`).
        rm: ``default`` (the task's bundled model of
            :data:`~ttpkit.reward.bundled.DEFAULT_VARIANTS`, or the task-agnostic
            one), ``default:<variant>``, a model directory, or a model.
        rule: Selection rule (``mean``, ``lcb:κ``, ``ucb:κ``, ``thompson``); rules other than ``mean`` need a probabilistic RM.
        policy: A policy, or a policy setting (default: the embedded Gemma 3 270M, 4-shot).
        seed: Sampling seed.
        n, adaptive, max_n, round_size, min_round_gain: The :class:`Schedule`.
        user_id: The user's id (default: derived from the profile).
        encoder: Sentence encoder (default: the RM's depth and dtype, with the on-disk cache).
        min_gain: Deprecated name of ``min_round_gain`` (warns; removed in the next release).

    Raises:
        DataError: For a profile item that lacks the task's fields, an empty input, or text that is not valid Unicode.
        ConfigError: For an unknown rule, a rule the RM cannot apply, bad N settings, or an RM trained on another task.
        ArgumentError: For an argument of a type it does not take (a ``ConfigError``), naming it.
    """
    if min_gain is not None:
        warnings.warn("personalize(min_gain=...) is deprecated; use min_round_gain=...", DeprecationWarning, stacklevel=2)
        min_round_gain = min_gain
    t0 = time.time()
    spec = get_task(task) if isinstance(task, str) else task
    schedule = Schedule(n, adaptive, max_n, round_size, min_round_gain)
    parsed = check_request(rule, schedule, input, user_id)
    items = _profile(profile, spec)
    loaded = OnlineRM.load(rm, spec, encoder, getattr(policy, "device", "cpu"))  # checked before the policy loads
    loaded.check_rule(parsed, rule)
    query = make_query(items, input, spec, user_id)
    out = answer(query, spec, _policy(policy, spec, seed), loaded, rule, schedule, seed)
    loaded.encoder.save_cache()
    return replace(out, seconds=time.time() - t0)
