"""Features of a candidate for personalized reward models.

A reward model sees the query's input, the candidate and the user's profile,
never the reference. Texts are embedded by :class:`~ttpkit.reward.encoder.Encoder`
(all-MiniLM-L6-v2 with a content-hash cache; ``Encoder``, ``check_layers`` and
``native_bf16`` are re-exported here from :mod:`ttpkit.reward.encoder`).

Feature groups (names are stable; configs record them):

- relevance (``global`` and ``user``): similarity of candidate and input,
  lexical overlap with the input, candidate length;
- personalization (``user`` only): similarity to the retrieved items' targets,
  to the user vector (mean embedding of past targets), to the closest past
  target (copy detector), and the candidate's length against the user's usual
  target length.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ttpkit.data import Query
from ttpkit.errors import ConfigError, DataError
from ttpkit.pool import QUERY_ID, TEXT
from ttpkit.retrieval import retrieve
from ttpkit.reward.encoder import Encoder, check_layers, native_bf16

__all__ = ["GLOBAL_FEATURES", "LONG_FEATURES", "USER_FEATURES", "Encoder", "build_features", "check_layers", "native_bf16"]

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
LONG_FEATURES = USER_FEATURES + (  # for multi-line outputs (RMConfig.long_form), where copies and prefixes say little
    "repeat_frac",  # fraction of the candidate's word trigrams that repeat an earlier one (a looping decode)
    "distinct_frac",  # distinct words / words
    "retrieved_recall",  # fraction of the retrieved targets' distinct words the candidate uses
    "lines_z",  # (lines - user's mean target lines) / user's std: the shape of the user's texts
)


_ALNUM_RUN = re.compile(r"[^\W_]+")  # maximal runs of str.isalnum() characters


def _words(text: str) -> list[str]:
    """Lowercased alphanumeric runs (each character lowercased on its own, as in ``c.lower()``)."""
    return [w.lower() if w.isascii() else "".join(c.lower() for c in w) for w in _ALNUM_RUN.findall(text)]


def _prefix(text: str) -> str:
    """The ``area`` of ``area: rest`` (first 30 characters), lowercased; '' if none."""
    head, sep, _ = text[:40].partition(":")
    return head.strip().lower() if sep and 0 < len(head.strip()) <= 30 else ""


def _lcs_f1(a: list[str], b: list[str]) -> float:
    """F1 of the longest common subsequence of two word lists (reference dynamic programme)."""
    if not a or not b:
        return 0.0
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return _f1(prev[-1], len(a), len(b))


def _f1(lcs: int, na: int, nb: int) -> float:
    if lcs == 0:
        return 0.0
    p, r = lcs / na, lcs / nb
    return 2 * p * r / (p + r)


def _match_masks(b: list[str]) -> dict[str, int]:
    """Bit j of ``masks[w]`` is set where ``b[j] == w`` (for :func:`_lcs_f1_bits`)."""
    masks: dict[str, int] = {}
    for j, w in enumerate(b):
        masks[w] = masks.get(w, 0) | (1 << j)
    return masks


def _lcs_f1_bits(a: list[str], masks: dict[str, int], nb: int) -> float:
    """:func:`_lcs_f1` against the word list behind ``masks``, bit-parallel (Hyyro 2004).

    One pass over ``a`` with a handful of integer operations per word instead of
    a ``len(a) x len(b)`` table; same value (tested against the table).
    """
    if not a or not nb:
        return 0.0
    full = (1 << nb) - 1
    v = full
    for x in a:
        m = masks.get(x, 0)
        if m:
            u = v & m
            v = ((v + u) | (v - u)) & full
    return _f1(nb - bin(v).count("1"), len(a), nb)


def _cosines(
    cand: np.ndarray, qids: list[str], src: dict[str, np.ndarray], per_query: dict[str, dict], personal: bool
) -> dict[str, np.ndarray]:
    """The embedding features of every row, computed query by query as matrix products."""
    names = ["cos_input"] + (["cos_retrieved_max", "cos_retrieved_mean", "cos_user", "cos_copy"] if personal else [])
    out = {n: np.zeros(len(qids), dtype=np.float32) for n in names}
    rows_of: dict[str, list[int]] = {}
    for i, qid in enumerate(qids):
        rows_of.setdefault(qid, []).append(i)
    for qid, rows in rows_of.items():
        e, f = cand[rows], per_query[qid]  # (r, D)
        out["cos_input"][rows] = e @ src[qid]
        if personal:
            r = e @ f["r_emb"].T if len(f["r_emb"]) else np.zeros((len(rows), 1), np.float32)
            t = e @ f["t_emb"].T if len(f["t_emb"]) else np.zeros((len(rows), 1), np.float32)
            out["cos_retrieved_max"][rows] = r.max(1)
            out["cos_retrieved_mean"][rows] = r.mean(1)
            out["cos_user"][rows] = e @ f["user"]
            out["cos_copy"][rows] = t.max(1)
    return out


def build_features(
    pool: pd.DataFrame, by_id: Mapping[str, Query], encoder: Encoder, names: Sequence[str] = USER_FEATURES, k: int = 4
) -> np.ndarray:
    """Feature matrix of a pool, (len(pool), len(names)), float32.

    Args:
        pool: Rows with ``query_id`` and ``text`` (other columns are ignored;
            the reference is never read).
        by_id: Query id to query (input and profile).
        encoder: Sentence encoder.
        names: Feature names, a subset of :data:`LONG_FEATURES`.
        k: Retrieved profile items for the ``*_retrieved_*`` features.
    """
    unknown = [n for n in names if n not in LONG_FEATURES]
    if unknown:
        raise ConfigError(f"unknown features {unknown}; known: {', '.join(LONG_FEATURES)}")
    long_form = any(n in LONG_FEATURES[len(USER_FEATURES):] for n in names)
    missing = sorted(set(pool[QUERY_ID]) - set(by_id))
    if missing:
        raise DataError(f"{len(missing)} pool queries are not in the data split (first: {missing[0]!r})")
    texts = pool[TEXT].fillna("").astype(str).tolist()
    qids = pool[QUERY_ID].tolist()
    cand = encoder.encode(texts)  # (R, D)
    order = list(dict.fromkeys(qids))
    src = dict(zip(order, encoder.encode([by_id[q].source for q in order])))
    per_query: dict[str, dict] = {}
    for qid in order:
        q = by_id[qid]
        targets = [p.target for p in q.profile]
        t_emb = encoder.encode(targets) if targets else np.zeros((0, Encoder.dim), np.float32)
        ret = retrieve(q, k)
        lens = np.array([len(_words(t)) for t in targets], dtype=np.float64)
        user_vec = t_emb.mean(0) if len(t_emb) else np.zeros(Encoder.dim, np.float32)
        src_words = _words(q.source)
        per_query[qid] = {
            "t_emb": t_emb,
            "r_emb": encoder.encode([p.target for p in ret]) if ret else np.zeros((0, Encoder.dim), np.float32),
            "user": user_vec / (np.linalg.norm(user_vec) or 1.0),
            "targets": {" ".join(t.lower().split()) for t in targets},
            "len_mu": lens.mean() if len(lens) else 0.0,
            "len_sd": max(lens.std(), 1.0) if len(lens) else 1.0,
            "in_words": set(src_words),
            "in_head": src_words[:60],
            "in_masks": _match_masks(src_words[:60]),
            "ret_words": set(w for p in ret for w in _words(p.target)),
            "prefixes": {_prefix(t) for t in targets} - {""},
        }
        if long_form:
            n_lines = np.array([len(t.strip().splitlines()) for t in targets], dtype=np.float64)
            per_query[qid].update(lines_mu=n_lines.mean() if len(n_lines) else 1.0,
                                  lines_sd=max(n_lines.std(), 1.0) if len(n_lines) else 1.0)
    personal = any(n in USER_FEATURES[len(GLOBAL_FEATURES):] for n in names)
    cos = _cosines(cand, qids, src, per_query, personal)  # name -> (R,), one matrix product per query
    rows = np.zeros((len(pool), len(names)), dtype=np.float32)
    for i, (qid, text) in enumerate(zip(qids, texts)):
        f = per_query[qid]
        words = _words(text)
        wset = set(words)
        nw = max(len(words), 1)
        prefix = _prefix(text)
        values = {
            "cos_input": cos["cos_input"][i],
            "input_precision": sum(w in f["in_words"] for w in words) / nw,
            "input_recall": (sum(w in wset for w in f["in_head"]) / len(f["in_head"])) if f["in_head"] else 0.0,
            "log_len": float(np.log1p(len(words))),
            "empty": float(not words),
            "input_lcs": _lcs_f1_bits(words, f["in_masks"], len(f["in_head"])),
            "prefix_in_input": float(bool(prefix) and bool(set(_words(prefix)) & f["in_words"])),
        }
        if personal:
            values.update(
                cos_retrieved_max=cos["cos_retrieved_max"][i],
                cos_retrieved_mean=cos["cos_retrieved_mean"][i],
                cos_user=cos["cos_user"][i],
                cos_copy=cos["cos_copy"][i],
                exact_copy=float(" ".join(text.lower().split()) in f["targets"]),
                len_z=float((len(words) - f["len_mu"]) / f["len_sd"]),
                retrieved_precision=sum(w in f["ret_words"] for w in words) / nw,
                abs_len_z=abs(float((len(words) - f["len_mu"]) / f["len_sd"])),
                prefix_user=float(prefix in f["prefixes"]),
            )
        if long_form:
            grams = list(zip(words, words[1:], words[2:]))
            values.update(
                repeat_frac=(1.0 - len(set(grams)) / len(grams)) if grams else 0.0,
                distinct_frac=len(wset) / nw,
                retrieved_recall=(len(wset & f["ret_words"]) / len(f["ret_words"])) if f["ret_words"] else 0.0,
                lines_z=float((len(text.strip().splitlines()) - f["lines_mu"]) / f["lines_sd"]),
            )
        rows[i] = [values[n] for n in names]
    return rows
