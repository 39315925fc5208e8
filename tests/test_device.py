"""--device auto|cpu|cuda: validation before any model loads, the resolution of auto, and manifests that stay as they were on CPU."""

from __future__ import annotations

import dataclasses

import pytest
from typer.testing import CliRunner

from ttpkit import device as dev
from ttpkit.cli import app
from ttpkit.data import bundled_sample_dir
from ttpkit.errors import ConfigError
from ttpkit.policy import PolicySpec
from ttpkit.reward.encoder import Encoder
from ttpkit.stages import sampling_manifest

runner = CliRunner()


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(dev, "_cuda_available", lambda: False)


@pytest.fixture
def cuda(monkeypatch):
    monkeypatch.setattr(dev, "_cuda_available", lambda: True)


def test_auto_is_cuda_only_where_torch_sees_it():
    import torch

    assert dev.resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert dev.resolve_device("cpu") == "cpu" and dev.model_dtype("cpu") == "float32" and dev.model_dtype("cuda") == "bfloat16"


def test_resolution_with_and_without_cuda(monkeypatch):
    monkeypatch.setattr(dev, "_cuda_available", lambda: True)
    assert dev.resolve_device("auto") == "cuda" and dev.resolve_device("cuda") == "cuda" and dev.resolve_device("cpu") == "cpu"
    monkeypatch.setattr(dev, "_cuda_available", lambda: False)
    assert dev.resolve_device("auto") == "cpu"
    with pytest.raises(ConfigError, match="no CUDA device"):
        dev.resolve_device("cuda")
    with pytest.raises(ConfigError, match="auto, cpu, cuda, got 'gpu'"):
        dev.resolve_device("gpu")


@pytest.mark.parametrize("cmd", [
    ["sample", "--data", str(bundled_sample_dir()), "--split", "dev", "--out", "{tmp}/p"],
    ["score", "--rm", "default", "--pool", "{tmp}/p.parquet", "--data", str(bundled_sample_dir())],
    ["train-rm", "--pool", "{tmp}/p.parquet", "--data", str(bundled_sample_dir()), "--out", "{tmp}/rm"],
    ["personalize", "--profile", "{tmp}/p.json", "--input", "fix a bug"],
    ["serve", "--port", "1"],
])
@pytest.mark.parametrize("value, says", [("gpu", "must be one of auto, cpu, cuda"), ("cuda", "no CUDA device")])
def test_a_bad_device_is_one_line_and_exit_2_before_anything_loads(cmd, value, says, no_cuda, tmp_path):
    res = runner.invoke(app, [a.format(tmp=tmp_path) for a in cmd] + ["--device", value])
    assert res.exit_code == 2, res.output
    assert says in res.output and len(res.output.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists() and not (tmp_path / "rm").exists()  # nothing was written


def test_the_manifest_names_the_device_only_off_the_cpu(sample, cuda):
    cpu = PolicySpec.from_options("openai", base_url="http://127.0.0.1:1/v1")
    m = sampling_manifest(cpu, sample, 4, 0)
    assert "device" not in m["policy"]  # pools from before --device still resume
    spec = dataclasses.replace(cpu, device="cuda")
    assert sampling_manifest(spec, sample, 4, 0)["policy"]["device"] == "cuda"


def test_a_device_only_for_local_backends_without_int8(cuda):
    with pytest.raises(ConfigError, match="local backends"):
        PolicySpec.from_options("openai", base_url="http://127.0.0.1:1/v1", device="cuda").check()
    with pytest.raises(ConfigError, match="int8"):
        PolicySpec.from_options("embedded", int8=True, device="cuda").check()
    with pytest.raises(ConfigError, match="got 'tpu'"):
        PolicySpec.from_options("embedded", device="tpu")


def test_the_encoder_on_cpu_keeps_its_cache_keys_and_cuda_is_refused_without_it(no_cuda):
    cpu = Encoder()
    assert cpu.device == "cpu" and cpu.dtype == "float32" and ":" not in cpu._cache_key("a subject line")
    with pytest.raises(ConfigError, match="no CUDA device"):
        Encoder(device="cuda")
    assert Encoder(device="auto").device == "cpu"


def test_the_encoder_on_cuda_runs_bf16_under_its_own_keys(cuda):
    enc = Encoder(device="cuda", layers=2)  # nothing loads until the first encode
    assert enc.dtype == "bfloat16" and enc._cache_key("x").startswith("cuda:bfloat16:L2:")
