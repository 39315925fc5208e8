"""Reading a GGUF file's header: its version, ``general.architecture`` and where each tensor lies.

:func:`read_header` walks the header without keeping its metadata
(``gguf.GGUFReader`` keeps a numpy view per vocabulary entry: 685 MB for
Gemma's 262k tokens) and checks that every tensor lies inside the file, so a
torn file is named before anything loads (``ttpkit.policy._load``) or converts
(:mod:`ttpkit.policy._gguf`).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["GgufFormatError", "GgufHeader", "TensorInfo", "read_header"]


class GgufFormatError(ValueError):
    """A file that is not a whole GGUF: a wrong magic, a header or tensor data running past its end."""


@dataclass(frozen=True)
class TensorInfo:
    """One tensor of a GGUF file: its name, dims (GGUF order: fastest first), ggml type and absolute byte range."""

    name: str
    dims: tuple[int, ...]
    type: int
    start: int
    nbytes: int


@dataclass(frozen=True)
class GgufHeader:
    """What :func:`read_header` reads: the version, ``general.architecture`` and the tensors."""

    version: int
    architecture: str | None
    tensors: tuple[TensorInfo, ...]


_SCALAR_BYTES = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}  # GGUFValueType -> bytes
_STRING, _ARRAY = 8, 9


def read_header(path: Path) -> GgufHeader:
    """Walk a GGUF file's header without keeping its metadata, and check that every tensor lies inside the file.

    ``gguf.GGUFReader`` builds a numpy view per element of every metadata array
    (685 MB and a minute on 2 cores for Gemma's 262k-token vocabulary); this
    reads the few keys it needs and skips the rest.

    Raises:
        GgufFormatError: Naming the byte where the file stops making sense.
    """
    import mmap

    from gguf import GGML_QUANT_SIZES

    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
        size, pos = len(buf), 0

        def take(fmt: str) -> tuple:
            nonlocal pos
            n = struct.calcsize(fmt)
            if pos + n > size:
                raise GgufFormatError(f"the header runs past the end of the file ({size:,} bytes) at byte {pos:,}: a torn file")
            pos += n
            return struct.unpack_from(fmt, buf, pos - n)

        def string() -> bytes:
            nonlocal pos
            (n,) = take("<Q")
            if pos + n > size:
                raise GgufFormatError(f"a string at byte {pos:,} runs past the end of the file ({size:,} bytes): a torn file")
            pos += n
            return bytes(buf[pos - n : pos])

        def skip(kind: int) -> None:
            nonlocal pos
            if kind == _STRING:
                string()
            elif kind == _ARRAY:
                item, count = take("<IQ")
                if item in _SCALAR_BYTES:
                    pos += _SCALAR_BYTES[item] * count
                else:
                    for _ in range(count):
                        skip(item)
            elif kind in _SCALAR_BYTES:
                pos += _SCALAR_BYTES[kind]
            else:
                raise GgufFormatError(f"unknown metadata type {kind} at byte {pos:,}")

        magic, version, n_tensors, n_kv = take("<4sIQQ")
        if magic != b"GGUF":
            raise GgufFormatError("it does not start with the magic bytes 'GGUF'")
        if version not in (2, 3):
            raise GgufFormatError(f"GGUF version {version} (this reader knows 2 and 3)")
        keys: dict[str, Any] = {}
        for _ in range(n_kv):
            key, (kind,) = string().decode("utf-8", "replace"), take("<I")
            if key == "general.architecture" and kind == _STRING:
                keys[key] = string().decode("utf-8", "replace")
            elif key == "general.alignment" and kind == 4:
                keys[key] = take("<I")[0]
            else:
                skip(kind)
        infos = []
        for _ in range(n_tensors):
            name = string().decode("utf-8", "replace")
            (n_dims,) = take("<I")
            dims = take(f"<{n_dims}Q")
            kind, offset = take("<IQ")
            block, type_size = GGML_QUANT_SIZES.get(kind, (0, 0))
            if not block:
                raise GgufFormatError(f"tensor {name} has an unknown ggml type {kind}")
            infos.append((name, tuple(dims), kind, offset, math.prod(dims) // block * type_size))
        align = keys.get("general.alignment", 32)
        data = pos + (-pos % align)
    tensors = tuple(TensorInfo(n, d, k, data + o, b) for n, d, k, o, b in infos)
    for t in tensors:
        if t.start + t.nbytes > size:
            raise GgufFormatError(f"tensor {t.name} ends at byte {t.start + t.nbytes:,}, after the end of the file "
                                  f"({size:,} bytes): a torn file")
    return GgufHeader(version, keys.get("general.architecture"), tensors)
