"""A feature reward model's training configuration and the reader of its saved ``config.json``.

:class:`RMConfig` validates every setting when it is made (types and ranges,
:func:`check_number`; an unknown variant lists the known ones; a network of
more than :data:`MAX_WEIGHTS` weights is refused before anything is
allocated); :func:`read_rm_config` reads a saved model's ``config.json`` and
refuses, with one line naming the file and the key, what this ttpkit cannot
read (malformed JSON, a malformed or newer format, an unknown setting, a
feature list that is no list of names, or another one).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttpkit import __version__
from ttpkit.errors import ConfigError, DataError
from ttpkit.manifest import check_format
from ttpkit.reward._io import CONFIG, WEIGHTS, check_is_file, read_json
from ttpkit.reward.encoder import check_layers
from ttpkit.reward.features import GLOBAL_FEATURES, LONG_FEATURES, USER_FEATURES

__all__ = ["MAX_WEIGHTS", "VARIANTS", "RMConfig", "check_number", "parse_rm_config", "read_rm_config"]

VARIANTS = ("global-mse", "user-mse", "user-pairwise", "user-prob")
MAX_WEIGHTS = 100_000_000  # 400 MB of float32: hidden up to about 10,000 (the bundled models have 32, 1,665 weights)


def check_number(name: str, value: Any, *, integer: bool = False, low: float | None = None, high: float | None = None,
                 strict: bool = False) -> None:
    """Refuse ``value`` unless it is a finite real number (an integer if ``integer``) in ``[low, high]``.

    ``strict`` makes the lower bound exclusive. Booleans and strings (``"0.5"``)
    are refused: a JSON file that says ``true`` or ``"32"`` was not written by ttpkit.

    Raises:
        ConfigError: Naming ``name``, what it must be and the value.
    """
    kind = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)):
        raise ConfigError(f"{name} must be {kind}, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if low is not None and (value <= low if strict else value < low):
        raise ConfigError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}")
    if high is not None and value > high:
        raise ConfigError(f"{name} must be <= {high}, got {value!r}")


@dataclass(frozen=True)
class RMConfig:
    """Training configuration of a reward model.

    Attributes:
        variant: One of :data:`VARIANTS`.
        hidden: Width of the two hidden layers.
        lr: Adam learning rate (full-batch training; pools are small).
        weight_decay: L2 penalty (AdamW).
        max_epochs: Upper bound on full-batch steps.
        patience: Early stopping: steps without a better dev loss.
        var_floor: Variance floor of ``user-prob`` in utility units squared;
            keeps the NLL finite on near-duplicate candidates.
        beta: β of β-NLL (Seitzer et al. 2022); 0 is the plain Gaussian NLL.
        k: Retrieved profile items used by the features.
        seed: Seed of initialization and the dev split.
        encoder_layers: MiniLM layers behind the embedding features (see
            :class:`~ttpkit.reward.features.Encoder`); ``None``: all 6. The
            model is scored with the same setting it was trained with.
        encoder_dtype: The encoder's dtype when scoring: ``float32``,
            ``bfloat16`` or ``auto`` (bfloat16 on CPUs with native bf16).
            Scores agree to a Spearman correlation of 1.00000 (docs/performance.md).
        long_form: Add the multi-line features of
            :data:`~ttpkit.reward.features.LONG_FEATURES` (repetition,
            vocabulary, coverage of the retrieved texts, line structure);
            ``ttpkit train-rm`` sets it for multi-line tasks.
    """

    variant: str = "user-prob"
    hidden: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-3
    max_epochs: int = 2000
    patience: int = 100
    var_floor: float = 1e-4
    beta: float = 0.0
    k: int = 4
    seed: int = 0
    encoder_layers: int | None = None
    encoder_dtype: str = "float32"
    long_form: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "encoder_layers", check_layers(self.encoder_layers))
        if self.encoder_dtype not in ("float32", "bfloat16", "auto"):
            raise ConfigError(f"encoder_dtype must be float32, bfloat16 or auto, got {self.encoder_dtype!r}")
        if self.variant not in VARIANTS:
            raise ConfigError(f"unknown RM variant {self.variant!r}; known variants: {', '.join(VARIANTS)}")
        check_number("beta", self.beta, low=0.0, high=1.0)
        for name, low, strict in (("hidden", 1, False), ("max_epochs", 1, False), ("patience", 1, False), ("k", 0, False),
                                  ("lr", 0.0, True), ("var_floor", 0.0, True), ("weight_decay", 0.0, False)):
            check_number(name, getattr(self, name), integer=isinstance(low, int), low=low, strict=strict)
        check_number("seed", self.seed, integer=True)
        if not isinstance(self.long_form, bool):
            raise ConfigError(f"long_form must be true or false, got {self.long_form!r}")
        if self.weight_count > MAX_WEIGHTS:
            raise ConfigError(f"hidden={self.hidden} makes a network of {self.weight_count:,} weights "
                              f"({self.weight_count * 4 / 1e9:,.1f} GB); at most {MAX_WEIGHTS:,} are allowed")

    @property
    def weight_count(self) -> int:
        """Weights of the network: (F, hidden), (hidden, hidden), (hidden, outputs) and their biases."""
        f, h, o = len(self.features), self.hidden, 2 if self.probabilistic else 1
        return f * h + h + h * h + h + h * o + o

    @property
    def features(self) -> tuple[str, ...]:
        """Feature names used by this variant."""
        if self.variant == "global-mse":
            return GLOBAL_FEATURES + (LONG_FEATURES[len(USER_FEATURES):len(USER_FEATURES) + 2] if self.long_form else ())
        return LONG_FEATURES if self.long_form else USER_FEATURES

    @property
    def probabilistic(self) -> bool:
        """Whether the model predicts a variance."""
        return self.variant == "user-prob"


def read_rm_config(directory: str | Path) -> tuple[dict, RMConfig]:
    """Read and check a reward model's ``config.json``: its JSON, manifest, version and training config.

    Raises:
        DataError: Naming the file and what is wrong (missing, malformed, a key
            of the wrong type, a format or feature list this version does not have).
    """
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"{d}: no such reward model directory")
    path = d / CONFIG
    check_is_file(path)
    check_is_file(d / WEIGHTS)
    if not path.is_file() or not (d / WEIGHTS).is_file():
        torn = " (model.safetensors without config.json: a save was interrupted)" if (d / WEIGHTS).is_file() else ""
        raise DataError(f"{d}: not a ttpkit reward model (needs config.json and model.safetensors){torn}")
    meta = read_json(path, "a 'config' key")
    check_format(path, meta, "rm")
    config = parse_rm_config(path, meta)
    features = meta.get("features")
    if features is not None and (not isinstance(features, list) or not all(isinstance(f, str) for f in features)):
        raise DataError(f"{path}: 'features' must be a list of feature names, got {features!r}")
    if features is not None and features != list(config.features):
        raise DataError(f"{path}: written by ttpkit {meta.get('ttpkit', '?')} with features {features}; "
                        f"ttpkit {__version__} computes {list(config.features)} for {config.variant}")
    tasks = meta.get("tasks", [])
    if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
        raise DataError(f"{path}: 'tasks' must be a list of task names")
    return meta, config


def parse_rm_config(path: Path, meta: dict) -> RMConfig:
    """The :class:`RMConfig` in a saved record's ``config`` object (``path`` names the record in messages).

    Raises:
        DataError: If there is none, it names a setting this version does not
            have, or a value is invalid.
    """
    raw = meta.get("config")
    if not isinstance(raw, dict):
        raise DataError(f"{path}: no 'config' object (the model's training configuration)")
    known = {f.name for f in dataclasses.fields(RMConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise DataError(f"{path}: config.{unknown[0]} is not a setting of ttpkit {__version__} "
                        f"(the file says ttpkit {meta.get('ttpkit', '?')})")
    try:
        return RMConfig(**raw)
    except (ConfigError, TypeError) as e:
        raise DataError(f"{path}: config: {e}") from None
