from __future__ import annotations

import json

import numpy as np
import pandas as pd
from conftest import write_split
from typer.testing import CliRunner

from ttpkit.cli import app
from ttpkit.pool import write_pool

runner = CliRunner()


def _pool(tmp_path):
    rng = np.random.default_rng(0)
    rows = [
        {"query_id": f"q{q}", "user_id": "u", "idx": i, "text": "t", "policy": "p", "seed": 0,
         "rougeL": float(u), "rouge1": float(u), "score_style": 0.0}
        for q in range(10) for i, u in enumerate(rng.random(4))
    ]
    path = tmp_path / "pool.parquet"
    write_pool(pd.DataFrame(rows), path)
    return path


def test_curves_json(tmp_path):
    path = _pool(tmp_path)
    res = runner.invoke(app, ["curves", "--pool", str(path), "--scorers", "oracle,random,style", "--n", "1,2,4", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert set(data) == {"oracle", "random", "style"} and set(data["oracle"]) == {"1", "2", "4"}
    assert data["style"]["4"] == data["style"]["1"]  # a constant scorer stays at the pool mean
    assert data["oracle"]["4"] > data["oracle"]["1"]


def test_curves_table_writes_plot(tmp_path):
    path = _pool(tmp_path)
    res = runner.invoke(app, ["curves", "--pool", str(path), "--n", "1,2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "pool.curves.png").stat().st_size > 1000


def test_errors_exit_2_without_traceback(tmp_path):
    path = _pool(tmp_path)
    res = runner.invoke(app, ["curves", "--pool", str(path), "--scorers", "user-prob"])
    assert res.exit_code == 2 and "scorers available" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["curves", "--pool", str(path), "--n", "1,9"])
    assert res.exit_code == 2 and "larger than the pools" in res.output
    write_split(tmp_path / "bad", [{"id": "a", "profile": []}], {"task": "LaMP-4", "golds": []})
    res = runner.invoke(app, ["sample", "--data", str(tmp_path / "bad"), "--out", str(tmp_path / "x.parquet")])
    assert res.exit_code == 2 and "has no field 'input'" in res.output
    res = runner.invoke(app, ["train-rm", "--pool", str(path), "--data", str(tmp_path), "--out", str(tmp_path / "rm"), "--encoder-layers", "7"])
    assert res.exit_code == 2 and "encoder layers must be an integer in 1..6" in res.output and "Traceback" not in res.output


def test_help_is_fast_and_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("sample", "label", "curves", "demo"):
        assert cmd in res.output
