"""Reward models: scorers of a pool's candidates, trained or not, and their files.

| module          | holds                                                                            |
|-----------------|----------------------------------------------------------------------------------|
| ``config``      | :class:`RMConfig` (a feature RM's training settings), :data:`VARIANTS`,          |
|                 | :func:`read_rm_config` (the reader of a saved model's ``config.json``)           |
| ``encoder``     | :class:`Encoder` (all-MiniLM-L6-v2 with a content-hash cache), ``check_layers``  |
| ``features``    | the feature names and :func:`build_features`                                     |
| ``models``      | :class:`RewardModel` (pointwise, pairwise, probabilistic) and :class:`Scores`    |
| ``ensemble``    | :class:`EnsembleRM` (deep ensembles of one variant)                              |
| ``cross``       | :class:`CrossEncoderRM` and :class:`CrossConfig`                                 |
| ``judge``       | :class:`JudgeRM` (an LLM's 1-5 rating)                                           |
| ``mbr``         | :func:`mbr_scores`, :class:`MBRScorer` and :class:`RegScorer` (no training)      |
| ``style``       | :func:`style_scores` (the naive personalized baseline)                           |
| ``calibration`` | :func:`calibration` (is a probabilistic RM's variance any good?)                 |
| ``bundled``     | the models shipped in the wheel: :func:`bundled_path`, :func:`resolve_rm`, cards |
| ``_io``         | one atomic save and one checked load (SHA-256 and manifest) for every RM kind     |
| ``base``        | :class:`Scorer` (the interface), :class:`Trainable`, :class:`Needs`, :class:`ScorerKind` |
| ``_load``       | :data:`KINDS` (the scorer registry), :func:`register_kind`, :func:`load_rm` (any |
|                 | saved kind) and :func:`resolve_scorer` (the ``--rm`` grammar)                    |

Nothing here imports torch until a model is trained, scored or loaded.
"""

from __future__ import annotations

from ttpkit.reward._load import KINDS, SCORER_FORMS, load_rm, register_kind, resolve_scorer
from ttpkit.reward.base import Needs, Scorer, ScorerKind, Trainable
from ttpkit.reward.bundled import ModelCard, bundled_path, load_card, resolve_rm
from ttpkit.reward.calibration import Calibration, calibration
from ttpkit.reward.config import VARIANTS, RMConfig, read_rm_config
from ttpkit.reward.cross import CrossConfig, CrossEncoderRM
from ttpkit.reward.encoder import Encoder
from ttpkit.reward.ensemble import EnsembleRM
from ttpkit.reward.features import build_features
from ttpkit.reward.judge import JudgeRM
from ttpkit.reward.mbr import MBRScorer, RegScorer, mbr_scores
from ttpkit.reward.models import RewardModel, Scores
from ttpkit.reward.style import style_scores

__all__ = ["KINDS", "SCORER_FORMS", "VARIANTS", "Calibration", "CrossConfig", "CrossEncoderRM", "Encoder", "EnsembleRM",
           "JudgeRM", "MBRScorer", "ModelCard", "Needs", "RMConfig", "RegScorer", "RewardModel", "Scorer", "ScorerKind",
           "Scores", "Trainable", "build_features", "bundled_path", "calibration", "load_card", "load_rm", "mbr_scores",
           "read_rm_config", "register_kind", "resolve_rm", "resolve_scorer", "style_scores"]
