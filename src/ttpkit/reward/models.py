"""Trained personalized reward models: pointwise, pairwise and probabilistic.

| variant         | features | loss                                                |
|-----------------|----------|-----------------------------------------------------|
| ``global-mse``  | global   | squared error of utility (non-personalized baseline) |
| ``user-mse``    | user     | squared error of utility                            |
| ``user-pairwise``| user    | Bradley-Terry on same-query pairs                    |
| ``user-prob``   | user     | Gaussian NLL of a mean and a learned log-variance    |

All share one small MLP over standardized features. Weights are saved as
safetensors and the config as JSON; nothing is pickled. The configuration
(:class:`RMConfig`, :data:`VARIANTS`, :func:`read_rm_config`) lives in
:mod:`ttpkit.reward.config` and the atomic save in :mod:`ttpkit.reward._io`;
they are re-exported here for older imports.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ttpkit import jsonio
from ttpkit.data import Query
from ttpkit.errors import ConfigError, DataError, NotFittedError, TtpkitError
from ttpkit.manifest import stamp
from ttpkit.paths import check_writable
from ttpkit.pool import QUERY_ID, ROUGEL, USER_ID
from ttpkit.reward.base import Needs
from ttpkit.reward._io import CONFIG, WEIGHTS, check_feature_stats, check_weights, load_tensors, read_history, save_atomic
from ttpkit.reward.config import VARIANTS, RMConfig, read_rm_config
from ttpkit.reward.encoder import Encoder
from ttpkit.reward.features import build_features
from ttpkit.reward.losses import gaussian_nll, pairwise_loss
from ttpkit.utility import within_query_corr

__all__ = ["VARIANTS", "RMConfig", "RewardModel", "Scores", "feature_scaling", "gaussian_nll", "pairwise_loss", "read_rm_config"]

log = logging.getLogger(__name__)

_MIN_STD = 1e-5  # a training std at or below this marks a constant feature


def feature_scaling(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and scale for standardizing an (R, F) feature matrix.

    A feature that is constant in the training rows (say ``exact_copy`` when no
    training candidate copies a past title) gets an infinite scale, so it
    standardizes to 0 everywhere: the network never learned a weight for it,
    and dividing by a tiny std would blow a test row that differs up to ~1e5.
    """
    sd = x.std(0)
    return x.mean(0), np.where(sd > _MIN_STD, sd, np.inf).astype(sd.dtype)


@dataclass(frozen=True)
class Scores:
    """Scores of a pool's rows: ``mean`` (R,) and ``std`` (R,), zero for deterministic RMs.

    An ensemble also gives ``members`` (K, R), each member's score.
    """

    mean: np.ndarray
    std: np.ndarray
    members: np.ndarray | None = None


def _net(n_in: int, hidden: int, n_out: int):
    import torch.nn as nn

    return nn.Sequential(
        nn.Linear(n_in, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, n_out)
    )


