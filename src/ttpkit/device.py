"""Where local models run and in what precision: ``--device auto|cpu|cuda`` and ``--dtype auto|float32|bfloat16``.

``cpu`` is the default and the tested path: models load in float32 and results
are what they were before this option existed. ``cuda`` loads models in
bfloat16 on the first GPU; ``auto`` is ``cuda`` when ``torch.cuda.is_available()``,
else ``cpu``. :func:`check_device` validates a name without importing torch (so
a bad ``--device`` fails before any model loads), and :func:`resolve_device`
turns ``auto`` into the device that will be used, refusing ``cuda`` on a
machine without CUDA. Pool manifests record the device only when it is not
``cpu``, so pools sampled before the option still resume.

``--dtype`` is the local policy's weight precision. ``bfloat16`` runs the
matrix products in bf16 (about 2.5x as fast per product on CPUs with native
bf16: AVX512-BF16 or AMX) while logits, softmax and the nucleus draw stay in
float32; ``auto`` is bfloat16 on CUDA and on CPUs with :func:`native_bf16`,
else float32. Left unset it is :func:`default_dtype`: bfloat16 on CUDA and,
since issue 30, on a CPU with native bf16 (the sampler's distribution check,
``benchmarks/p1_dtype.py --pool-queries 64``, found bf16 keeping it:
:data:`BF16_KEEPS_DISTRIBUTION`); float32 on every other CPU, where bf16 is
emulated and slower. :func:`resolve_dtype` turns unset and ``auto`` into the
dtype that will be used, before it enters a manifest. A pool manifest records
the dtype only when it differs from the device's :func:`model_dtype` (float32
on the CPU, bfloat16 on CUDA: what each device ran before the option), so
earlier pools still resume, and a float32 pool is not resumed in bf16 by the
newer default on a native-bf16 CPU (``--dtype float32`` resumes it).
"""

from __future__ import annotations

from pathlib import Path

from ttpkit.errors import ConfigError

__all__ = ["BF16_KEEPS_DISTRIBUTION", "DEVICES", "DTYPES", "check_device", "check_dtype", "default_dtype", "model_dtype",
           "native_bf16", "resolve_device", "resolve_dtype"]

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("auto", "float32", "bfloat16")
# The outcome of issue 30's check (docs/performance.md, P1b): bf16 sampling keeps the first-token distribution at
# the noise floor and a 64-query pool's mean utility and oracle inside float32's intervals.
BF16_KEEPS_DISTRIBUTION = True


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
    """What local models ran in on a resolved device before ``--dtype``: float32 on the CPU, bfloat16 on CUDA.

    Manifests name a dtype only off this, so pools from before the option resume.
    """
    return "bfloat16" if device == "cuda" else "float32"


def default_dtype(device: str) -> str:
    """The dtype of a local model when ``--dtype`` is unset, on a resolved device.

    bfloat16 on CUDA, and on a CPU with :func:`native_bf16` while
    :data:`BF16_KEEPS_DISTRIBUTION`; float32 on other CPUs (bf16 would be
    emulated there, and slower).
    """
    if device == "cuda" or (BF16_KEEPS_DISTRIBUTION and native_bf16()):
        return "bfloat16"
    return "float32"


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

    None is the device's :func:`default_dtype`. ``auto`` is bfloat16 on CUDA
    and on a CPU with :func:`native_bf16`, else float32 (bf16 without native
    support is emulated, and slower than float32).

    Raises:
        ConfigError: For an unknown dtype.
    """
    if dtype is None:
        return default_dtype(device)
    check_dtype(dtype)
    if dtype != "auto":
        return dtype
    return "bfloat16" if device == "cuda" or native_bf16() else "float32"
