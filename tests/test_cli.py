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
    res = runner.invoke(app, ["curves", "--pool", str(path), "--scorers", "oracle,random,style", "--ns", "1,2,4", "--format", "json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert set(data) == {"oracle", "random", "style"} and set(data["oracle"]) == {"1", "2", "4"}
    assert data["style"]["4"] == data["style"]["1"]  # a constant scorer stays at the pool mean
    assert data["oracle"]["4"] > data["oracle"]["1"]


def test_curves_table_writes_plot(tmp_path):
    path = _pool(tmp_path)
    res = runner.invoke(app, ["curves", "--pool", str(path), "--ns", "1,2"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "pool.curves.png").stat().st_size > 1000


def test_errors_exit_2_without_traceback(tmp_path):
    path = _pool(tmp_path)
    res = runner.invoke(app, ["curves", "--pool", str(path), "--scorers", "user-prob"])
    assert res.exit_code == 2 and "scorers available" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["curves", "--pool", str(path), "--ns", "1,9"])
    assert res.exit_code == 2 and "larger than the pools" in res.output
    write_split(tmp_path / "bad", [{"id": "a", "profile": []}], {"task": "LaMP-4", "golds": []})
    res = runner.invoke(app, ["sample", "--data", str(tmp_path / "bad"), "--out", str(tmp_path / "x.parquet")])
    assert res.exit_code == 2 and "has no field 'input'" in res.output
    res = runner.invoke(app, ["train-rm", "--pool", str(path), "--data", str(tmp_path), "--out", str(tmp_path / "rm"), "--encoder-layers", "7"])
    assert res.exit_code == 2 and "encoder layers must be an integer in 1..6" in res.output and "Traceback" not in res.output


def test_help_lists_commands_without_importing_heavy_libraries():
    """`--help` is instant because torch, transformers, pandas and matplotlib load inside commands only."""
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from ttpkit.cli import app; "
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0, r.output; print(r.output); "
            "print('HEAVY', sorted(m for m in ('torch', 'transformers', 'pandas', 'matplotlib', 'sentence_transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out
    for cmd in ("sample", "label", "curves", "train-rm", "score", "diagnose", "bench", "demo", "serve"):
        assert cmd in out


def test_deprecated_n_of_curves_still_works_with_a_warning(tmp_path):
    path = _pool(tmp_path)
    new = runner.invoke(app, ["curves", "--pool", str(path), "--ns", "1,2", "--format", "json"])
    old = runner.invoke(app, ["curves", "--pool", str(path), "--n", "1,2", "--format", "json"])
    assert old.exit_code == 0 and "--n is deprecated" in old.stderr and "use --ns" in old.stderr
    assert json.loads(old.stdout) == json.loads(new.stdout) and "deprecated" not in new.stderr


def test_an_error_is_one_line_at_any_width(tmp_path):
    path = _pool(tmp_path)
    for width in ("40", "200"):
        res = runner.invoke(app, ["curves", "--pool", str(path), "--scorers", "oracle,no-such-rm@lcb:1", "--ns", "1,2"], env={"COLUMNS": width})
        assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        assert "score_no-such-rm" in res.stderr and "scorers available" in res.stderr
    res = runner.invoke(app, ["curves", "--pool", str(path), "--scorers", "oracle@lcb:1"])
    assert res.exit_code == 2 and "applies to a reward model's scores" in res.stderr


def test_an_error_message_is_printed_as_text_not_markup(tmp_path):
    """`reg:x:` would be rich's :x: emoji and `[bold]` a style tag: an error line shows the message as it is."""
    path = _pool(tmp_path)
    res = runner.invoke(app, ["curves", "--pool", str(path), "--scorers", "style@lcb:x:"])
    assert res.exit_code == 2 and "'lcb:x:': kappa must be a number" in res.output
    res = runner.invoke(app, ["curves", "--pool", str(path), "--scorers", "[bold]x"])
    assert res.exit_code == 2 and "[bold]x" in res.output


def test_every_integer_option_states_an_upper_bound():
    """Issue 31: an integer option without a bound let ``diagnose --max-n 10**30`` reach numpy as an object int."""
    import typing

    import typer.main

    from ttpkit.cli._common import MAX_PERSONALIZE_N
    from ttpkit.online import MAX_N

    assert MAX_PERSONALIZE_N == MAX_N  # the CLI's copy (its module stays light) of personalize's limit
    unbounded, seen = [], 0
    for name, command in typer.main.get_command(app).commands.items():
        for param in command.params:
            annotation = param.type_descriptor.annotation
            if annotation is int or int in typing.get_args(annotation):
                seen += 1
                if getattr(param, "max", None) is None:
                    unbounded.append(f"{name} {param.opts[0]}")
    assert seen >= 20  # the walk sees the integer options (sample's --m, diagnose's --max-n, serve's --port, …)
    assert not unbounded, unbounded