class RewardModel:
    """A personalized reward model (see the module docstring for the variants).

    Example:
        >>> rm = RewardModel(RMConfig(variant="user-prob")).fit(train, train_data.by_id(), encoder=enc)  # doctest: +SKIP
        >>> scores = rm.score(test, test_data.by_id(), encoder=enc)  # doctest: +SKIP
    """

    def __init__(self, config: RMConfig | None = None) -> None:
        self.config = config or RMConfig()
        self.net_: Any = None
        self.mu_: np.ndarray | None = None
        self.sd_: np.ndarray | None = None
        self.history_: list[dict[str, float]] = []
        self.tasks_: tuple[str, ...] = ()  # the tasks it was trained on (empty: not recorded)
        self.trained_on_: dict | None = None  # the training pool: path, size and its run manifest (see ttpkit.manifest)

    @property
    def name(self) -> str:
        """Default column suffix of its scores: the variant."""
        return self.config.variant

    @property
    def probabilistic(self) -> bool:
        """Whether its scores come with a standard deviation."""
        return self.config.probabilistic

    @property
    def needs(self) -> Needs:
        """An encoder of the config's depth and dtype; its rows are scored apart once featurized."""
        cfg = self.config
        return Needs(encoder=True, encoder_layers=cfg.encoder_layers, encoder_dtype=cfg.encoder_dtype, row_features=True)

    def _encoder(self, encoder: Encoder | None) -> Encoder:
        """The given encoder after checking it matches the config, or a new one that does."""
        want = self.config.encoder_layers
        if encoder is None:
            return Encoder(layers=want)
        have = getattr(encoder, "layers", want)  # test doubles without the attribute are taken as matching
        if have != want:
            show = lambda n: "all" if n is None else str(n)  # noqa: E731
            raise ConfigError(
                f"this reward model uses {show(want)} encoder layers, the encoder passed has {show(have)}; "
                f"pass Encoder(layers={want})"
            )
        return encoder

    # -- training --------------------------------------------------------------------------
    def _xy(self, pool: pd.DataFrame, by_id: Mapping[str, Query], encoder: Encoder, utility: str):
        if utility not in pool.columns:
            raise DataError(f"training pool has no {utility!r} column; run `ttpkit label` first")
        x = build_features(pool, by_id, encoder, self.config.features, k=self.config.k)
        y = pool[utility].to_numpy(dtype=np.float32)
        g = pd.factorize(pool[QUERY_ID])[0]
        return x, y, g

    def _loss(self, out, y, g):
        cfg = self.config
        if cfg.variant == "user-prob":
            return gaussian_nll(out[:, 0], out[:, 1], y, cfg.var_floor, cfg.beta)
        if cfg.variant == "user-pairwise":
            return pairwise_loss(out[:, 0], y, g)
        return ((out[:, 0] - y) ** 2).mean()

    def fit(
        self,
        pool: pd.DataFrame,
        by_id: Mapping[str, Query],
        dev_pool: pd.DataFrame | None = None,
        dev_by_id: Mapping[str, Query] | None = None,
        encoder: Encoder | None = None,
        utility: str = ROUGEL,
    ) -> RewardModel:
        """Train on a labelled pool, early-stopping on the dev pool's loss.

        Without a dev pool, a fifth of the training users (chosen with the
        seed) is held out for early stopping.

        Args:
            pool: Labelled training pool.
            by_id: Query id to query for the training pool (inputs and profiles).
            dev_pool: Labelled dev pool for early stopping.
            dev_by_id: Query id to query for the dev pool.
            encoder: Sentence encoder (default: a new one of the configured depth).
            utility: Utility column to learn.

        Returns:
            ``self``.
        """
        import torch

        cfg = self.config
        encoder = self._encoder(encoder)
        if dev_pool is None:
            users = np.array(sorted(pool[USER_ID].unique()))
            rng = np.random.default_rng(cfg.seed)
            held = set(rng.choice(users, size=max(1, len(users) // 5), replace=False))
            is_dev = pool[USER_ID].isin(held)
            dev_pool, pool = pool[is_dev], pool[~is_dev]
            dev_by_id = by_id
        x, y, g = self._xy(pool, by_id, encoder, utility)
        xd, yd, gd = self._xy(dev_pool, dev_by_id or by_id, encoder, utility)
        self.mu_, self.sd_ = feature_scaling(x)
        torch.manual_seed(cfg.seed)
        net = _net(x.shape[1], cfg.hidden, 2 if cfg.probabilistic else 1)
        if cfg.probabilistic:  # start the variance at the data's variance
            with torch.no_grad():
                net[-1].bias[1] = float(np.log(y.var() + 1e-6))
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        X, Y, G = torch.from_numpy((x - self.mu_) / self.sd_), torch.from_numpy(y), torch.from_numpy(g)
        Xd, Yd, Gd = torch.from_numpy((xd - self.mu_) / self.sd_), torch.from_numpy(yd), torch.from_numpy(gd)
        best, best_state, since = float("inf"), None, 0
        self.history_ = []
        for epoch in range(cfg.max_epochs):
            net.train()
            opt.zero_grad()
            loss = self._loss(net(X), Y, G)
            loss.backward()
            opt.step()
            net.eval()
            with torch.no_grad():
                out_d = net(Xd)
                dev = float(self._loss(out_d, Yd, Gd))
            if epoch % 10 == 0 or dev < best:
                self.history_.append(
                    {
                        "epoch": epoch,
                        "train_loss": loss.item(),
                        "dev_loss": dev,
                        "dev_corr": within_query_corr(out_d[:, 0].numpy(), yd, gd) if epoch % 10 == 0 else float("nan"),
                    }
                )
            if dev < best - 1e-6:
                best, since = dev, 0
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                since += 1
                if since >= cfg.patience:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        self.net_ = net
        log.info("trained %s: best dev loss %.4f after %d steps", cfg.variant, best, epoch + 1)
        return self

    # -- inference -------------------------------------------------------------------------
    def _check(self) -> None:
        if self.net_ is None:
            raise NotFittedError("this reward model is not fitted; call fit() or load() first")

    def score(self, pool: pd.DataFrame, by_id: Mapping[str, Query], encoder: Encoder | None = None) -> Scores:
        """Score every pool row from the query input, the candidate and the profile (never the reference)."""

        return self.score_features(self.features(pool, by_id, encoder))

    def features(self, pool: pd.DataFrame, by_id: Mapping[str, Query], encoder: Encoder | None = None) -> np.ndarray:
        """The (R, F) features :meth:`score` scores: row i's depend only on row i and its own query.

        So rows of several pools may be built in one call (one encoder pass)
        and scored apart with :meth:`score_features` (the serving path:
        :mod:`ttpkit.serve._scoring`), which gives each pool exactly its own
        :meth:`score`; scoring them in one network call does not (the network's
        CPU matmul is not batch-invariant: a row's last float bits depend on
        how many rows it is scored with).
        """
        self._check()
        return build_features(pool, by_id, self._encoder(encoder), self.config.features, k=self.config.k)

    def score_features(self, x: np.ndarray) -> Scores:
        """Scores of rows whose features are already built: ``x`` is (R, F) in :attr:`RMConfig.features` order."""
        import torch

        self._check()
        with torch.no_grad():
            out = self.net_(torch.from_numpy((x - self.mu_) / self.sd_)).numpy().astype(np.float64)
        mean = out[:, 0]
        if self.config.probabilistic:
            std = np.sqrt(np.exp(out[:, 1]) + self.config.var_floor)
        else:
            std = np.zeros_like(mean)
        return Scores(mean=mean, std=std)

    # -- persistence -----------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``training.json``, ``model.safetensors`` and, last, ``config.json`` (see :mod:`ttpkit.reward._io`)."""
        import torch
        from safetensors.torch import save_file

        self._check()
        d = check_writable(directory, "reward model", directory=True)
        tensors = {f"net.{k}": v.contiguous() for k, v in self.net_.state_dict().items()}
        tensors["feature_mean"] = torch.from_numpy(np.asarray(self.mu_, dtype=np.float32))
        tensors["feature_std"] = torch.from_numpy(np.asarray(self.sd_, dtype=np.float32))
        if not all(bool(torch.isfinite(t).all()) for k, t in tensors.items() if k != "feature_std"):
            raise TtpkitError(f"{d}: training diverged (non-finite weights); nothing saved")
        meta = stamp("rm", {"config": dataclasses.asdict(self.config), "features": list(self.config.features),
                            "trained_on": self.trained_on_})
        if self.tasks_:
            meta["tasks"] = list(self.tasks_)
        return save_atomic(d, [("training.json", lambda p: p.write_text(jsonio.dumps(self.history_, indent=1) + "\n")),
                               (WEIGHTS, lambda p: save_file(tensors, str(p)))], meta, record=CONFIG)

    @classmethod
    def load(cls, directory: str | Path) -> RewardModel:
        """Load a model written by :meth:`save`."""
        import torch

        d = Path(directory)
        meta, config = read_rm_config(d)
        weights = d / WEIGHTS
        check_weights(weights, meta, CONFIG)
        tensors = load_tensors(weights)
        for key in ("feature_mean", "feature_std"):
            if key not in tensors:
                raise DataError(f"{weights}: no tensor {key!r}; not a ttpkit reward model")
        rm = cls(config)
        rm.mu_ = tensors.pop("feature_mean").float().numpy()
        sd = tensors.pop("feature_std").float().numpy()
        n_feat = len(config.features)
        if rm.mu_.shape != (n_feat,) or sd.shape != (n_feat,):
            raise DataError(f"{weights}: feature statistics have shape {tuple(rm.mu_.shape)}, the config's "
                            f"{config.variant} model has {n_feat} features")
        check_feature_stats(weights, rm.mu_, sd, _MIN_STD)
        rm.sd_ = np.where(sd > _MIN_STD, sd, np.inf).astype(sd.dtype)  # files from before feature_scaling stored std + 1e-6
        net = _net(n_feat, config.hidden, 2 if config.probabilistic else 1)
        state = {k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")}
        expected = net.state_dict()
        if set(state) != set(expected):
            raise DataError(f"{weights}: tensors {sorted(state)} do not match a {config.variant} model "
                            f"(expected {sorted(expected)})")
        for k, v in state.items():
            if tuple(v.shape) != tuple(expected[k].shape):
                raise DataError(f"{weights}: tensor net.{k} has shape {tuple(v.shape)}, config.json "
                                f"(hidden={config.hidden}, {config.variant}) needs {tuple(expected[k].shape)}")
            if not bool(torch.isfinite(v).all()):
                raise DataError(f"{weights}: tensor net.{k} holds NaN or infinite values")
        net.load_state_dict({k: v.float() for k, v in state.items()})
        net.eval()
        rm.net_ = net
        rm.history_ = read_history(d / "training.json")  # informational: unreadable is []; a directory is an error
        rm.tasks_ = tuple(str(t) for t in meta.get("tasks", []))
        rm.trained_on_ = meta.get("trained_on")
        return rm

