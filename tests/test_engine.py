"""The engine face without Ray: flags checked before any model loads, the Ray hint, no ray import, picklable policies.

The Ray engine itself runs in ``tests/test_engine_ray.py``.
"""

from __future__ import annotations

import copy as copy_module
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from ttpkit.cli import app
from ttpkit.data import TASKS
from ttpkit.engine import ENGINES, LOCAL, Engine, batches
from ttpkit.errors import ConfigError
from ttpkit.policy import LazyPolicy, PolicySpec, lazy_policy

runner = CliRunner()


@pytest.mark.parametrize("command", [["sample", "--data", "nowhere", "--out", "p"],
                                     ["score", "--rm", "default", "--pool", "nowhere.parquet", "--data", "nowhere"],
                                     ["bench", "--quick"]])
def test_the_cli_rejects_an_unknown_engine_with_the_known_ones_before_reading_anything(command):
    res = runner.invoke(app, [*command, "--engine", "spark"])
    assert res.exit_code == 2
    assert "unknown engine 'spark'; known engines: local, ray" in res.output


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": "spark"}, "known engines: local, ray"),
    ({"kind": "ray", "address": "headnode"}, "auto, host:port or ray://host:port"),
    ({"kind": "ray", "num_actors": 0}, "actors must be a whole number >= 1, got 0"),
    ({"kind": "ray", "num_cpus": 0}, "CPUs per actor must be > 0, got 0"),
    ({"kind": "ray", "num_gpus": -1}, "GPUs per actor must be >= 0, got -1"),
])
def test_engine_settings_name_the_bad_value(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Engine(**kwargs)


def test_a_missing_ray_says_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    with pytest.raises(ConfigError, match=r"pip install 'ttpkit\[ray\]'"):
        Engine("ray").check()
    assert LOCAL.check() is LOCAL  # the local engine needs nothing


def test_actors_ask_for_a_gpu_only_for_cuda_unless_told():
    assert Engine("ray").gpus("cuda") == 1.0 and Engine("ray").gpus("cpu") == 0.0
    assert Engine("ray", num_gpus=0.5).gpus("cuda") == 0.5 and Engine("ray", num_gpus=0).gpus("cuda") == 0.0
    assert ENGINES == ("local", "ray")


def test_batches_cut_in_order_and_cover_every_item():
    assert batches(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batches(list(range(2)), 0) == [[0], [1]]  # a policy reporting 0 still gets batches of one


def test_importing_ttpkit_and_its_stages_never_imports_ray():
    code = "import sys, ttpkit, ttpkit.stages, ttpkit.engine, ttpkit.cli; print('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def test_a_lazy_policy_pickles_without_its_hook_or_model():
    task = TASKS["git-commits"]
    notes: list[str] = []
    lazy = lazy_policy(PolicySpec(name="p", backend="openai", base_url="http://127.0.0.1:9/v1"), task, 5, on_load=notes.append)
    lazy._built = object()  # as if the model had loaded in this process
    copy = copy_module.copy(lazy)  # through __getstate__, the state that pickling (cloudpickle, for Ray actors) sends
    assert isinstance(copy, LazyPolicy) and copy.on_load is None and copy._built is None
    assert (copy.spec, copy.task, copy.seed) == (lazy.spec, lazy.task, 5)


def test_cuda_for_ray_actors_is_checked_where_the_model_loads(monkeypatch):
    import ttpkit.device

    monkeypatch.setattr(ttpkit.device, "_cuda_available", lambda: False)  # a driver without a GPU
    spec = PolicySpec(device="cuda")
    with pytest.raises(ConfigError, match="torch sees no CUDA device"):
        spec.check()
    spec.check(device_here=False)  # GPU workers: the actor's build checks it
