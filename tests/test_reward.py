from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import FakeEncoder

from ttpkit.data import ProfileItem, Query
from ttpkit.errors import ConfigError, DataError, TtpkitError
from ttpkit.reward import models as M
from ttpkit.reward.models import RewardModel, RMConfig, gaussian_nll, pairwise_loss
from ttpkit.utility import within_query_corr


def _fit(params, loss_fn, steps=1500, lr=0.05):
    opt = torch.optim.Adam(params, lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()


def test_nll_recovers_heteroscedastic_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4000, generator=g)
    noise_sd = 0.05 + 0.3 * x  # known noise level, growing with x
    y = 2 * x + noise_sd * torch.randn(4000, generator=g)
    w = torch.zeros(4, requires_grad=True)  # mean = w0 + w1 x ; log var = w2 + w3 x (+ log-linear approx)
    feats = torch.stack([torch.ones_like(x), x, x.pow(2)], 1)
    a = torch.zeros(3, requires_grad=True)

    def loss():
        return gaussian_nll(w[0] + w[1] * x, feats @ a, y, var_floor=1e-6)

    _fit([w, a], loss)
    assert w[1].item() == pytest.approx(2.0, abs=0.05)
    pred_sd = torch.sqrt(torch.exp(feats @ a)).detach()
    for q in (0.1, 0.5, 0.9):
        i = int(q * 3999)
        order = torch.argsort(x)
        assert pred_sd[order[i]].item() == pytest.approx(noise_sd[order[i]].item(), rel=0.15)


def test_beta_nll_same_optimum_and_floor():
    y = torch.randn(2000, generator=torch.Generator().manual_seed(1)) * 0.5 + 1.0
    for beta in (0.0, 0.5):
        p = torch.zeros(2, requires_grad=True)
        _fit([p], lambda: gaussian_nll(p[0].expand(2000), p[1].expand(2000), y, 1e-6, beta), steps=800)
        assert p[0].item() == pytest.approx(1.0, abs=0.05)
        assert np.exp(p[1].item()) == pytest.approx(0.25, rel=0.15)
    # the floor keeps the loss finite when the predicted variance collapses
    val = gaussian_nll(torch.zeros(3), torch.full((3,), -100.0), torch.zeros(3), var_floor=1e-4)
    assert torch.isfinite(val)


def test_pairwise_loss_recovers_ranking_within_groups_only():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(600, generator=g)
    group = torch.arange(600) // 6
    offset = torch.randn(100, generator=g)[group] * 10  # huge per-group offsets: irrelevant to pairs
    y = x + offset
    w = torch.zeros(1, requires_grad=True)
    _fit([w], lambda: pairwise_loss(w * x, y, group), steps=300)
    assert w.item() > 1.0  # learned the within-group order
    # cross-group pairs are ignored: a perfect within-group scorer has low loss despite offsets
    assert pairwise_loss(50 * x, y, group) < 0.05


def test_pairwise_loss_lists_the_same_pairs_as_the_full_mask():
    """The group-by-group pairs against the plain (R, R) mask: same pairs in the same order, same loss and gradient,
    with ties, shuffled (non-contiguous) groups of uneven size and a group without any pair."""
    import torch.nn.functional as F

    from ttpkit.reward.losses import same_group_pairs

    g = torch.Generator().manual_seed(3)
    group = torch.randperm(90, generator=g) % 13  # 13 groups of 6-7 rows, scattered
    target = torch.randint(0, 4, (90,), generator=g).float()  # many ties
    target[group == 12] = 1.0  # a group whose rows all tie: no pair
    mask = (group[:, None] == group[None, :]) & (target[:, None] > target[None, :])
    i, j = same_group_pairs(target, group)
    ref_i, ref_j = mask.nonzero(as_tuple=True)
    assert torch.equal(i, ref_i) and torch.equal(j, ref_j)
    score = torch.randn(90, generator=g, requires_grad=True)
    loss = pairwise_loss(score, target, group)
    (grad,) = torch.autograd.grad(loss, score)
    ref = F.softplus(-(score[:, None] - score[None, :])[mask]).mean()
    (ref_grad,) = torch.autograd.grad(ref, score)
    assert torch.equal(loss, ref) and torch.allclose(grad, ref_grad, atol=1e-7)
    assert pairwise_loss(score, torch.ones(90), group).item() == 0.0  # no pair at all


