"""The real path: embedded Gemma 3 270M -> pool -> ROUGE labels -> curves (2 queries, N=2)."""

from __future__ import annotations

import pytest

from ttpkit.scaling import curves
from ttpkit.stages import label_pool, sample_pool

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def policy(sample):
    from ttpkit.policy import SamplingConfig
    from ttpkit.policy.local import LocalPolicy

    return LocalPolicy.embedded(sample.task, SamplingConfig(seed=0))


def test_embedded_model_end_to_end(tmp_path, policy, sample):
    out = tmp_path / "pool.parquet"
    sample_pool(sample.queries[:2], out, 2, policy)
    pool = label_pool(out, sample)
    assert len(pool) == 4 and set(pool["query_id"]) == {q.id for q in sample.queries[:2]}
    assert (pool["policy"] == "gemma3-270m").all()
    assert all(t and "\n" not in t for t in pool["text"])  # one non-empty line each
    assert pool["rougeL"].between(0, 1).all() and pool["score_style"].between(0, 1).all()
    res = curves(pool, ["oracle", "random", "style"], "rougeL", [1, 2])
    assert res["oracle"].mean[1] >= res["oracle"].mean[0] == pytest.approx(pool["rougeL"].mean())


def test_same_seed_same_samples_and_n_rows_share_one_prefill(policy, sample, monkeypatch):
    q = sample.queries[3]
    prefilled = []
    real = policy._prefill
    monkeypatch.setattr(policy, "_prefill", lambda prompts: prefilled.append(len(prompts)) or real(prompts))
    a = policy.complete(policy.prompt(q), 3, seed=11)
    assert prefilled == [1]  # the 3 rows of one prompt: one prefill of one sequence
    b = policy.complete(policy.prompt(q), 3, seed=11)
    assert a == b and len(a) == 3
    prompt = policy.prompt(q)
    assert prompt.count("Subject line:") == 5  # 4 retrieved shots + the query
    assert prompt.rstrip().endswith("Subject line:")


def test_hf_backend_reads_the_converted_directory(policy, sample):
    """The safetensors cache of the GGUF is a plain HF model dir: the `hf` backend gives the same samples."""
    from ttpkit.policy import SamplingConfig, make_policy
    from ttpkit.policy.local import converted_dir, embedded_gguf_path

    hf = make_policy("hf", sample.task, SamplingConfig(seed=0), model=converted_dir(embedded_gguf_path()), dtype="float32")
    q = sample.queries[5]
    assert hf.complete(hf.prompt(q), 2, seed=3) == policy.complete(policy.prompt(q), 2, seed=3)


def test_a_querys_samples_do_not_depend_on_its_batch_mates(policy, sample):
    """Several prompts decode in one batch over the shared-prefix cache; each keeps its own seeded draws."""
    prompts = [policy.prompt(q) for q in sample.queries[6:9]]  # different lengths
    batched = policy.complete_many(prompts, 3, seeds=[1, 2, 3])
    assert [len(b) for b in batched] == [3, 3, 3]
    assert batched[1] == policy.complete(prompts[1], 3, seed=2)
    assert batched[0] != batched[2]


def test_plain_cache_fallback_gives_the_same_samples(policy, sample):
    """Models whose cache share_prefix cannot take decode each prompt from a repeated plain cache: same draws."""
    prompts = [policy.prompt(q) for q in sample.queries[9:11]]
    shared = policy.complete_many(prompts, 2, seeds=[4, 5])
    policy._shared_prefix = False
    try:
        plain = policy.complete_many(prompts, 2, seeds=[4, 5])
    finally:
        policy._shared_prefix = True
    assert plain == shared


def test_bf16_keeps_the_first_token_distribution_and_its_seeded_draws(policy, sample):
    """--dtype bfloat16: bf16 weights and cache, float32 logits; the first token's top-p nucleus moves by little."""
    import torch

    from ttpkit.policy import SamplingConfig, make_policy

    bf16 = make_policy("embedded", sample.task, SamplingConfig(seed=0), dtype="bfloat16")
    assert {p.dtype for p in bf16.model.parameters()} == {torch.bfloat16}
    q = sample.queries[4]
    a = bf16.complete(bf16.prompt(q), 3, seed=11)
    assert a == bf16.complete(bf16.prompt(q), 3, seed=11) and all(t and "\n" not in t for t in a)

    def nucleus(pol):
        with torch.inference_mode():
            _, first, _ = pol._prefill([pol.prompt(q)])
        assert first[0].dtype == torch.float32
        p, idx = torch.softmax(first[0][0].masked_fill(pol._stop_mask, float("-inf")), -1).sort(descending=True)
        keep = (p.cumsum(-1) - p) < pol.config.top_p
        return dict(zip(idx[keep].tolist(), (p[keep] / p[keep].sum()).tolist()))

    ref, low = nucleus(policy), nucleus(bf16)
    assert 0.5 * sum(abs(ref.get(k, 0) - low.get(k, 0)) for k in set(ref) | set(low)) < 0.05
