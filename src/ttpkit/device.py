"""Where local models run and in what precision: ``--device auto|cpu|cuda`` and ``--dtype auto|float32|bfloat16``.

``cpu`` is the default and the tested path: models load in float32 and results
are what they were before this option existed. ``cuda`` loads models in
bfloat16 on the first GPU; ``auto`` is ``cuda`` when ``torch.cuda.is_available()``,
else ``cpu``. :func:`check_device` validates a name without importing torch (so
a bad ``--device`` fails before any model loads), and :func:`resolve_device`
turns ``auto`` into the device that will be used, refusing ``cuda`` on a
machine without CUDA. Pool manifests record the device only when it is not
``cpu``, so pools sampled before the option still resume.

``--dtype`` is the local policy's weight precision. Left unset it is the
device's :func:`model_dtype`, as before the option: float32 on the CPU,
bfloat16 on CUDA. ``bfloat16`` runs the matrix products in bf16 (about 2.5x as
fast per product on CPUs with native bf16: AVX512-BF16 or AMX) while logits,
softmax and the nucleus draw stay in float32; ``auto`` is bfloat16 on CUDA and
on CPUs with :func:`native_bf16`, else float32. :func:`resolve_dtype` turns
unset and ``auto`` into the dtype that will be used, before it enters a manifest. A pool
manifest records the dtype only when it differs from the device's
:func:`model_dtype` (float32 on the CPU, bfloat16 on CUDA: what each device ran
before the option), so earlier pools still resume.
"""

from __future__ import annotations

from pathlib import Path

from ttpkit.errors import ConfigError

__all__ = ["DEVICES", "DTYPES", "check_device", "check_dtype", "model_dtype", "native_bf16", "resolve_device", "resolve_dtype"]

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16")


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
    """The default dtype of local models on a resolved device: float32 on the CPU, bfloat16 on CUDA."""
    return "bfloat16" if device == "cuda" else "float32"


def native_bf16() -> bool:
    """Whether this CPU computes bf16 natively: AVX512-BF16 or AMX in ``/proc/cpuinfo`` (Linux).

    Where ``/proc/cpuinfo`` cannot be read, oneDNN's own check
    (``torch.ops.mkldnn._is_mkldnn_bf16_supported``) decides.
    """
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        try:
            import torch

            return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (ImportError, AttributeError, RuntimeError):
            return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_dtype(dtype: str) -> str:
    """``dtype`` if it is one of :data:`DTYPES`.

    Raises:
        ConfigError: Naming the value and the known ones.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    return dtype


def resolve_dtype(dtype: str | None, device: str) -> str:
    """``float32`` or ``bfloat16``: what ``dtype`` (one of :data:`DTYPES`, or None) means on a resolved ``device``.

    None is the device's :func:`model_dtype`. ``auto`` is bfloat16 on CUDA and
    on a CPU with :func:`native_bf16`, else float32 (bf16 without native
    support is emulated, and slower than float32).

    Raises:
        ConfigError: For an unknown dtype.
    """
    if dtype is None:
        return model_dtype(device)
    check_dtype(dtype)
    if dtype != "auto":
        return dtype
    return "bfloat16" if device == "cuda" or native_bf16() else "float32"