def _synthetic(n_users=12, per_user=3, m=6, seed=0):
    """Utility = overlap of candidate with the (hidden) reference, which shares words with the input."""
    rng = np.random.default_rng(seed)
    vocab = [f"w{i}" for i in range(60)]
    queries, rows = {}, []
    for u in range(n_users):
        prof = tuple(ProfileItem(f"p{u}{j}", " ".join(rng.choice(vocab, 8)), " ".join(rng.choice(vocab, 3))) for j in range(5))
        for k in range(per_user):
            ref = list(rng.choice(vocab, 4))
            src = " ".join(ref + list(rng.choice(vocab, 6)))
            qid = f"u{u}q{k}"
            queries[qid] = Query(qid, f"u{u}", src, src, prof, reference=" ".join(ref))
            for i in range(m):
                n_good = int(rng.integers(0, 5))
                words = ref[:n_good] + list(rng.choice(vocab, 4 - n_good))
                rows.append({"query_id": qid, "user_id": f"u{u}", "idx": i, "text": " ".join(words),
                             "policy": "x", "seed": 0, "rougeL": n_good / 4})
    return pd.DataFrame(rows), queries


@pytest.mark.parametrize("variant", M.VARIANTS)
def test_every_variant_learns_and_round_trips(tmp_path, variant):
    pool, queries = _synthetic()
    enc = FakeEncoder()
    cfg = RMConfig(variant=variant, max_epochs=300, patience=300, seed=0)
    rm = RewardModel(cfg).fit(pool, queries, encoder=enc)
    torch.manual_seed(cfg.seed)
    init = M._net(len(cfg.features), cfg.hidden, 2 if cfg.probabilistic else 1)  # the weights fit() started from
    assert all(not torch.equal(a, b) for a, b in zip(init.parameters(), rm.net_.parameters()))
    scores = rm.score(pool, queries, encoder=enc)
    corr = within_query_corr(scores.mean, pool["rougeL"].to_numpy(), pool["query_id"].to_numpy())
    assert corr > 0.5, corr  # input overlap predicts utility
    assert (scores.std > 0).all() if variant == "user-prob" else (scores.std == 0).all()
    rm.save(tmp_path / variant)
    assert {p.name for p in (tmp_path / variant).iterdir()} >= {"config.json", "model.safetensors", "training.json"}
    back = RewardModel.load(tmp_path / variant)
    again = back.score(pool, queries, encoder=enc)
    assert np.allclose(again.mean, scores.mean) and np.allclose(again.std, scores.std)
    assert back.config == cfg


def test_scoring_never_reads_the_reference():
    pool, queries = _synthetic(n_users=6)
    enc = FakeEncoder()
    rm = RewardModel(RMConfig(variant="user-prob", max_epochs=50)).fit(pool, queries, encoder=enc)
    blind = {k: Query(q.id, q.user_id, q.input, q.source, q.profile, reference=None) for k, q in queries.items()}
    wrong = {k: Query(q.id, q.user_id, q.input, q.source, q.profile, reference="zzz") for k, q in queries.items()}
    a = rm.score(pool.drop(columns=["rougeL"]), blind, encoder=enc)
    b = rm.score(pool, wrong, encoder=enc)
    assert np.array_equal(a.mean, b.mean) and np.array_equal(a.std, b.std)


