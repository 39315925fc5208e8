"""The ``vllm`` backend: the real engine where vLLM is installed, a fake ``vllm`` module everywhere else."""

from __future__ import annotations

import json
import sys
import types
from importlib import util

import pytest
from typer.testing import CliRunner

from ttpkit.cli import app
from ttpkit.data import bundled_sample_dir
from ttpkit.errors import ConfigError
from ttpkit.policy import PolicySpec, SamplingConfig, make_policy, query_seed
from ttpkit.policy import vllm as backend
from ttpkit.stages import sampling_manifest

runner = CliRunner()


class FakeSamplingParams:
    """Records its keyword arguments, as ``vllm.SamplingParams`` takes them."""

    def __init__(self, **kw) -> None:
        self.kw = kw


class FakeLLM:
    """Records its engine arguments; ``generate`` answers ``n`` two-line completions per prompt, in reverse index order."""

    built: list[dict] = []

    def __init__(self, **kw) -> None:
        self.kw = kw
        self.calls: list[tuple[list[str], list[FakeSamplingParams]]] = []
        FakeLLM.built.append(kw)

    def get_tokenizer(self):
        return types.SimpleNamespace(encode=lambda text: text.split())

    def generate(self, prompts, params, use_tqdm=True):
        self.calls.append((prompts, params))
        outs = []
        for p, sp in zip(prompts, params):
            n = sp.kw["n"]
            choices = [types.SimpleNamespace(index=i, text=f" answer {i} seed {sp.kw['seed']}\nnext line") for i in range(n)]
            outs.append(types.SimpleNamespace(prompt=p, outputs=choices[::-1]))
        return outs


@pytest.fixture
def fake_vllm(monkeypatch):
    module = types.ModuleType("vllm")
    module.LLM, module.SamplingParams = FakeLLM, FakeSamplingParams
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.built = []
    return module


@pytest.fixture
def model_dir(tmp_path):
    """A Hugging Face directory with ``architectures`` (the fake engine reads nothing else)."""
    d = tmp_path / "tiny-llama"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    return d


def test_the_real_engine_samples_the_pool_schema(sample):
    if util.find_spec("vllm") is None:
        pytest.skip(f"vllm is not installed: {backend.INSTALL_HINT}")
    config = SamplingConfig(max_new_tokens=8, seed=3)
    policy = make_policy("vllm", sample.task, config, model="embedded", dtype="auto")
    queries = sample.queries[:2]
    first, again = policy.sample(queries, 2), policy.sample(queries, 2)
    assert [[c.text for c in cs] for cs in first] == [[c.text for c in cs] for cs in again]  # per-query seeds
    for q, cs in zip(queries, first):
        assert [c.idx for c in cs] == [0, 1] and all(c.query_id == q.id and c.seed == 3 and "\n" not in c.text for c in cs)


def test_engine_arguments_prefix_caching_unchunked_prefill_and_the_seed(fake_vllm, model_dir, sample):
    policy = make_policy("vllm", sample.task, SamplingConfig(seed=7), model=str(model_dir), dtype="bfloat16")
    kw = FakeLLM.built[-1]
    assert kw["model"] == str(model_dir) and kw["dtype"] == "bfloat16" and kw["seed"] == 7
    assert kw["enable_prefix_caching"] is True and kw["enable_chunked_prefill"] is False
    assert kw["max_num_batched_tokens"] >= kw["max_model_len"] == policy.max_model_len
    with pytest.raises(ConfigError, match="chunked"):
        backend.VLLMPolicy.from_model(model_dir, sample.task, max_model_len=4096, max_num_batched_tokens=512)


def test_requests_carry_n_and_per_query_seeds_and_outputs_map_to_candidates(fake_vllm, model_dir, sample):
    config = SamplingConfig(temperature=0.7, top_p=0.9, max_new_tokens=24, seed=5)
    policy = make_policy("vllm", sample.task, config, model=str(model_dir))
    queries = sample.queries[:3]
    pools = policy.sample(queries, 4)
    prompts, params = policy.llm.calls[-1]
    assert prompts == [policy.prompt(q) for q in queries]  # one generate call for the batch
    for q, sp, cands in zip(queries, params, pools):
        assert sp.kw["n"] == 4 and sp.kw["seed"] == query_seed(5, q.id)
        assert (sp.kw["temperature"], sp.kw["top_p"], sp.kw["max_tokens"]) == (0.7, 0.9, 24)
        assert [c.idx for c in cands] == [0, 1, 2, 3]  # by the output's index, not vLLM's order
        assert all(c.query_id == q.id and c.user_id == q.user_id and c.seed == 5 and c.policy == "tiny-llama" for c in cands)
        assert [c.text for c in cands] == [f"answer {i} seed {query_seed(5, q.id)}" for i in range(4)]  # first line only


def test_a_prompt_longer_than_the_context_is_refused_not_chunked(fake_vllm, model_dir, sample):
    policy = backend.VLLMPolicy.from_model(model_dir, sample.task, SamplingConfig(max_new_tokens=8), max_model_len=16)
    with pytest.raises(ConfigError, match="max_model_len=16"):
        policy.sample(sample.queries[:1], 2)


def test_the_manifest_identity_names_the_backend_model_and_resolved_dtype(fake_vllm, model_dir, sample):
    spec = PolicySpec.from_options("vllm", model=str(model_dir), dtype="bfloat16")
    spec.check()
    policy = sampling_manifest(spec, sample, 4, 0)["policy"]
    assert policy["backend"] == "vllm" and policy["model"] == str(model_dir) and len(policy["sha256"]) == 64
    assert policy["dtype"] == "bfloat16" and policy["name"] == "vllm"
    assert spec.build(sample.task, seed=2).llm.kw["seed"] == 2


def test_architectures_are_written_into_ttpkits_converted_copy_only(fake_vllm, tmp_path, monkeypatch):
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    converted = tmp_path / "cache" / "m-key"
    converted.mkdir(parents=True)
    (converted / "DONE").write_text("{}")
    (converted / "config.json").write_text(json.dumps({"model_type": "gemma3_text", "vocab_size": 7}))
    monkeypatch.setattr(backend, "converted_model", lambda path: converted)
    assert backend.prepare_model_dir(gguf) == converted
    written = json.loads((converted / "config.json").read_text())
    assert written == {"model_type": "gemma3_text", "vocab_size": 7, "architectures": ["Gemma3ForCausalLM"]}
    user = tmp_path / "user-model"
    user.mkdir()
    (user / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(ConfigError, match='add "architectures": \\["LlamaForCausalLM"\\]'):
        backend.prepare_model_dir(user)
    assert "architectures" not in json.loads((user / "config.json").read_text())  # a user's files are not edited


def test_a_missing_vllm_names_the_install_command(monkeypatch, model_dir, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'ttpkit\[vllm\]'"):
        backend.import_vllm()
    with pytest.raises(ConfigError, match=r"pip install 'ttpkit\[vllm\]'"):
        PolicySpec.from_options("vllm", model=str(model_dir)).check()
    res = runner.invoke(app, ["sample", "--data", str(bundled_sample_dir()), "--split", "dev", "--out", str(tmp_path / "p"),
                              "--backend", "vllm"])
    assert res.exit_code == 2 and "pip install 'ttpkit[vllm]'" in res.output, res.output
    assert not (tmp_path / "p").exists()
