"""What every scorer is: the :class:`Scorer` interface, :class:`Trainable` for kinds that learn, and :class:`ScorerKind`.

A scorer turns a pool's candidates into :class:`Scores` (a mean, and a standard
deviation when it is ``probabilistic``). What it needs before it can score is
one record, :class:`Needs`, so callers read it instead of probing a config:
``stages.score_pool`` and ``ttpkit score`` build an encoder only when
``needs.encoder``, at the depth and dtype it names.

A kind of scorer is one module and one :class:`ScorerKind` row in the registry
(:data:`ttpkit.reward._load.KINDS`, :func:`ttpkit.reward.register_kind`): how
``--rm`` names it, how a saved directory of it is recognized and loaded.
:func:`ttpkit.reward.load_rm` and :func:`ttpkit.reward.resolve_scorer` read only
that table.

| kind       | class                | trains | saved as                                  | needs            |
|------------|----------------------|--------|-------------------------------------------|------------------|
| ``feature``| :class:`RewardModel` | yes    | ``config.json`` + ``model.safetensors``   | encoder          |
| ``ensemble``| :class:`EnsembleRM` | yes    | ``ensemble.json`` + ``member-<i>/``       | encoder          |
| ``cross``  | :class:`CrossEncoderRM` | yes | ``config.json`` with ``cross_encoder``    | nothing          |
| ``mbr``    | :class:`MBRScorer`   | no     |                                           | nothing          |
| ``reg``    | :class:`RegScorer`   | no     |                                           | two score columns|
| ``implicit``| :class:`ImplicitScorer` | no  |                                           | the policy       |
| ``stacked``| :class:`StackedScorer` | yes  | ``stacked.json``                          | its RM's column, or an encoder |
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd

    from ttpkit.data import Query
    from ttpkit.reward.models import Scores

__all__ = ["NOTHING", "Needs", "Scorer", "ScorerKind", "Trainable"]


@dataclass(frozen=True)
class Needs:
    """What a scorer needs before it can score a pool.

    Attributes:
        encoder: A sentence encoder (:class:`ttpkit.reward.Encoder`) passed to ``score``.
        encoder_layers: The encoder's depth (``None``: all layers); it must be the one the scorer was trained with.
        encoder_dtype: The encoder's dtype when none is given.
        policy: A language model (an LLM judge).
        columns: Pool columns that must be there (``reg`` reads two score columns).
        row_features: ``score`` is ``score_features(features(pool))`` and a row's
            features depend only on the row and its query, so the service may
            compute many requests' features in one pass (:mod:`ttpkit.serve._scoring`).
    """

    encoder: bool = False
    encoder_layers: int | None = None
    encoder_dtype: str = "float32"
    policy: bool = False
    columns: tuple[str, ...] = ()
    row_features: bool = False


NOTHING = Needs()


@runtime_checkable
class Scorer(Protocol):
    """A scorer of a pool's candidates (``score_<name>``, and ``std_<name>`` when probabilistic)."""

    @property
    def name(self) -> str:
        """Default column suffix of its scores."""

    @property
    def probabilistic(self) -> bool:
        """Whether its scores come with a standard deviation."""

    @property
    def needs(self) -> Needs:
        """What it needs before it can score."""

    def score(self, pool: pd.DataFrame, by_id: Mapping[str, Query], encoder: Any = None) -> Scores:
        """Scores of ``pool``'s rows (R,), in row order, against their queries in ``by_id``."""


class Trainable(Scorer, Protocol):
    """A scorer that learns from a labelled pool and is saved and loaded through :mod:`ttpkit.reward._io`."""

    def fit(self, pool: pd.DataFrame, by_id: Mapping[str, Query], dev_pool: pd.DataFrame | None = None,
            dev_by_id: Mapping[str, Query] | None = None, encoder: Any = None, utility: str = ...) -> Trainable:
        """Learn ``utility`` from ``pool`` (early stopping on ``dev_pool`` where the kind has it); returns ``self``."""

    def save(self, directory: str | Path) -> Path:
        """Write the model atomically to ``directory``; return it."""


@dataclass(frozen=True)
class ScorerKind:
    """One row of the scorer registry: how a kind is named, recognized and loaded.

    Attributes:
        name: The kind's name (``feature``, ``mbr``...).
        forms: The ``--rm`` forms it answers, for error messages (``reg:<base>:<beta>``); none for saved kinds.
        parse: ``parse(text, task)``: the scorer ``--rm text`` names, or ``None`` when ``text`` is not this kind's form.
        holds: ``holds(directory)``: whether a saved directory is of this kind.
        load: ``load(directory)``: the saved scorer.
    """

    name: str
    forms: tuple[str, ...] = ()
    parse: Callable[[str, str], Scorer | None] | None = None
    holds: Callable[[Path], bool] | None = None
    load: Callable[[Path], Scorer] | None = None