def test_unfitted_and_bad_config_errors(tmp_path):
    with pytest.raises(TtpkitError, match="not fitted"):
        RewardModel().score(pd.DataFrame(), {})
    with pytest.raises(TtpkitError, match="known variants"):
        RMConfig(variant="user-magic")
    with pytest.raises(TtpkitError, match="not a ttpkit reward model"):
        RewardModel.load(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("variant", [{"dtype": "bfloat16"}, {"layers": 2}], ids=["bf16", "2-layers"])
def test_real_encoder_variants_share_the_cache_file_not_the_vectors(tmp_path, variant):
    from ttpkit.reward.features import Encoder

    texts = ["refs: fix a leak in ref iteration", "refs: plug a leak when iterating refs", "Debian package of a small PDF viewer"]
    full = Encoder(cache_file=tmp_path / "emb.safetensors")
    a = full.encode(texts)
    full.save_cache()
    other = Encoder(cache_file=tmp_path / "emb.safetensors", **variant)
    b = other.encode(texts)
    assert a.shape == b.shape == (3, 384) and b.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(a, b)  # computed by the variant, not read from the full encoder's cache entries
    assert b[0] @ b[1] > b[0] @ b[2]  # the two ref-leak subjects stay closer than the Debian synopsis
    cos = (a * b).sum(1)
    if "dtype" in variant:  # the same encoder in bf16: close to float32
        assert cos.min() > 0.999 and (a[0] @ a[1]) == pytest.approx(b[0] @ b[1], abs=0.01)
    else:  # a shallower encoder: a different one
        assert cos.max() < 0.999 and len(other.model[0].auto_model.encoder.layer) == 2


def test_encoder_settings_are_checked_before_loading():
    from ttpkit.errors import ConfigError
    from ttpkit.reward.features import Encoder

    with pytest.raises(ConfigError, match="bfloat16"):
        Encoder(dtype="float16")
    with pytest.raises(ConfigError, match="1..6"):
        Encoder(layers=0)
    assert Encoder(layers=6).layers is None and Encoder(layers=6)._model is None  # 6 of 6: the full encoder


def test_a_feature_constant_in_training_cannot_blow_up_a_score():
    from ttpkit.reward.models import feature_scaling

    x = np.array([[0.0, 1.0], [0.0, 2.0], [0.0, 3.0]], dtype=np.float32)  # feature 0 never varies
    mu, sd = feature_scaling(x)
    test = np.array([[1.0, 2.0]], dtype=np.float32)  # ... but does at test time
    z = (test - mu) / sd
    assert z[0, 0] == 0.0 and np.isfinite(z).all()
    assert sd[1] == pytest.approx(x[:, 1].std())


def test_an_rm_is_scored_with_the_encoder_layers_it_was_trained_on(tmp_path):
    import json

    from ttpkit.errors import ConfigError

    pool, queries = _synthetic(n_users=6)
    cfg = RMConfig(variant="user-mse", max_epochs=30, encoder_layers=2)
    rm = RewardModel(cfg).fit(pool, queries, encoder=FakeEncoder(layers=2))
    with pytest.raises(ConfigError, match="uses 2 encoder layers, the encoder passed has all"):
        rm.score(pool, queries, encoder=FakeEncoder())
    rm.save(tmp_path / "rm")
    back = RewardModel.load(tmp_path / "rm")
    assert back.config.encoder_layers == 2
    assert np.array_equal(back.score(pool, queries, encoder=FakeEncoder(layers=2)).mean, rm.score(pool, queries, encoder=FakeEncoder(layers=2)).mean)
    with pytest.raises(ConfigError, match="uses all encoder layers, the encoder passed has 2"):
        RewardModel(RMConfig(variant="user-mse", max_epochs=5)).fit(pool, queries, encoder=FakeEncoder(layers=2))
    # files written before the option existed load as full-encoder models
    meta = json.loads((tmp_path / "rm" / "config.json").read_text())
    del meta["config"]["encoder_layers"]
    (tmp_path / "rm" / "config.json").write_text(json.dumps(meta))
    assert RewardModel.load(tmp_path / "rm").config.encoder_layers is None
    assert RMConfig(encoder_layers=6).encoder_layers is None  # 6 of 6 is the full encoder
    for bad in (0, 7, 2.5, True):
        with pytest.raises(TtpkitError, match="encoder layers must be an integer in 1..6"):
            RMConfig(encoder_layers=bad)


def test_bit_parallel_lcs_equals_the_table():
    import random

    from ttpkit.reward.features import _lcs_f1, _lcs_f1_bits, _match_masks

    rng = random.Random(0)
    for _ in range(3000):
        vocab = [f"w{i}" for i in range(rng.randint(1, 8))]
        a = [rng.choice(vocab) for _ in range(rng.randint(0, 15))]
        b = [rng.choice(vocab) for _ in range(rng.randint(0, 70))]  # > 64 words: more than one machine word of bits
        assert _lcs_f1_bits(a, _match_masks(b), len(b)) == _lcs_f1(a, b)
    assert _lcs_f1_bits("fix the leak".split(), _match_masks("fix a memory leak".split()), 4) == pytest.approx(2 * (2 / 3) * (2 / 4) / (2 / 3 + 2 / 4))


def test_words_are_lowercased_alphanumeric_runs():
    from ttpkit.reward.features import _words

    def per_char(text):  # the definition: every non-alphanumeric character separates words
        return "".join(c.lower() if c.isalnum() else " " for c in text).split()

    for text in ["refs: fix a leak (v2)", "snake_case 3.14 ½ ²", "ΟΔΟΣ café—naïve İx", "", "___"]:
        assert _words(text) == per_char(text)
    assert _words("ΟΔΟΣ") == ["οδοσ"]  # character by character: no final-sigma rule


@pytest.mark.parametrize("bad", [{"hidden": 0}, {"hidden": -1}, {"var_floor": -1.0}, {"var_floor": 0.0}, {"lr": float("nan")},
                                 {"max_epochs": 0}, {"k": -1}, {"hidden": 2.5}, {"seed": "0"}])
def test_rm_config_refuses_values_that_train_or_score_nonsense(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        RMConfig(**bad)


def test_saved_rm_records_its_manifest_and_detects_a_torn_save(tmp_path):
    pool, queries = _synthetic(n_users=6)
    rm = RewardModel(RMConfig(variant="user-mse", max_epochs=30)).fit(pool, queries, encoder=FakeEncoder())
    rm.trained_on_ = {"train": {"rows": len(pool)}}
    d = rm.save(tmp_path / "rm")
    meta = json.loads((d / "config.json").read_text())
    assert meta["kind"] == "rm" and meta["format"] == 1 and meta["ttpkit"] and len(meta["weights_sha256"]) == 64
    assert RewardModel.load(d).trained_on_ == {"train": {"rows": len(pool)}}
    other = RewardModel(RMConfig(variant="user-mse", max_epochs=30, seed=1)).fit(pool, queries, encoder=FakeEncoder())
    other.save(tmp_path / "other")
    (d / "model.safetensors").write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())  # weights of another save
    with pytest.raises(DataError, match="interrupted"):
        RewardModel.load(d)


def test_non_finite_weights_are_never_saved(tmp_path):
    pool, queries = _synthetic(n_users=6)
    rm = RewardModel(RMConfig(variant="user-mse", max_epochs=30)).fit(pool, queries, encoder=FakeEncoder())
    with torch.no_grad():
        next(rm.net_.parameters()).fill_(float("nan"))
    with pytest.raises(TtpkitError, match="non-finite"):
        rm.save(tmp_path / "rm")
    assert not (tmp_path / "rm" / "config.json").exists()


def test_long_form_features_see_loops_vocabulary_coverage_and_lines():
    from ttpkit.reward.features import LONG_FEATURES, build_features

    prof = (ProfileItem("p1", "tool", "A tool for parsing logs.\nIt reads syslog files."),
            ProfileItem("p2", "lib", "A library for parsing.\nIt is fast.\nIt is small."))
    q = Query("q", "u", "x", "log parser", prof, reference=None)
    texts = ["parse the logs parse the logs parse the logs parse the logs", "A fast tool for parsing syslog files.\nIt is small."]
    pool = pd.DataFrame({"query_id": "q", "user_id": "u", "idx": [0, 1], "text": texts})
    x = build_features(pool, {"q": q}, FakeEncoder(), LONG_FEATURES)
    col = {n: x[:, i] for i, n in enumerate(LONG_FEATURES)}
    assert col["repeat_frac"][0] > 0.5 and col["repeat_frac"][1] == 0
    assert col["distinct_frac"][0] < col["distinct_frac"][1]
    assert col["retrieved_recall"][1] > col["retrieved_recall"][0]
    assert col["lines_z"][0] < col["lines_z"][1]  # one line vs the user's 2-3


def test_a_long_form_rm_has_the_extra_features_and_round_trips(tmp_path):
    cfg = RMConfig(variant="user-pairwise", long_form=True, max_epochs=30)
    assert cfg.features[-4:] == ("repeat_frac", "distinct_frac", "retrieved_recall", "lines_z")
    assert "repeat_frac" in RMConfig(variant="global-mse", long_form=True).features
    assert "repeat_frac" not in RMConfig(variant="user-pairwise").features  # bundled models keep their features
    pool, queries = _synthetic(n_users=6)
    rm = RewardModel(cfg).fit(pool, queries, encoder=FakeEncoder())
    back = RewardModel.load(rm.save(tmp_path / "rm"))
    assert back.config.long_form and np.allclose(back.score(pool, queries, encoder=FakeEncoder()).mean,
                                                 rm.score(pool, queries, encoder=FakeEncoder()).mean)


def test_the_encoder_forgets_texts_in_memory_and_in_its_file(tmp_path):
    from ttpkit.reward.encoder import Encoder

    enc = Encoder(cache_file=tmp_path / "cache.safetensors")
    for text in ("hers", "his"):
        enc.cache[enc._cache_key(text)] = np.ones(Encoder.dim, np.float32)
    assert enc.forget(["hers", "never seen"]) == 1
    assert list(Encoder(cache_file=tmp_path / "cache.safetensors").cache) == [enc._cache_key("his")]
