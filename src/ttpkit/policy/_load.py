"""Loading local causal LMs for :class:`ttpkit.policy.local.LocalPolicy`: GGUF files through their conversion, HF directories.

A GGUF is dequantized once (:mod:`ttpkit.policy._gguf`, in a child process) and
cached as a safetensors directory under :func:`ttpkit.paths.cache_dir`, keyed by
the file's identity (:func:`converted_dir`); later loads read that directory.
Models load offline (``HF_HUB_OFFLINE=1``).

Nothing in the cache is trusted blindly. A converted directory is written under
a temporary name, finished with a ``DONE`` marker and renamed into place, so a
full disk or a Ctrl-C leaves no half directory under the real name; its config,
index and shard headers are checked before each load, and one that fails is
rebuilt with a warning naming it. The embedded GGUF itself is checked the same
way (:mod:`ttpkit.policy._embedded`).
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
from ttpkit.policy._checks import check_gguf_file, first_line
from ttpkit.policy._embedded import embedded_gguf_path

__all__ = ["converted_dir", "converted_model", "embedded_gguf_path", "load_gguf_model", "load_hf_model",
           "release_memory"]

log = logging.getLogger(__name__)


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
    try:
        tok = _slim(AutoTokenizer.from_pretrained(p, local_files_only=True))
    except (ValueError, TypeError, KeyError, AttributeError, OSError, RuntimeError) as e:  # a tokenizer file parses but is no tokenizer
        files = ", ".join(sorted(f.name for f in p.glob("*token*"))) or "no tokenizer file"
        raise ConfigError(f"model {p}: transformers cannot build its tokenizer ({files}): {first_line(e)}") from None
    release_memory()  # the parse of tokenizer.json, freed but still held by the heap
    from safetensors import SafetensorError

    try:
        model = AutoModelForCausalLM.from_pretrained(p, local_files_only=True, dtype=dtype)
    except (ValueError, KeyError, OSError, SafetensorError) as e:  # no weights, a torn or foreign weights file (never OOM)
        files = ", ".join(sorted(f.name for f in p.iterdir() if f.suffix in (".safetensors", ".bin"))) or "no weights file"
        raise ConfigError(f"model {p}: transformers cannot load its weights ({files}): {first_line(e)}") from None
    model.eval()
    return model, tok


# Python copies of the vocabulary and merges that a tokenizer class keeps after building its Rust tokenizer
# from them, and never reads again (transformers 5.24): for Gemma 3, 262,144 entries and 514,906 merges, 145 MB.
_UNUSED_TOKENIZER_COPIES = {"GemmaTokenizer": ("_vocab", "_merges")}


def _slim(tok: Any) -> Any:
    """``tok`` without the Python copies :data:`_UNUSED_TOKENIZER_COPIES` lists for its class (tokenization unchanged)."""
    for attr in _UNUSED_TOKENIZER_COPIES.get(type(tok).__name__, ()):
        if hasattr(tok, attr):
            setattr(tok, attr, None)
    return tok


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


def release_memory(collect: bool = True) -> None:
    """Give freed heap pages back to the OS (glibc only), so a finished stage's peak is not carried into the next.

    Args:
        collect: Run the garbage collector first (tenths of a second in a big
            process); without it only the trim runs (milliseconds), for hot paths.
    """
    import ctypes
    import gc

    if collect:
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
        ConfigError: If ``path`` is missing, or (when it must be converted) not a whole GGUF file (:func:`ttpkit.policy._checks.check_gguf_file`).
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
        _convert_apart(gguf, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if (target / "DONE").exists():  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(target, ignore_errors=True)  # an unfinished directory (from before DONE markers) goes
        tmp.rename(target)
    return target


_CHILD = "import sys; from pathlib import Path; from ttpkit.policy._load import _convert; _convert(*map(Path, sys.argv[1:]))"


def _convert_apart(gguf: Path, tmp: Path) -> None:
    """Run :func:`_convert` in a child Python process, so that neither its peak nor the heap it leaves are this one's.

    ``transformers`` parses the GGUF's metadata twice (for the config and for
    the tokenizer), 1.3 GB at the peak for Gemma 3 270M, and the modules and
    heap that leaves behind would stay in this process for the whole run (about
    0.3 GB on top of the warm footprint, measured). The child costs its imports once.

    Raises:
        TtpkitError: With the child's last error line.
    """
    import subprocess
    import sys

    import ttpkit

    root = str(Path(ttpkit.__file__).resolve().parents[1])  # the ttpkit this process runs, not another install
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    r = subprocess.run([sys.executable, "-c", _CHILD, str(gguf), str(tmp)], env=env, capture_output=True, text=True)
    if r.returncode:
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        why = lines[-1] if lines else f"exit status {r.returncode}" + (" (killed: out of memory?)" if r.returncode < 0 else "")
        name, _, message = why.partition(": ")
        why = message if message and name.replace(".", "").replace("_", "").isalnum() and name.endswith(("Error", "Exception")) else why
        raise TtpkitError(f"{gguf}: converting it into {tmp.parent} failed: {why}")


def _convert(gguf: Path, tmp: Path) -> None:
    """Write the converted directory of ``gguf`` into ``tmp``: weights, config, tokenizer, then ``DONE``."""
    from ttpkit.policy._gguf import convert_gguf

    _offline()
    if not convert_gguf(gguf, tmp):  # reads the header first: a torn file fails before transformers is imported
        _convert_with_transformers(gguf, tmp)
    release_memory()
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok.save_pretrained(tmp)
    del tok
    release_memory()
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
    release_memory()
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
