"""The policy interface: queries in, ``m`` candidates per query out (a pool's M)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ttpkit.data import Query
from ttpkit.errors import ConfigError

__all__ = ["MAX_SEED", "MIN_TEMPERATURE", "Candidate", "Completer", "Policy", "SamplingConfig", "check_seed", "query_seed"]

MAX_SEED = 2**63 - 1  # seeds go into the pool's int64 seed column: a larger one could never be written
MIN_TEMPERATURE = 1e-3  # below this, logits / T overflows float32 (1e-300 decoded as "p p p ..."); use a small T for near-greedy


def check_seed(seed: object, what: str = "seed") -> int:
    """``seed`` if it is an integer in 0..:data:`MAX_SEED`, else a :class:`ConfigError` giving the range."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{what} must be an integer in 0..{MAX_SEED} (2**63-1), got {seed!r}")
    return seed


@dataclass(frozen=True)
class Candidate:
    """One sampled answer; the fields are the pool file's columns."""

    query_id: str
    user_id: str
    idx: int
    text: str
    policy: str
    seed: int


@dataclass(frozen=True)
class SamplingConfig:
    """Decoding settings shared by every backend.

    Attributes:
        temperature: Softmax temperature (>= :data:`MIN_TEMPERATURE`).
        top_p: Nucleus mass kept (0 < top_p <= 1).
        max_new_tokens: Upper bound on generated tokens per candidate; a
            subject line or synopsis rarely needs more than 32.
        seed: Run seed (0..:data:`MAX_SEED`); each query's generator is seeded from (seed, query id),
            so a query's samples do not depend on batching or on resuming.
        k: Retrieved profile items per prompt.
    """

    temperature: float = 1.0
    top_p: float = 0.95
    max_new_tokens: int = 32
    seed: int = 0
    k: int = 4
    extra: dict = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.temperature >= MIN_TEMPERATURE:
            raise ConfigError(f"temperature must be >= {MIN_TEMPERATURE} (smaller values overflow the softmax), "
                              f"got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.k < 0:
            raise ConfigError(f"k (retrieved profile items) must be >= 0, got {self.k}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        check_seed(self.seed)


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
