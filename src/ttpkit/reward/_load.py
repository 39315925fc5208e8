"""From a name or a directory to a scorer: the registry of scorer kinds, :func:`load_rm` and :func:`resolve_scorer`.

:data:`KINDS` is the one table of scorer kinds (:class:`~ttpkit.reward.base.ScorerKind`
rows): the ``--rm`` forms each answers and how a saved directory of each is
recognized and loaded. :func:`load_rm` reads any saved reward-model directory
by asking the rows in order (``ensemble.json``: an ensemble; a ``config.json``
with a ``cross_encoder`` object: a cross-encoder; any other ``config.json``: a
feature RM); :func:`resolve_scorer` reads the ``--rm`` grammar. A new kind is
one module and one row, added here or with :func:`register_kind`.
"""

from __future__ import annotations

import math
from pathlib import Path

from ttpkit.errors import ConfigError, DataError
from ttpkit.reward._io import CONFIG, ENSEMBLE, WEIGHTS, read_json
from ttpkit.reward.base import Scorer, ScorerKind
from ttpkit.reward.bundled import bundled_path
from ttpkit.reward.cross import CrossEncoderRM
from ttpkit.reward.ensemble import EnsembleRM
from ttpkit.reward.implicit import FORMS as IMPLICIT_FORMS
from ttpkit.reward.implicit import ImplicitScorer
from ttpkit.reward.mbr import MBRScorer, RegScorer
from ttpkit.reward.models import RewardModel
from ttpkit.reward.stack import StackedScorer

__all__ = ["KINDS", "SCORER_FORMS", "Scorer", "load_rm", "register_kind", "resolve_scorer"]


def _reg(text: str, task: str) -> RegScorer | None:
    if text != "reg" and not text.startswith("reg:"):
        return None
    parts = text.split(":")
    beta = _number(parts[2]) if len(parts) == 3 else None
    if len(parts) != 3 or not parts[1] or beta is None:
        raise ConfigError(f"--rm {text}: write reg:<base>:<beta> with a score column's name and a number, "
                          f"say reg:user-pairwise:0.5 (forms: {', '.join(scorer_forms())})")
    return RegScorer(parts[1], beta)


def _implicit(text: str, task: str) -> ImplicitScorer | None:
    """``implicit`` or ``implicit:<form>`` (``loglik``, ``loglik-tok`` and the contrasts; the policy is set where it scores)."""
    head, _, form = text.partition(":")
    if head != "implicit":
        return None
    if form and form not in IMPLICIT_FORMS:
        raise ConfigError(f"--rm {text}: unknown form {form!r}; forms: {', '.join(IMPLICIT_FORMS)}")
    return ImplicitScorer(form or "implicit")


def _is_cross(d: Path) -> bool:
    return (d / CONFIG).is_file() and "cross_encoder" in read_json(d / CONFIG, "a 'config' key")


KINDS: dict[str, ScorerKind] = {kind.name: kind for kind in (
    ScorerKind("mbr", forms=("mbr",), parse=lambda text, task: MBRScorer() if text == "mbr" else None),
    ScorerKind("reg", forms=("reg:<base>:<beta>",), parse=_reg),
    ScorerKind("implicit", forms=("implicit[:<form>]",), parse=_implicit),
    ScorerKind("stacked", holds=lambda d: (d / "stacked.json").is_file(), load=StackedScorer.load),
    ScorerKind("ensemble", holds=lambda d: (d / ENSEMBLE).is_file() or (d / "member-0").is_dir(), load=EnsembleRM.load),
    ScorerKind("cross", holds=_is_cross, load=CrossEncoderRM.load),
    ScorerKind("feature", holds=lambda d: (d / CONFIG).is_file() or (d / WEIGHTS).is_file(), load=RewardModel.load),
)}


def register_kind(kind: ScorerKind) -> None:
    """Add a scorer kind to :data:`KINDS`, asked before the built-in ones (a saved feature RM's test is broad).

    Raises:
        ConfigError: If a kind of that name is registered already.
    """
    if kind.name in KINDS:
        raise ConfigError(f"a scorer kind named {kind.name!r} is registered already (kinds: {', '.join(KINDS)})")
    rows = [kind, *KINDS.values()]
    KINDS.clear()
    KINDS.update((k.name, k) for k in rows)


def scorer_forms() -> tuple[str, ...]:
    """Every ``--rm`` form: the bundled models', each registered kind's, and a model directory."""
    return ("default", "default:<variant>", *(f for k in KINDS.values() for f in k.forms), "<model directory>")


SCORER_FORMS = scorer_forms()  # the built-in kinds' forms


def load_rm(path: str | Path) -> Scorer:
    """Load the reward model saved in ``path``, whichever registered kind it is.

    Raises:
        DataError: Naming the directory when it holds no reward model, or a torn
            or damaged one (see :mod:`ttpkit.reward._io`).
    """
    d = Path(path)
    if not d.is_dir():
        raise DataError(f"{d}: no such reward model directory")
    for kind in KINDS.values():
        if kind.holds is not None and kind.load is not None and kind.holds(d):
            return kind.load(d)
    raise DataError(f"{d}: not a ttpkit reward model (needs config.json and model.safetensors, "
                    "or ensemble.json and member-<i>/)")


def resolve_scorer(spec: str | Path, task: str) -> Scorer:
    """The scorer that ``--rm <spec>`` names, ready to score.

    Args:
        spec: ``default`` or ``default:<variant>`` (the bundled model of ``task``),
            a registered kind's form (``mbr``; ``reg:<base>:<beta>``, that is
            ``z(score_<base>) + beta z(mbr)``) or a saved model directory (any
            kind; see :func:`load_rm`).
        task: The pool's task (picks the bundled model).

    Raises:
        ConfigError: For a spec of none of these forms (listing them).
        DataError: For a directory that holds no readable model.
    """
    text = str(spec)
    if text == "default" or text.startswith("default:"):
        return load_rm(bundled_path(task, text.split(":", 1)[1] if ":" in text else None))
    for kind in KINDS.values():
        scorer = kind.parse(text, task) if kind.parse is not None else None
        if scorer is not None:
            return scorer
    if Path(text).is_dir():
        return load_rm(text)
    raise ConfigError(f"--rm {text}: not a model directory nor a scorer name (forms: {', '.join(scorer_forms())})")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None
