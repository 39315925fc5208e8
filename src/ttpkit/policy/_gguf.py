"""Dequantizing a GGUF file tensor by tensor into a sharded safetensors directory.

``transformers``' own GGUF route (``from_pretrained(..., gguf_file=...)``) holds
the whole dequantized float32 state dict and the model's parameters at once,
plus a second copy of the largest tensor while ``gguf`` concatenates its rows:
3.0 to 3.7 GB for Gemma 3 270M, whose 262,144 × 640 embedding alone is 671 MB.
:func:`convert_gguf` holds one tensor, or one block of at most
:data:`BLOCK_BYTES` of a large one's rows, at a time, and streams it into its
shard (:func:`write_safetensors`), so the weights cost at most a block on top of
the memory-mapped GGUF.

The values are bit for bit those of ``transformers``' route (checked by
``benchmarks/check_gguf_conversion.py``): the same dequantizer
(``gguf.dequantize``, block by block, so a block of rows dequantizes to the same
floats as the whole tensor), the GGUF-to-HF name map of ``gguf``'s tensor-name
tables that ``transformers`` uses, and ``transformers``' own per-tensor transform
for the architecture (its ``TENSOR_PROCESSORS``: Gemma's norm weights are stored
plus one, Llama's q/k rows permuted). The shard plan is ``huggingface_hub``'s
(:data:`SHARD_BYTES`), so the directory has the same files as before.

Covered architectures (:data:`COVERED_ARCHS`): ``gemma3`` (the embedded model)
and ``llama`` (SmolLM2 and other Llama GGUFs). For any other, or a file whose
tensors do not map one to one onto the model's parameters, :func:`convert_gguf`
returns False and the caller falls back to ``transformers``.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ttpkit import jsonio

__all__ = ["BLOCK_BYTES", "COVERED_ARCHS", "SHARD_BYTES", "GgufFormatError", "GgufHeader", "TensorInfo", "convert_gguf",
           "read_header", "shard_plan", "write_safetensors"]

log = logging.getLogger(__name__)

COVERED_ARCHS = ("gemma3", "llama")  # GGUF ``general.architecture`` values with a checked mapping
BLOCK_BYTES = 32 << 20  # float32 bytes of rows dequantized at once from a large tensor
SHARD_BYTES = "256MB"  # the shard size of the converted directory (huggingface_hub's rule)

Blocks = Callable[[], Iterator[Any]]  # yields float32 numpy arrays whose bytes, in order, are one tensor's


class NotCovered(Exception):
    """This GGUF needs ``transformers``' own route (an architecture or a tensor this module does not map)."""



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


