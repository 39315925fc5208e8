"""The policy's decode internals: shared-prefix KV cache and nucleus draws (tiny random models, no download)."""

from __future__ import annotations

import inspect

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from ttpkit.policy import _cache  # noqa: E402
from ttpkit.policy._sampling import draw_tokens, nucleus_threshold  # noqa: E402


def _tiny(kind: str):
    torch.manual_seed(0)
    common = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_attention_heads=4,
                  num_key_value_heads=2, head_dim=16, max_position_embeddings=256)
    if kind == "gemma3":  # sliding and full attention layers mixed, like Gemma 3 270M
        cfg = transformers.Gemma3TextConfig(num_hidden_layers=4, sliding_window=16,
                                            layer_types=["sliding_attention", "sliding_attention",
                                                         "full_attention", "sliding_attention"], **common)
        model = transformers.Gemma3ForCausalLM(cfg)
    else:
        cfg = transformers.LlamaConfig(num_hidden_layers=3, **common)
        model = transformers.LlamaForCausalLM(cfg)
    model.set_attn_implementation("sdpa")
    return model.eval()


def _kw(model) -> str:
    """transformers 5 renamed ``past_key_values`` to ``cache``."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def _decode(model, prompts, feeds, n: int, shared: bool, select: list[int] | None = None, select_at: int = 7):
    """Prefill each prompt once, decode ``feeds`` (steps x rows) for n rows per prompt; return per-step logits.

    Plain: one repeated ``DynamicCache`` per prompt, decoded separately. Shared:
    all prompts' rows in one batch over a shared-prefix cache. ``select`` keeps
    only those rows from step ``select_at`` on.
    """
    from transformers import DynamicCache

    kw = _kw(model)
    rows = torch.arange(len(prompts) * n)
    caches, lengths = [], []
    with torch.no_grad():
        for prompt in prompts:
            out = model(input_ids=prompt, use_cache=True, logits_to_keep=1, **{kw: DynamicCache(config=model.config)})
            caches.append(getattr(out, kw))
            lengths.append(prompt.shape[1])
        if shared:
            layers = _cache.share_prefix(caches, [n] * len(prompts), len(feeds))
            assert layers is not None
            parts = [(caches[0], rows)]
        else:
            for c in caches:
                c.batch_repeat_interleave(n)
            parts = [(c, rows[g * n : (g + 1) * n]) for g, c in enumerate(caches)]
        base = torch.tensor(lengths).repeat_interleave(n)
        logits = []
        for step, feed in enumerate(feeds):
            step_logits = []
            if step == select_at and select is not None:
                kept = []
                for cache, part in parts:
                    keep = torch.tensor([i for i, r in enumerate(part.tolist()) if r in select], dtype=torch.long)
                    if len(keep):  # a plain cache with no row left is dropped
                        cache.batch_select_indices(keep)
                        kept.append((cache, part[keep]))
                parts = kept
            for cache, part in parts:
                out = model(input_ids=feed[part].unsqueeze(1), position_ids=(base[part] + step).unsqueeze(1),
                            use_cache=True, **{kw: cache})
                step_logits.append(out.logits[:, -1])
            logits.append(torch.cat(step_logits))
    if shared:
        assert all(layer.calls == len(feeds) for layer in layers)  # the shared path ran at every step
    return logits


@pytest.mark.parametrize("kind", ["gemma3", "llama"])
@pytest.mark.parametrize("prompt_lens", [[5], [15], [40], [40, 7, 15]])  # shorter than, at and past the window
def test_shared_prefix_cache_matches_plain_cache(kind, prompt_lens):
    model = _tiny(kind)
    gen = torch.Generator().manual_seed(sum(prompt_lens))
    prompts = [torch.randint(0, 97, (1, t), generator=gen) for t in prompt_lens]
    n, steps = 4, 12
    rows = n * len(prompts)
    feeds = torch.randint(0, 97, (steps, rows), generator=gen)
    select = [r for r in range(rows) if r % n != 1 and not n <= r < 2 * n]  # rows leave mid-way; with 3 prompts, all of the 2nd
    plain = _decode(model, prompts, feeds, n, shared=False, select=select)
    assert _cache.enable(model)
    shared = _decode(model, prompts, feeds, n, shared=True, select=select)
    for a, b in zip(plain, shared):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)


def test_share_prefix_refuses_generation_longer_than_the_window():
    from transformers import DynamicCache

    model = _tiny("gemma3")
    assert _cache.enable(model)
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(input_ids=torch.arange(10).unsqueeze(0), use_cache=True, **{_kw(model): cache})
    before = list(cache.layers)
    assert _cache.share_prefix([cache], [4], capacity=model.config.sliding_window) is None
    assert list(cache.layers) == before  # untouched: the caller falls back to repeating the cache


def _exact_nucleus(logits, temperature, top_p):
    """Reference: the top-p distribution by a full sort, as transformers' TopPLogitsWarper defines it."""
    probs = torch.softmax(logits.double() / temperature, -1)
    p, idx = probs.sort(descending=True)
    keep = (p.cumsum(-1) - p) < top_p
    out = torch.zeros_like(probs)
    out[idx[keep]] = p[keep]
    return out / out.sum()


