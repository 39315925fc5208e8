"""Where local models run: ``--device auto|cpu|cuda``.

``cpu`` is the default and the tested path: models load in float32 and results
are what they were before this option existed. ``cuda`` loads models in
bfloat16 on the first GPU; ``auto`` is ``cuda`` when ``torch.cuda.is_available()``,
else ``cpu``. :func:`check_device` validates a name without importing torch (so
a bad ``--device`` fails before any model loads), and :func:`resolve_device`
turns ``auto`` into the device that will be used, refusing ``cuda`` on a
machine without CUDA. Pool manifests record the device only when it is not
``cpu``, so pools sampled before the option still resume.
"""

from __future__ import annotations

from ttpkit.errors import ConfigError

__all__ = ["DEVICES", "check_device", "model_dtype", "resolve_device"]

DEVICES = ("auto", "cpu", "cuda")


def check_device(device: str) -> str:
    """``device`` if it is one of :data:`DEVICES`.

    Raises:
        ConfigError: Naming the value and the known ones.
    """
    if device not in DEVICES:
        raise ConfigError(f"--device must be one of {', '.join(DEVICES)}, got {device!r}")
    return device


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def resolve_device(device: str) -> str:
    """``cpu`` or ``cuda``: the device ``device`` (one of :data:`DEVICES`) means on this machine.

    Raises:
        ConfigError: For an unknown name, or ``cuda`` where torch sees no CUDA device.
    """
    check_device(device)
    if device == "cpu":
        return "cpu"
    if _cuda_available():
        return "cuda"
    if device == "auto":
        return "cpu"
    raise ConfigError("--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False); "
                      "use --device cpu or auto")


def model_dtype(device: str) -> str:
    """The dtype local models load in on a resolved device: float32 on the CPU, bfloat16 on CUDA."""
    return "bfloat16" if device == "cuda" else "float32"
