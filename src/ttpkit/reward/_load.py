"""From a name or a directory to a scorer: :func:`load_rm` and :func:`resolve_scorer`.

:func:`load_rm` reads any saved reward-model directory, telling the kinds apart
by what it holds (``ensemble.json``: an ensemble; a ``config.json`` with a
``cross_encoder`` object: a cross-encoder; any other ``config.json``: a feature
RM). :func:`resolve_scorer` reads the ``--rm`` grammar of the command line.
"""

from __future__ import annotations

import math
from pathlib import Path

from ttpkit.errors import ConfigError, DataError
from ttpkit.reward._io import CONFIG, ENSEMBLE, WEIGHTS, read_json
from ttpkit.reward.bundled import bundled_path
from ttpkit.reward.cross import CrossEncoderRM
from ttpkit.reward.ensemble import EnsembleRM
from ttpkit.reward.mbr import MBRScorer, RegScorer
from ttpkit.reward.models import RewardModel

__all__ = ["SCORER_FORMS", "Scorer", "load_rm", "resolve_scorer"]

Scorer = RewardModel | EnsembleRM | CrossEncoderRM | MBRScorer | RegScorer
SCORER_FORMS = ("default", "default:<variant>", "mbr", "reg:<base>:<beta>", "<model directory>")


def load_rm(path: str | Path) -> RewardModel | EnsembleRM | CrossEncoderRM:
    """Load the reward model saved in ``path``, whichever kind it is.

    Raises:
        DataError: Naming the directory when it holds no reward model, or a torn
            or damaged one (see :mod:`ttpkit.reward._io`).
    """
    d = Path(path)
    if not d.is_dir():
        raise DataError(f"{d}: no such reward model directory")
    if (d / ENSEMBLE).is_file() or (d / "member-0").is_dir():
        return EnsembleRM.load(d)
    config = d / CONFIG
    if config.is_file() and "cross_encoder" in read_json(config, "a 'config' key"):
        return CrossEncoderRM.load(d)
    if not config.is_file() and not (d / WEIGHTS).is_file():
        raise DataError(f"{d}: not a ttpkit reward model (needs config.json and model.safetensors, "
                        "or ensemble.json and member-<i>/)")
    return RewardModel.load(d)


def resolve_scorer(spec: str | Path, task: str) -> Scorer:
    """The scorer that ``--rm <spec>`` names, ready to score.

    Args:
        spec: ``default`` or ``default:<variant>`` (the bundled model of ``task``),
            ``mbr``, ``reg:<base>:<beta>`` (``z(score_<base>) + beta z(mbr)``) or
            a saved model directory (any kind; see :func:`load_rm`).
        task: The pool's task (picks the bundled model).

    Raises:
        ConfigError: For a spec of none of these forms (listing them).
        DataError: For a directory that holds no readable model.
    """
    text = str(spec)
    if text == "default" or text.startswith("default:"):
        return load_rm(bundled_path(task, text.split(":", 1)[1] if ":" in text else None))
    if text == "mbr":
        return MBRScorer()
    if text == "reg" or text.startswith("reg:"):
        parts = text.split(":")
        beta = _number(parts[2]) if len(parts) == 3 else None
        if len(parts) != 3 or not parts[1] or beta is None:
            raise ConfigError(f"--rm {text}: write reg:<base>:<beta> with a score column's name and a number, "
                              f"say reg:user-pairwise:0.5 (forms: {', '.join(SCORER_FORMS)})")
        return RegScorer(parts[1], beta)
    if Path(text).is_dir():
        return load_rm(text)
    raise ConfigError(f"--rm {text}: not a model directory nor a scorer name (forms: {', '.join(SCORER_FORMS)})")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