@pytest.mark.parametrize("top_p,temperature", [(0.9, 1.0), (0.5, 0.7), (1.0, 1.0)])
def test_draw_tokens_follows_the_exact_nucleus_distribution(top_p, temperature):
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(1, 40, generator=gen) * 2
    target = _exact_nucleus(logits[0], temperature, top_p)
    draws = draw_tokens(logits.expand(40_000, -1), gen, temperature, top_p)
    freq = torch.bincount(draws, minlength=40).double() / len(draws)
    assert freq[target == 0].sum() == 0  # nothing outside the nucleus
    # total variation distance of 40k draws from the target is ~0.01; 0.03 is far outside sampling noise
    assert (freq - target).abs().sum() / 2 < 0.03


def test_flat_rows_take_the_wide_path_and_stay_exact():
    gen = torch.Generator().manual_seed(2)
    vocab = 2000  # nearly uniform over 2000 tokens: the top 512 hold < top_p
    logits = torch.randn(1, vocab, generator=gen) * 0.01
    probs = torch.softmax(logits, -1)
    thr = nucleus_threshold(probs, 0.9)
    p, _ = probs.sort(descending=True)
    k = int(((p.cumsum(-1) - p) < 0.9).sum())
    assert thr.item() == pytest.approx(p[0, k - 1].item())
    draws = draw_tokens(logits.expand(20_000, -1), gen, 1.0, 0.9)
    assert bool((probs[0, draws] >= thr[0]).all())
    assert len(draws.unique()) > 512  # drew beyond the fast path's top 512


def test_banned_tokens_are_never_drawn():
    gen = torch.Generator().manual_seed(3)
    logits = torch.zeros(2000, 10)
    logits[:, 3] = 5.0  # by far the likeliest token, banned
    ban = torch.zeros(10, dtype=torch.bool)
    ban[3] = True
    draws = draw_tokens(logits, gen, 1.0, 0.95, ban=ban)
    assert not bool((draws == 3).any())
    assert len(draws.unique()) == 9


def test_local_policy_decodes_each_batch_the_sampling_stage_hands_it_once(tmp_path, sample):
    """The stage cuts queries by ``batch_queries``; LocalPolicy.sample decodes what it gets in one batch, seeded per query."""
    from ttpkit.policy import SamplingConfig, query_seed
    from ttpkit.policy.local import LocalPolicy
    from ttpkit.pool import read_pool
    from ttpkit.stages import sample_pool

    calls = []
    from ttpkit.policy.base import Completion

    policy = object.__new__(LocalPolicy)  # no model: complete_scored is replaced
    policy.config, policy.name, policy.batch_queries = SamplingConfig(seed=7), "tiny", 2
    policy.prompt = lambda q: f"prompt of {q.id}"

    def complete_scored(prompts, m, seeds, greedy=False):
        calls.append((prompts, m, seeds))
        return [[Completion(f"{p} #{j}") for j in range(m)] for p in prompts]

    policy.complete_scored = complete_scored
    queries = sample.queries[:5]
    assert sample_pool(queries, tmp_path / "p.parquet", 3, policy) == 5
    assert [len(p) for p, _, _ in calls] == [2, 2, 1] and {m for _, m, _ in calls} == {3}
    assert [s for _, _, seeds in calls for s in seeds] == [query_seed(7, q.id) for q in queries]
    pool = read_pool(tmp_path / "p.parquet")
    assert pool["text"].tolist() == [f"prompt of {q.id} #{j}" for q in queries for j in range(3)]
    assert (pool["policy"] == "tiny").all() and (pool["seed"] == 7).all()
    with pytest.raises(Exception, match="m \\(candidates per query\\) must be >= 1"):
        policy.sample(queries[:1], 0)
