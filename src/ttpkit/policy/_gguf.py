"""Dequantizing a GGUF file tensor by tensor into a sharded safetensors directory.

``transformers``' own GGUF route (``from_pretrained(..., gguf_file=...)``) holds
the whole dequantized float32 state dict and the model's parameters at once,
plus a second copy of the largest tensor while ``gguf`` concatenates its rows:
3.0 to 3.7 GB for Gemma 3 270M, whose 262,144 × 640 embedding alone is 671 MB.
:func:`convert_gguf` holds one tensor, or one block of at most
:data:`BLOCK_BYTES` of a large one's rows, at a time, and streams it into its
shard (:func:`write_safetensors`), so the weights cost at most a block on top of
the memory-mapped GGUF. The tensors are found by
:func:`ttpkit.policy._gguf_header.read_header` (it skips the vocabulary that
``gguf.GGUFReader`` would keep: 685 MB for Gemma's 262k tokens). Gemma 3 270M
converts at a peak of 1.27 GB, ``transformers`` and its config and tokenizer
parse included.

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
from pathlib import Path
from typing import Any

from ttpkit import jsonio
from ttpkit.policy._gguf_header import GgufFormatError, GgufHeader, TensorInfo, read_header

__all__ = ["BLOCK_BYTES", "COVERED_ARCHS", "SHARD_BYTES", "convert_gguf", "shard_plan", "write_safetensors"]

log = logging.getLogger(__name__)

COVERED_ARCHS = ("gemma3", "llama")  # GGUF ``general.architecture`` values with a checked mapping
BLOCK_BYTES = 32 << 20  # float32 bytes of rows dequantized at once from a large tensor
SHARD_BYTES = "256MB"  # the shard size of the converted directory (huggingface_hub's rule)

Blocks = Callable[[], Iterator[Any]]  # yields float32 numpy arrays whose bytes, in order, are one tensor's


class NotCovered(Exception):
    """This GGUF needs ``transformers``' own route (an architecture or a tensor this module does not map)."""


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
