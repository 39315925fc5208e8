"""Issue 31: what needs no model is checked before it loads and before any progress is drawn.

``sample`` against an OpenAI-compatible server sends one probe request (the run's ``max_tokens``) after the
pool's manifest is checked: HTML, ``choices`` that is no list and a refused ``max_tokens`` are one ``error:``
line, the only line printed. A Hugging Face directory whose config or tokenizer files are garbage is one line
naming the file, before transformers loads a weight.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import live
from fastapi import FastAPI, Request  # at module level: the route's annotation is resolved from here
from typer.testing import CliRunner

from ttpkit.cli import app as cli
from ttpkit.data import bundled_sample_dir
from ttpkit.errors import ConfigError
from ttpkit.policy._checks import check_hf_dir

MAX_TOKENS = 64  # the fake server's context: a request for more is refused with a 400, as vLLM does


def _server(answer):
    """A completions server: ``answer(body)`` is the response to each request."""
    web = FastAPI()

    @web.post("/v1/completions")
    async def completions(request: Request):
        return answer(await request.json())

    return web


def _html(body):
    from fastapi.responses import HTMLResponse

    return HTMLResponse("<html><body>Please sign in</body></html>")


def _choices_a_dict(body):
    return {"choices": {"text": "hello"}}


def _short_context(body):
    from fastapi.responses import JSONResponse

    if body["max_tokens"] > MAX_TOKENS:
        return JSONResponse({"error": {"message": f"max_tokens {body['max_tokens']} exceeds the context",
                                       "code": 400}}, status_code=400)
    return {"choices": [{"index": 0, "text": "hello"}]}


def _sample(root: str, out: Path, *extra: str):
    return CliRunner().invoke(cli, ["sample", "--data", str(bundled_sample_dir()), "--split", "dev", "--m", "2", "--limit", "1",
                                    "--backend", "openai", "--base-url", f"{root}/v1", "--out", str(out), *extra])


@pytest.mark.parametrize(("answer", "extra", "expect"), [
    (_html, (), "answered 200 with a body that is not JSON"),
    (_choices_a_dict, (), "'choices' must be a list"),
    (_short_context, ("--max-new-tokens", "100"), "answered 400"),
], ids=["html", "choices-a-dict", "max-tokens-refused"])
def test_a_server_is_probed_before_any_progress_is_drawn(tmp_path, answer, extra, expect):
    with live(_server(answer)) as root:
        res = _sample(root, tmp_path / "p.parquet", *extra)
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output  # no progress, no "loading policy" before it
    assert expect in lines[0] and f"{root}/v1/completions" in lines[0]
    assert "max_tokens=" in lines[0]
    assert not (tmp_path / "p.parquet").exists()  # refused before the pool's manifest is written


def test_a_task_files_token_limit_is_probed_too(tmp_path):
    task = tmp_path / "task.yaml"
    task.write_text("name: git-commits\nsource_field: text\ntarget_field: title\nsource_label: Change\n"
                    "target_label: Commit message\nmax_new_tokens: 100\n")
    with live(_server(_short_context)) as root:
        res = _sample(root, tmp_path / "p.parquet", "--task-file", str(task))
        ok = _sample(root, tmp_path / "q.parquet", "--max-new-tokens", str(MAX_TOKENS))
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and "max_tokens=100" in lines[0], res.output
    assert ok.exit_code == 0, ok.output  # a limit the server takes: the probe passes and sampling runs


def test_a_finished_pool_asks_nothing_of_its_server(tmp_path):
    with live(_server(_short_context)) as root:
        first = _sample(root, tmp_path / "p.parquet")
    assert first.exit_code == 0, first.output
    again = _sample(root, tmp_path / "p.parquet")  # the server is gone, and nothing is left to ask it
    assert again.exit_code == 0 and "error" not in again.output, again.output
    other = _sample("http://127.0.0.1:9", tmp_path / "p.parquet")
    assert other.exit_code == 2 and "base_url" in other.output  # the manifest names the other URL, before any probe


def _hf_dir(root: Path, name: str, files: dict[str, str]) -> Path:
    d = root / name
    d.mkdir()
    for fname, text in {"config.json": '{"model_type": "gpt2"}', **files}.items():
        (d / fname).write_text(text)
    return d


@pytest.mark.parametrize(("files", "names"), [
    ({"tokenizer.json": "garbage{"}, "tokenizer.json: not valid JSON"),
    ({"tokenizer_config.json": "[1, 2]"}, "tokenizer_config.json: not a JSON object, got a list"),
    ({"special_tokens_map.json": "\x00\x01"}, "special_tokens_map.json: not valid JSON"),
    ({"config.json": '{"model_type": "no-such-model"}'}, "config.json: transformers cannot read it"),
], ids=["tokenizer-garbage", "tokenizer-config-list", "special-tokens-binary", "unknown-model-type"])
def test_a_broken_hf_directory_is_one_line_naming_the_file(tmp_path, files, names):
    d = _hf_dir(tmp_path, "m", files)
    with pytest.raises(ConfigError) as e:
        check_hf_dir(d)
    assert names in str(e.value) and len(str(e.value).splitlines()) == 1


def test_a_tokenizer_that_parses_but_builds_nothing_is_one_line_at_load(tmp_path):
    from ttpkit.policy._load import load_hf_model

    d = _hf_dir(tmp_path, "m", {"tokenizer.json": json.dumps({"model": {"type": "NoSuchModel"}}),
                                "tokenizer_config.json": '{"tokenizer_class": "PreTrainedTokenizerFast"}'})
    check_hf_dir(d)  # every file is a JSON object: what is left only transformers can tell, at load
    with pytest.raises(ConfigError, match="cannot build its tokenizer") as e:
        load_hf_model(d)
    assert len(str(e.value).splitlines()) == 1 and "tokenizer.json" in str(e.value)


def test_weights_transformers_cannot_load_are_one_line_naming_them(tmp_path):
    from tokenizers import Tokenizer, models

    from ttpkit.policy._load import load_hf_model

    d = _hf_dir(tmp_path, "m", {"config.json": json.dumps({"model_type": "gpt2", "n_layer": 1, "n_embd": 8, "n_head": 2,
                                                           "vocab_size": 4, "n_positions": 16}),
                                "tokenizer_config.json": '{"tokenizer_class": "PreTrainedTokenizerFast"}'})
    Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]")).save(str(d / "tokenizer.json"))
    (d / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header}")
    check_hf_dir(d)
    with pytest.raises(ConfigError, match=r"cannot load its weights \(model.safetensors\)") as e:
        load_hf_model(d)
    assert len(str(e.value).splitlines()) == 1
