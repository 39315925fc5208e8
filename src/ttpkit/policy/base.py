"""The policy interface: queries in, ``m`` candidates per query out (a pool's M)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from ttpkit.data import Query
from ttpkit.errors import ConfigError

__all__ = [
    "GREEDY",
    "MAX_SEED",
    "SHIPPED",
    "MAX_TEMPERATURE",
    "MIN_TEMPERATURE",
    "Candidate",
    "Completer",
    "Completion",
    "Policy",
    "SamplerDefaults",
    "SamplingConfig",
    "check_seed",
    "query_seed",
    "sample_queries",
]

MAX_SEED = 2**63 - 1  # seeds go into the pool's int64 seed column: a larger one could never be written
# Temperature 0 is greedy decoding (argmax). Between 0 and MIN_TEMPERATURE, logits / T overflows float32
# (1e-300 decoded as "p p p ..."); above MAX_TEMPERATURE the distribution is flat to float precision.
GREEDY = 0.0
MIN_TEMPERATURE = 1e-3
MAX_TEMPERATURE = 100.0


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` if it is an integer in 0..:data:`MAX_SEED`, else a :class:`ConfigError` giving the range."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{what} must be an integer in 0..{MAX_SEED} (2**63-1), got {seed!r}")
    return seed


@dataclass(frozen=True)
class Candidate:
    """One sampled answer; the fields are the pool file's columns.

    ``greedy`` marks the greedy decode of the query's prompt (temperature 0),
    the one answer a user gets without best-of-N; a pool sampled with
    ``SamplingConfig(greedy=True)`` has it as row ``idx == m`` after the ``m``
    samples. ``logp`` is the candidate's log-probability under the untempered
    model (nats, generated tokens including the one that ended the line) and
    ``n_tokens`` how many tokens that is; NaN and 0 where the backend does not
    report them.
    """

    query_id: str
    user_id: str
    idx: int
    text: str
    policy: str
    seed: int
    greedy: bool = False
    logp: float = float("nan")
    n_tokens: int = 0


@dataclass(frozen=True)
class Completion:
    """One decoded continuation of a prompt: its text (cut to one completion) and its log-likelihood.

    Attributes:
        text: The completion.
        logp: Sum of the generated tokens' log-probabilities under the
            untempered model (NaN if the backend does not report it).
        n_tokens: Tokens generated (0 if unknown).
        greedy: Whether it is the greedy (argmax) decode.
    """

    text: str
    logp: float = float("nan")
    n_tokens: int = 0
    greedy: bool = False


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings shared by every backend.

    Attributes:
        temperature: Softmax temperature: 0 is greedy decoding (argmax, every
            row the same text), otherwise in [:data:`MIN_TEMPERATURE`, :data:`MAX_TEMPERATURE`].
        top_p: Nucleus mass kept (0 < top_p <= 1).
        max_new_tokens: Upper bound on generated tokens per candidate; a
            subject line or synopsis rarely needs more than 32.
        seed: Run seed (0..:data:`MAX_SEED`); each query's generator is seeded from (seed, query id),
            so a query's samples do not depend on batching or on resuming.
        k: Retrieved profile items per prompt.
        greedy: Also decode each prompt greedily, as one more candidate per
            query (``idx == m``, ``greedy`` True), in the same batch as its
            samples; the samples are the same with or without it.
    """

    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 32
    seed: int = 0
    k: int = 4
    extra: dict = field(default_factory=dict, compare=False)
    greedy: bool = False

    def __post_init__(self) -> None:
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not (t == GREEDY or MIN_TEMPERATURE <= t <= MAX_TEMPERATURE):
            raise ConfigError(f"temperature must be 0 (greedy) or in [{MIN_TEMPERATURE}, {MAX_TEMPERATURE:g}] "
                              f"(smaller values overflow the softmax, larger ones are flat), got {t!r}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.k < 0:
            raise ConfigError(f"k (retrieved profile items) must be >= 0, got {self.k}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        check_seed(self.seed)


    @property
    def is_greedy(self) -> bool:
        """Whether every row is the greedy decode (temperature 0)."""
        return self.temperature == GREEDY


@dataclass(frozen=True)
class SamplerDefaults:
    """The sampler settings ttpkit ships: what ``ttpkit sample``, ``personalize`` and ``serve`` use unless told otherwise.

    One record, so that a pool sampled with the defaults holds what users get.
    Chosen with the default scorer by cross-validation over dev users, against
    greedy (docs/results.md, "Against greedy").

    Attributes:
        temperature: Softmax temperature of the samples.
        top_p: Nucleus mass.
        greedy: Whether the greedy decode is one of the N candidates.
    """

    temperature: float
    top_p: float
    greedy: bool


SHIPPED = SamplerDefaults(temperature=0.7, top_p=0.95, greedy=True)  # chosen on dev (docs/results.md, "Against greedy")


def query_seed(seed: int, query_id: str) -> int:
    """A 63-bit seed for one query, stable across processes and Python versions."""
    digest = hashlib.sha256(f"{seed}:{query_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@runtime_checkable
class Policy(Protocol):
    """A generator of candidates.

    Attributes:
        name: Goes into the pool's ``policy`` column.
        batch_queries: How many queries one :meth:`sample` call decodes
            together. The sampling stage (:func:`ttpkit.stages.sample_pool`)
            cuts a run's queries into batches of that many, the only place
            they are cut, and journals after each call; :meth:`sample`
            decodes whatever it is handed as one batch.
    """

    name: str
    batch_queries: int

    def sample(self, queries: list[Query], m: int) -> list[list[Candidate]]:
        """Return ``m`` candidates for each query, in query order."""
        ...


@runtime_checkable
class Completer(Protocol):
    """A raw-prompt completer, what ``ttpkit serve`` exposes (local policies are one).

    ``config`` is read for the defaults of a request and replaced for its
    duration; a completer may also offer ``complete_many(prompts, n, seeds)``
    to decode several prompts in one batch.
    """

    config: SamplingConfig

    def complete(self, prompt: str, n: int, seed: int) -> list[str]:
        """``n`` completions of one prompt from a generator seeded with ``seed``."""
        ...


def sample_queries(policy: Any, queries: list[Query], m: int) -> list[list[Candidate]]:
    """The body every :meth:`Policy.sample` shares: prompts, per-query seeds, one batched decode, candidate rows.

    ``policy`` has ``config`` (:class:`SamplingConfig`), ``prompt`` (a
    :class:`~ttpkit.policy.prompt.PromptBuilder`), ``name`` and
    ``complete_scored(prompts, n, seeds, greedy) -> list[list[Completion]]``,
    which returns ``n`` samples per prompt, then its greedy decode when
    ``greedy``; a completer with only ``complete_many(prompts, n, seeds)``
    (texts) serves when the greedy row is not asked for.

    Raises:
        ConfigError: If ``m < 1``, or the backend returned another number of completions.
    """
    if m < 1:
        raise ConfigError(f"m (candidates per query) must be >= 1, got {m}")
    cfg = policy.config
    seeds = [query_seed(cfg.seed, q.id) for q in queries]
    prompts = [policy.prompt(q) for q in queries]
    if hasattr(policy, "complete_scored"):
        outs = policy.complete_scored(prompts, m, seeds, cfg.greedy)
    elif cfg.greedy:
        raise ConfigError(f"{policy.name}: this backend cannot add the greedy row (it has no complete_scored)")
    else:
        outs = [[Completion(t) for t in texts] for texts in policy.complete_many(prompts, m, seeds)]
    want = m + bool(cfg.greedy)
    rows = []
    for q, completions in zip(queries, outs):
        if len(completions) != want:
            raise ConfigError(f"{policy.name}: returned {len(completions)} completions for query {q.id}, asked for {want}")
        rows.append([Candidate(q.id, q.user_id, j, c.text, policy.name, cfg.seed, c.greedy, c.logp, c.n_tokens)
                     for j, c in enumerate(completions)])
    return rows
