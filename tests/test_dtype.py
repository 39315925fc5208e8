"""--dtype auto|float32|bfloat16: resolution of auto, a manifest that names the dtype only off the device's default, and bf16 decoding."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from ttpkit import device as dev
from ttpkit.cli import app
from ttpkit.data import bundled_sample_dir
from ttpkit.errors import ConfigError
from ttpkit.manifest import check_resume
from ttpkit.policy import PolicySpec
from ttpkit.stages import sampling_manifest

runner = CliRunner()


@pytest.fixture
def native(monkeypatch):
    """A CPU with native bf16, and one without."""
    def set_native(value: bool) -> None:
        monkeypatch.setattr(dev, "native_bf16", lambda: value)

    return set_native


def test_auto_and_unset_are_bf16_on_cuda_and_on_cpus_with_native_bf16(native):
    native(True)
    assert dev.resolve_dtype(None, "cpu") == "bfloat16" and dev.resolve_dtype(None, "cuda") == "bfloat16"
    assert dev.resolve_dtype("auto", "cpu") == "bfloat16" and dev.resolve_dtype("auto", "cuda") == "bfloat16"
    native(False)
    assert dev.resolve_dtype(None, "cpu") == "float32" and dev.resolve_dtype(None, "cuda") == "bfloat16"
    assert dev.resolve_dtype("auto", "cpu") == "float32" and dev.resolve_dtype("auto", "cuda") == "bfloat16"
    for explicit in ("float32", "bfloat16"):
        assert dev.resolve_dtype(explicit, "cpu") == explicit == dev.resolve_dtype(explicit, "cuda")
    with pytest.raises(ConfigError, match="auto, float32, bfloat16, got 'fp16'"):
        dev.resolve_dtype("fp16", "cpu")


def test_the_unset_dtype_follows_the_cpu_for_ttpkits_sampler_only(native):
    from ttpkit.policy.backends import get_backend
    from ttpkit.policy.spec import _resolve_dtype

    native(True)
    assert _resolve_dtype(get_backend("embedded"), None, "cpu") == "bfloat16" == _resolve_dtype(get_backend("hf"), None, "cpu")
    assert _resolve_dtype(get_backend("vllm"), None, "cpu") == "float32"  # vLLM's default was not part of the check
    assert _resolve_dtype(get_backend("vllm"), "auto", "cpu") == "bfloat16" == _resolve_dtype(get_backend("vllm"), None, "cuda")
    assert _resolve_dtype(get_backend("embedded"), "float32", "cpu") == "float32"  # pinned samples pin float32 explicitly


def test_native_bf16_reads_the_cpu_flags():
    flags = open("/proc/cpuinfo").read()
    assert dev.native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


def test_the_manifest_names_a_resolved_dtype_only_off_the_devices_default(sample, native, monkeypatch):
    spec = PolicySpec.from_options("embedded")
    native(False)
    default = sampling_manifest(spec, sample, 4, 0)
    assert "dtype" not in default["policy"]  # float32 pools from before --dtype still resume
    native(False)
    assert "dtype" not in sampling_manifest(dataclasses.replace(spec, dtype="auto"), sample, 4, 0)["policy"]
    native(True)
    bf16 = sampling_manifest(dataclasses.replace(spec, dtype="auto"), sample, 4, 0)
    assert bf16["policy"]["dtype"] == "bfloat16"  # auto is resolved before it is recorded
    assert sampling_manifest(dataclasses.replace(spec, dtype="bfloat16"), sample, 4, 0)["policy"] == bf16["policy"]
    check_resume("pool.parquet", default, sampling_manifest(dataclasses.replace(spec, dtype="float32"), sample, 4, 0))
    with pytest.raises(ConfigError, match="dtype"):
        check_resume("pool.parquet", default, bf16)  # a float32 pool is not resumed in bf16
    assert sampling_manifest(spec, sample, 4, 0)["policy"] == bf16["policy"]  # unset: bf16 on a native-bf16 CPU ...
    with pytest.raises(ConfigError, match="dtype"):
        check_resume("pool.parquet", default, sampling_manifest(spec, sample, 4, 0))  # ... so an older pool needs --dtype float32
    monkeypatch.setattr(dev, "_cuda_available", lambda: True)
    on_cuda = dataclasses.replace(spec, device="cuda")
    assert "dtype" not in sampling_manifest(on_cuda, sample, 4, 0)["policy"]  # CUDA ran bf16 before --dtype
    assert "dtype" not in sampling_manifest(dataclasses.replace(on_cuda, dtype="auto"), sample, 4, 0)["policy"]
    assert sampling_manifest(dataclasses.replace(on_cuda, dtype="float32"), sample, 4, 0)["policy"]["dtype"] == "float32"


def test_a_server_records_no_dtype_and_takes_no_bf16(sample):
    server = PolicySpec.from_options("openai", base_url="http://127.0.0.1:1/v1", dtype="auto")
    assert "dtype" not in sampling_manifest(server, sample, 4, 0)["policy"]
    with pytest.raises(ConfigError, match="not to a server"):
        PolicySpec.from_options("openai", base_url="http://127.0.0.1:1/v1", dtype="bfloat16")
    with pytest.raises(ConfigError, match="int8"):
        PolicySpec.from_options("embedded", dtype="bfloat16", int8=True)


@pytest.mark.parametrize("cmd", [
    ["sample", "--data", str(bundled_sample_dir()), "--split", "dev", "--out", "{tmp}/p"],
    ["personalize", "--profile", "{tmp}/p.json", "--input", "fix a bug"],
    ["serve", "--port", "1"],
])
def test_a_bad_dtype_is_one_line_and_exit_2_before_anything_loads(cmd, tmp_path):
    res = runner.invoke(app, [a.format(tmp=tmp_path) for a in cmd] + ["--dtype", "half"])
    assert res.exit_code == 2, res.output
    assert "auto, float32, bfloat16, got 'half'" in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists()


def test_bf16_shared_prefix_decoding_keeps_float32_softmax_and_matches_the_plain_cache():
    """In bf16 the shared-prefix attention (float32 softmax) is no further from the float32 logits than bf16 SDPA is."""
    torch = pytest.importorskip("torch")
    from test_policy import _decode, _tiny

    from ttpkit.policy import _cache

    gen = torch.Generator().manual_seed(3)
    prompts = [torch.randint(0, 97, (1, t), generator=gen) for t in (40, 7)]
    n, steps = 3, 8
    feeds = torch.randint(0, 97, (steps, n * len(prompts)), generator=gen)
    reference = _decode(_tiny("gemma3"), prompts, feeds, n, shared=False)  # float32, plain cache
    plain = _decode(_tiny("gemma3").to(torch.bfloat16), prompts, feeds, n, shared=False)
    model = _tiny("gemma3").to(torch.bfloat16)
    assert _cache.enable(model)
    shared = _decode(model, prompts, feeds, n, shared=True)
    for ref, a, b in zip(reference, plain, shared):
        assert b.dtype == torch.bfloat16
        err_plain, err_shared = (a.float() - ref).abs().max(), (b.float() - ref).abs().max()
        assert err_shared <= 2 * err_plain + 2e-2, (err_shared, err_plain)


def test_place_casts_to_the_resolved_dtype_and_leaves_a_float32_cpu_model_alone():
    torch = pytest.importorskip("torch")
    import types

    from test_policy import _tiny

    from ttpkit.policy.spec import _place

    model = _tiny("llama")
    assert _place(types.SimpleNamespace(model=model), "cpu", "float32").model is model
    bf16 = _place(types.SimpleNamespace(model=model), "cpu", "bfloat16").model
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16} and bf16.device.type == "cpu"


def test_a_study_keys_its_pools_by_the_resolved_dtype_so_older_caches_stay_valid(native):
    from ttpkit.studies.paper import _policy_key

    spec = PolicySpec.from_options("embedded")
    native(False)
    assert "dtype" not in _policy_key(spec) and _policy_key(spec) == _policy_key(dataclasses.replace(spec, dtype="float32"))
    native(True)
    assert _policy_key(dataclasses.replace(spec, dtype="auto"))["dtype"] == "bfloat16"