def write_safetensors(path: Path, tensors: list[tuple[str, tuple[int, ...], Blocks]], metadata: dict[str, str]) -> None:
    """Write a float32 safetensors file, each tensor's bytes streamed from its blocks.

    The header (8-byte little-endian length, then JSON padded with spaces to a
    multiple of 8) is written first from the shapes, so no tensor need be whole
    in memory.

    Args:
        path: The file to write.
        tensors: ``(name, shape, blocks)`` per tensor, in file order; ``blocks()``
            yields float32 arrays whose C-order bytes together are the tensor's.
        metadata: The header's ``__metadata__`` (strings).

    Raises:
        ValueError: If a tensor's blocks do not add up to its shape.
    """
    import numpy as np

    header: dict[str, Any] = {}
    offset = 0
    for name, shape, _ in tensors:
        size = 4 * math.prod(shape)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = metadata
    raw = jsonio.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    with path.open("wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for name, _, blocks in tensors:
            start, end = header[name]["data_offsets"]
            written = 0
            for block in blocks():
                data = np.ascontiguousarray(block, dtype="<f4")
                f.write(memoryview(data).cast("B"))
                written += data.nbytes
            if written != end - start:
                raise ValueError(f"{path}: tensor {name} has {written} bytes, its shape needs {end - start}")


def shard_plan(sizes: dict[str, int], max_shard_size: int | str = SHARD_BYTES) -> tuple[dict[str, list[str]], int]:
    """Shard file name -> tensor names, and the total bytes, by ``huggingface_hub``'s rule for ``save_pretrained``."""
    from huggingface_hub.serialization._base import split_state_dict_into_shards_factory

    split = split_state_dict_into_shards_factory(sizes, get_storage_size=lambda n: n, max_shard_size=max_shard_size,
                                                 filename_pattern="model{suffix}.safetensors")
    return split.filename_to_tensors, split.metadata["total_size"]


def _name_map(header: GgufHeader, hf_names: list[str], n_layers: int) -> dict[str, TensorInfo]:
    """HF parameter name -> GGUF tensor, by ``gguf``'s name tables (what ``transformers`` maps with)."""
    from gguf import MODEL_ARCH_NAMES, get_tensor_name_map

    arch_id = next(k for k, v in MODEL_ARCH_NAMES.items() if v == header.architecture)
    names = get_tensor_name_map(arch_id, n_layers)
    by_gguf = {t.name: t for t in header.tensors}
    out = {}
    for hf in hf_names:
        stem, dot, suffix = hf.rpartition(".") if hf.endswith((".weight", ".bias")) else (hf, "", "")
        gguf_name = names.get_name(stem)
        tensor = by_gguf.get(f"{gguf_name}{dot}{suffix}") if gguf_name is not None else None
        if tensor is None:
            raise NotCovered(f"no GGUF tensor for {hf}")
        out[hf] = tensor
    if len(out) != len(by_gguf):
        unused = sorted(set(by_gguf) - {t.name for t in out.values()})
        raise NotCovered(f"GGUF tensors without a parameter: {unused[:5]}")
    return out


def _raw(file: Any, t: TensorInfo) -> Any:
    """A tensor's bytes in ``file`` (a uint8 memmap) shaped as ``gguf.dequantize`` takes them: (rows..., bytes per row)."""
    from gguf import GGML_QUANT_SIZES

    block, type_size = GGML_QUANT_SIZES[t.type]
    if t.dims[0] % block:
        raise NotCovered(f"{t.name}: rows of {t.dims[0]} values are not whole blocks of {block}")
    return file[t.start : t.start + t.nbytes].reshape(*reversed(t.dims[1:]), t.dims[0] // block * type_size)


def _untouched(processor: Any, block: Any, name: str) -> bool:
    """Whether ``transformers``' processor leaves this block of a tensor as it is (then the tensor may be cut in rows)."""
    try:
        result = processor.process(weights=block, name=name, tensor_key_mapping={}, parsed_parameters={"tensors": {}})
    except ValueError:  # a transform that needs the whole tensor (Llama's head permutation of q and k)
        return False
    return result.weights is block and result.name == name


def _blocks(file: Any, t: TensorInfo, shape: tuple[int, ...], processor: Any) -> Blocks:
    """The dequantized (and transformed) float32 values of one GGUF tensor, a block of rows at a time.

    A tensor larger than :data:`BLOCK_BYTES` is cut into blocks of rows if the
    architecture's processor leaves it untouched (the embedding, the MLP), and
    is dequantized whole otherwise.
    """
    import numpy as np
    from gguf import dequantize

    def whole() -> Iterator[Any]:
        result = processor.process(weights=dequantize(_raw(file, t), t.type), name=t.name,
                                   tensor_key_mapping={}, parsed_parameters={"tensors": {}})
        if result.name != t.name:
            raise NotCovered(f"{t.name}: transformers merges or renames it")
        yield np.asarray(result.weights, dtype=np.float32).reshape(shape)

    def by_rows() -> Iterator[Any]:
        raw, step = _raw(file, t), max(1, BLOCK_BYTES // (4 * math.prod(shape[1:])))
        for i in range(0, shape[0], step):
            block = dequantize(raw[i : i + step], t.type)
            if not _untouched(processor, block, t.name):
                if i:  # transforms go by the tensor's name, so the first block already tells
                    raise NotCovered(f"{t.name}: transformers transforms only some of its rows")
                yield from whole()
                return
            yield block

    return by_rows if len(shape) > 1 and 4 * math.prod(shape) > BLOCK_BYTES else whole


def _plan(gguf: Path, header: GgufHeader, file: Any) -> tuple[Any, list[tuple[str, tuple[int, ...], Blocks]]]:
    """The model's config and, in its state-dict order, each parameter's name, shape and blocks.

    Raises:
        NotCovered: For an architecture outside :data:`COVERED_ARCHS` or tensors that do not map one to one.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import TENSOR_PROCESSORS, TensorProcessor

    if header.architecture not in COVERED_ARCHS:
        raise NotCovered(f"architecture {header.architecture!r}")
    config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)  # metadata only, no tensors
    with torch.device("meta"):  # the parameters' names and shapes, no memory
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    config.architectures = [type(model).__name__]  # transformers' GGUF reader leaves it empty; vLLM needs it
    config.dtype = torch.float32
    tied = bool(getattr(config, "tie_word_embeddings", False))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    tensors = _name_map(header, list(shapes), config.num_hidden_layers)
    processor = TENSOR_PROCESSORS.get(header.architecture, TensorProcessor)(config=config.to_dict())
    plan = []
    for name, shape in shapes.items():
        t = tensors[name]
        if tuple(reversed(t.dims)) != shape:
            raise NotCovered(f"{t.name} has shape {list(reversed(t.dims))}, {name} needs {list(shape)}")
        plan.append((name, shape, _blocks(file, t, shape, processor)))
    return config, plan


def convert_gguf(gguf: Path, out: Path) -> bool:
    """Write ``gguf``'s weights (float32 shards and their index) and ``config.json`` into the directory ``out``.

    Returns:
        True, or False (no weights written) where the file needs ``transformers``' route (see :data:`COVERED_ARCHS`).

    Raises:
        GgufFormatError: If the file is not a whole GGUF (:func:`read_header`).
    """
    import numpy as np

    header = read_header(gguf)
    file = np.memmap(gguf, dtype=np.uint8, mode="r")
    try:
        config, plan = _plan(gguf, header, file)
        shards, total = shard_plan({name: 4 * math.prod(shape) for name, shape, _ in plan})
        by_name = {p[0]: p for p in plan}
        meta = {"format": "pt", "source": gguf.name}
        for filename, names in shards.items():
            write_safetensors(out / filename, [by_name[n] for n in names], meta)
    except NotCovered as e:
        log.info("%s: converting through transformers (%s)", gguf, e)
        for f in out.glob("model*.safetensors"):
            f.unlink()
        return False
    finally:
        del file
    if len(shards) > 1:
        weight_map = {n: f for f, names in shards.items() for n in names}
        index = {"metadata": {"total_size": total, "source": gguf.name}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(jsonio.dumps(index, indent=1))
    config.save_pretrained(out)
    return True
