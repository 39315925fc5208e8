"""``ttpkit serve``'s app on a real uvicorn server (127.0.0.1, a free port), checked with the official ``openai`` client."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import openai
import pytest
from fastapi import FastAPI

from ttpkit.policy import SamplingConfig
from ttpkit.policy.openai import OpenAIPolicy
from ttpkit.serve import (
    MAX_N,
    MAX_PROMPT_CHARS,
    MAX_PROMPTS,
    MAX_REQUEST_TOKENS,
    MAX_SAMPLES,
    MAX_TOKENS,
    create_app,
)

from conftest import FakeLM, live


class Fake:
    """Completions of three words ("<seed> <i> <tail of the prompt>"), fewer when max_new_tokens is smaller."""

    def __init__(self, delay: float = 0.0) -> None:
        self.config = SamplingConfig()
        self.delay, self.prompts, self.batches = delay, [], []

    def complete(self, prompt, n, seed):
        words = [f"{seed}", f"{{i}}", prompt.split()[-1] if prompt.split() else "-"]
        return [" ".join(words[: self.config.max_new_tokens]).replace("{i}", str(i)) for i in range(n)]

    def complete_many(self, prompts, n, seeds):
        time.sleep(self.delay)
        self.prompts += prompts
        self.batches.append(len(prompts))
        return [self.complete(p, n, s) for p, s in zip(prompts, seeds)]


class CharTokenizer:
    """A tokenizer with a chat template: one token per character, BOS on prompts."""

    bos_token = "^"
    chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"

    def __call__(self, text, add_special_tokens=True):
        return type("Enc", (), {"input_ids": [0] * (len(text) + bool(add_special_tokens))})()

    def apply_chat_template(self, turns, tokenize=False, add_generation_prompt=True):
        return "^" + "".join(f"<{t['role']}>{t['content']}" for t in turns) + "<assistant>"


def _client(root: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{root}/v1", api_key="unused", max_retries=0, timeout=20)


def test_openai_client_completions_usage_n_and_finish_reason():
    policy = Fake()
    with live(create_app(policy, model_name="fake")) as root:
        client = _client(root)
        assert [m.id for m in client.models.list()] == ["fake"]
        out = client.completions.create(model="fake", prompt="fix the parser", n=5, seed=3)
        assert len(out.choices) == 5 and [c.text for c in out.choices] == [f"3 {i} parser" for i in range(5)]
        assert {c.finish_reason for c in out.choices} == {"stop"}
        assert out.usage.prompt_tokens == 3  # once, not 5 times
        assert out.usage.completion_tokens == 15 and out.usage.total_tokens == 18
        two = client.completions.create(model="fake", prompt=["a b", "c d e f"], n=2, max_tokens=2, seed=0)
        assert [c.text for c in two.choices] == ["0 0", "0 1", "0 0", "0 1"]  # prompt-major
        assert {c.finish_reason for c in two.choices} == {"length"}  # cut at max_tokens
        assert two.usage.prompt_tokens == 2 + 4 and two.usage.completion_tokens == 8
        cut = client.completions.create(model="fake", prompt="x y", stop=[" 1"], n=2, seed=0)
        assert [c.text for c in cut.choices] == ["0 0 y", "0"] and [c.finish_reason for c in cut.choices] == ["stop"] * 2


def test_openai_client_chat_plain_and_templated():
    plain = Fake()
    with live(create_app(plain, model_name="m")) as root:
        chat = _client(root).chat.completions.create(
            model="m", n=3, seed=9, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
        assert plain.prompts == ["System: Be brief.\nUser: hi\nAssistant:"]
        assert len(chat.choices) == 3 and chat.choices[2].message.role == "assistant"
        assert chat.choices[2].message.content == "9 2 Assistant:"
        assert chat.usage.prompt_tokens == 6 and chat.usage.completion_tokens == 9
    templated = Fake()
    templated.tokenizer = CharTokenizer()
    with live(create_app(templated, model_name="m")) as root:
        chat = _client(root).chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert templated.prompts == ["<user>hi<assistant>"]  # the template, without a second BOS
        assert chat.usage.prompt_tokens == len("<user>hi<assistant>") + 1  # characters + BOS
        assert chat.usage.completion_tokens == len(chat.choices[0].message.content)


def test_unsupported_fields_and_limits_are_4xx_with_a_reason():
    with live(create_app(Fake(), model_name="m")) as root:
        client = _client(root)
        for extra in [{"echo": True}, {"best_of": 3}, {"suffix": "!"}, {"logprobs": 2}, {"presence_penalty": 1.0}]:
            with pytest.raises(openai.UnprocessableEntityError, match=f"{next(iter(extra))} is not supported"):
                client.completions.create(model="m", prompt="x", **extra)
        with pytest.raises(openai.UnprocessableEntityError, match="role"):
            client.chat.completions.create(model="m", messages=[{"role": "wizard", "content": "x"}])
        with pytest.raises(openai.UnprocessableEntityError, match=r"prompts x n = 3 x 200 = 600 is more than the 512"):
            client.completions.create(model="m", prompt=["a", "b", "c"], n=200)
        with pytest.raises(openai.APIStatusError, match="more than 32000") as e:
            client.completions.create(model="m", prompt="x" * (MAX_PROMPT_CHARS + 1))
        assert e.value.status_code == 413
        raw = httpx.post(f"{root}/v1/completions", json={"prompt": "x", "frobnicate": 1})
        assert raw.status_code == 422 and "frobnicate" in raw.text and "Extra inputs" in raw.text
        big = httpx.post(f"{root}/v1/completions", content=b"{" + b" " * (5 << 20) + b"}",
                         headers={"content-type": "application/json"})
        assert big.status_code == 413 and "limit" in big.json()["detail"]
        assert httpx.post(f"{root}/v1/completions", json={"prompt": "x", "n": 0}).status_code == 422
        for field, value in [("seed", 10**20), ("seed", -1), ("temperature", 1e-300)]:  # an overflow, not a 500
            raw = httpx.post(f"{root}/v1/completions", json={"prompt": "x", field: value})
            assert raw.status_code == 422 and field in raw.json()["error"]["message"], raw.text
        docs = httpx.get(f"{root}/docs")
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        paths = httpx.get(f"{root}/openapi.json").json()["paths"]
        assert {"/v1/completions", "/v1/chat/completions", "/v1/models", "/metrics", "/health"} <= set(paths)


WORDS = "fix the parser so that empty lines and trailing spaces no longer break the commit summary"


def test_an_unseeded_request_draws_a_fresh_seed_returns_it_and_the_seed_reproduces_the_text():
    with live(create_app(FakeLM(), model_name="fake")) as root:
        client = _client(root)
        one, two = (client.completions.create(model="fake", prompt=WORDS, n=3) for _ in range(2))
        assert one.seed != two.seed and [c.text for c in one.choices] != [c.text for c in two.choices]
        again = client.completions.create(model="fake", prompt=WORDS, n=3, seed=one.seed)
        assert again.seed == one.seed and [c.text for c in again.choices] == [c.text for c in one.choices]
        chat = [{"role": "user", "content": WORDS}]
        first, second = (client.chat.completions.create(model="fake", messages=chat) for _ in range(2))
        assert first.seed != second.seed and first.choices[0].message.content != second.choices[0].message.content
        replay = client.chat.completions.create(model="fake", messages=chat, seed=second.seed)
        assert replay.choices[0].message.content == second.choices[0].message.content
        seeded = [client.completions.create(model="fake", prompt=WORDS, seed=7) for _ in range(2)]
        assert {s.seed for s in seeded} == {7} and seeded[0].choices[0].text == seeded[1].choices[0].text


def test_only_the_served_model_name_is_served_and_others_are_a_404_model_not_found():
    with live(create_app(FakeLM(), model_name="fake")) as root:
        client = _client(root)
        served = client.models.list().data[0].id
        assert client.completions.create(model=served, prompt="a b", seed=1).model == "fake"
        assert client.completions.create(model="default", prompt="a b").model == "fake"  # the openai backend's name
        assert httpx.post(f"{root}/v1/completions", json={"prompt": "a b"}).status_code == 200  # omitted, as vLLM
        nulls = {k: None for k in ("model", "n", "seed", "temperature", "top_p", "max_tokens", "stop", "stream", "user")}
        assert len(httpx.post(f"{root}/v1/completions", json={"prompt": "a b", **nulls}).json()["choices"]) == 1
        for call in (lambda m: client.completions.create(model=m, prompt="a b"),
                     lambda m: client.chat.completions.create(model=m, messages=[{"role": "user", "content": "a"}])):
            with pytest.raises(openai.NotFoundError) as e:
                call("gpt-4o")
            assert e.value.status_code == 404 and e.value.code == "model_not_found" and e.value.param == "model"
            assert e.value.type == "invalid_request_error" and "'gpt-4o'" in e.value.message and "fake" in e.value.message
        raw = httpx.post(f"{root}/v1/chat/completions", json={"model": "x" * 10_000, "messages": [{"role": "user", "content": "a"}]})
        assert raw.status_code == 404 and len(raw.text) < 1000  # the name is quoted, cut short
        assert set(raw.json()["error"]) == {"message", "type", "param", "code"}


class Recorder(FakeLM):
    """FakeLM that records each decode's prompts and decoding settings."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = []

    def complete_many(self, prompts, n, seeds):
        self.seen.append((list(prompts), self.config))
        return super().complete_many(prompts, n, seeds)


def test_temperature_0_decodes_greedily_on_completions_and_chat():
    policy = Recorder()
    with live(create_app(policy, model_name="fake")) as root:
        client = _client(root)
        client.completions.create(model="fake", prompt="a b c", temperature=0)
        client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "a"}], temperature=0)
        client.completions.create(model="fake", prompt="a b c", temperature=0.5)
    assert [cfg.is_greedy for _, cfg in policy.seen] == [True, True, False]


def test_chat_takes_max_completion_tokens_text_parts_and_the_developer_role():
    policy = Recorder()
    with live(create_app(policy, model_name="fake")) as root:
        client = _client(root)
        parts = [{"type": "text", "text": "first part"}, {"type": "text", "text": "second part"}]
        client.chat.completions.create(model="fake", max_completion_tokens=2,
                                       messages=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": parts}])
        assert policy.seen[-1][0] == ["System: Be brief.\nUser: first part\nsecond part\nAssistant:"]
        assert policy.seen[-1][1].max_new_tokens == 2
        client.chat.completions.create(model="fake", max_tokens=3, max_completion_tokens=3,
                                       messages=[{"role": "user", "content": "x"}])
        assert policy.seen[-1][1].max_new_tokens == 3  # both, equal: fine
        refused = [({"max_tokens": 3, "max_completion_tokens": 4}, "max_tokens (3) and max_completion_tokens (4) differ"),
                   ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
                    "content[0] has type 'image_url'"),
                   ({"messages": [{"role": "user", "content": [{"type": "text", "text": "a", "extra": 1}]}]},
                    "content[0]: a text part is"),
                   ({"messages": [{"role": "tool", "content": "x"}]}, "role"),
                   ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
                   ({"logprobs": True}, "logprobs is not supported"),
                   ({"max_completion_tokens": MAX_TOKENS + 1}, f"max_tokens = {MAX_TOKENS + 1} is more than the {MAX_TOKENS}")]
        for extra, reason in refused:
            body = {"model": "fake", "messages": [{"role": "user", "content": "x"}], **extra}
            with pytest.raises(openai.UnprocessableEntityError) as e:
                client.chat.completions.create(**body)
            assert reason in e.value.message, e.value.message
    templated = Recorder()
    templated.tokenizer = CharTokenizer()
    with live(create_app(templated, model_name="fake")) as root:
        _client(root).chat.completions.create(model="fake", messages=[{"role": "developer", "content": "d"},
                                                                      {"role": "user", "content": parts}])
    assert templated.seen[0][0] == ["<system>d<user>first part\nsecond part<assistant>"]


def test_one_request_may_not_ask_for_more_than_the_stated_budget():
    policy = Recorder()
    per = policy.config.max_new_tokens  # max_tokens when a request gives none
    with live(create_app(policy, model_name="fake")) as root:
        client = _client(root)
        over = [({"prompt": ["a"] * (MAX_PROMPTS + 1)}, "prompt", f"prompts = {MAX_PROMPTS + 1} is more than the {MAX_PROMPTS}"),
                ({"prompt": "a", "n": MAX_N + 1}, "n", f"n = {MAX_N + 1} is more than the {MAX_N}"),
                ({"prompt": "a", "max_tokens": MAX_TOKENS + 1}, "max_tokens", f"max_tokens = {MAX_TOKENS + 1} is more"),
                ({"prompt": ["a"] * 3, "n": MAX_SAMPLES // 3 + 1, "max_tokens": 1}, "n",
                 f"prompts x n = 3 x {MAX_SAMPLES // 3 + 1} = {3 * (MAX_SAMPLES // 3 + 1)} is more than the {MAX_SAMPLES}"),
                ({"prompt": "a", "n": MAX_REQUEST_TOKENS // MAX_TOKENS + 1, "max_tokens": MAX_TOKENS}, "max_tokens",
                 f"prompts x n x max_tokens = 1 x {MAX_REQUEST_TOKENS // MAX_TOKENS + 1} x {MAX_TOKENS} = ")]
        for body, param, reason in over:
            with pytest.raises(openai.UnprocessableEntityError) as e:
                client.completions.create(model="fake", **body)
            assert reason in e.value.message and e.value.param == param, e.value.message
        assert policy.seen == []  # nothing was decoded
        k = MAX_REQUEST_TOKENS // (per * 2)
        at = client.completions.create(model="fake", prompt=["a b", "c d"], n=k)  # at the budget exactly: answered
        assert len(at.choices) == 2 * k and 2 * k * per <= MAX_REQUEST_TOKENS
        with pytest.raises(openai.UnprocessableEntityError, match="prompts x n x max_tokens"):
            client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "x"}], n=MAX_N,
                                           max_completion_tokens=MAX_TOKENS)


def _metric(text: str, name: str, **labels: str) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for fam in text_string_to_metric_families(text) for s in fam.samples
               if s.name == name and labels.items() <= s.labels.items())


def test_metrics_count_what_was_sent():
    policy = Fake(delay=0.05)
    app = create_app(policy, model_name="m", batch_window_ms=30)
    other = create_app(Fake())  # a second app in the process: its own registry
    with live(app) as root:
        client = _client(root)
        for n in (1, 2, 3):
            client.completions.create(model="m", prompt="a", n=n)
        client.chat.completions.create(model="m", n=4, messages=[{"role": "user", "content": "x"}])
        threads = [threading.Thread(target=client.completions.create, kwargs={"model": "m", "prompt": "b", "n": 2})
                   for _ in range(4)]
        [t.start() for t in threads]
        [t.join(20) for t in threads]
        with pytest.raises(openai.UnprocessableEntityError):
            client.completions.create(model="m", prompt="a", echo=True)
        assert httpx.get(f"{root}/nowhere").status_code == 404
        text = httpx.get(f"{root}/metrics").text
    assert _metric(text, "ttpkit_requests_total", route="/v1/completions", method="POST", status="200") == 7
    assert _metric(text, "ttpkit_requests_total", route="/v1/completions", method="POST", status="422") == 1
    assert _metric(text, "ttpkit_requests_total", route="/v1/chat/completions", method="POST", status="200") == 1
    assert _metric(text, "ttpkit_requests_total", route="unmatched", method="GET", status="404") == 1
    assert _metric(text, "ttpkit_request_seconds_count", route="/v1/completions") == 8
    assert _metric(text, "ttpkit_samples_total") == 1 + 2 + 3 + 4 + 4 * 2
    assert _metric(text, "ttpkit_batch_prompts_sum") == 8 == sum(policy.batches)
    assert _metric(text, "ttpkit_batch_requests_count") == len(policy.batches) < 8  # the 4 concurrent ones shared
    assert "ttpkit_requests_total{" not in other.state.metrics.render()[0].decode()


def test_a_disconnecting_client_does_not_stall_others_and_the_loop_stays_free():
    policy = Fake(delay=0.4)
    with live(create_app(policy, batch_window_ms=50)) as root:
        def gone():
            with pytest.raises(httpx.TimeoutException):
                httpx.post(f"{root}/v1/completions", json={"prompt": "gone", "n": 2}, timeout=0.1)

        quitter = threading.Thread(target=gone)
        quitter.start()
        time.sleep(0.02)
        start = time.monotonic()
        kept = httpx.post(f"{root}/v1/completions", json={"prompt": "kept", "n": 2, "seed": 0}, timeout=10)
        assert kept.status_code == 200 and [c["text"] for c in kept.json()["choices"]] == ["0 0 kept", "0 1 kept"]
        assert time.monotonic() - start < 3
        quitter.join(5)
        policy.delay = 1.5
        slow = threading.Thread(target=httpx.post, args=(f"{root}/v1/completions",), kwargs={"json": {"prompt": "z"}})
        slow.start()
        time.sleep(0.1)  # its batch is decoding in the model thread
        start = time.monotonic()
        assert httpx.get(f"{root}/health").status_code == 200
        assert time.monotonic() - start < 0.75  # the event loop is not blocked by the model (1.5 s per batch)
        slow.join(10)
        assert httpx.post(f"{root}/v1/completions", json={"prompt": "after"}, timeout=10).status_code == 200


def _ignores_n() -> tuple[FastAPI, list[dict]]:
    """A completions server that answers one choice whatever n is (as llama-cpp-python does)."""
    app, seen = FastAPI(), []

    @app.post("/v1/completions")
    def completions(body: dict) -> dict:
        seen.append(body)
        return {"choices": [{"index": 0, "text": f"fix {body['seed']} in {body['prompt'][-6:]}", "finish_reason": "stop"}]}

    return app, seen


def test_openai_backend_falls_back_to_one_request_per_seed_and_says_so_once(sample, caplog):
    app, seen = _ignores_n()
    with live(app) as root, caplog.at_level(logging.WARNING, logger="ttpkit.policy.openai"):
        pol = OpenAIPolicy(f"{root}/v1", "m", sample.task, SamplingConfig(seed=5))
        assert pol.n_path is None
        first = pol.sample(sample.queries[:2], 4)
        assert pol.n_path == "per-seed"
        assert len(seen) == 1 + 3 + 4  # the probe with n=4, then one request per remaining sample
        warnings = [r for r in caplog.records if "ignores n" in r.message]
        assert len(warnings) == 1
        for cands in first:
            seeds = [int(c.text.split()[1]) for c in cands]
            assert seeds == [seeds[0] + i for i in range(4)] and [c.idx for c in cands] == [0, 1, 2, 3]
        assert pol.sample(sample.queries[:2], 4) == first  # the same samples on the fallback path
    with live(create_app(Fake(), model_name="m")) as root:
        honest = OpenAIPolicy(f"{root}/v1", "m", sample.task)
        (cands,) = honest.sample(sample.queries[:1], 3)
        assert honest.n_path == "n" and len(cands) == 3


def test_sample_records_n_path_in_the_pool_manifest_and_resumes_across_it(tmp_path):
    from typer.testing import CliRunner

    from ttpkit.cli import app as cli
    from ttpkit.data import bundled_sample_dir
    from ttpkit.pool import pool_manifest, read_pool
    from ttpkit.serve import create_service

    from conftest import FakeLM

    def sample(root: str, out, limit: int):
        args = ["sample", "--data", str(bundled_sample_dir()), "--split", "dev", "--m", "3", "--limit", str(limit),
                "--backend", "openai", "--base-url", f"{root}/v1", "--no-greedy", "--out", str(out)]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, res.output
        pool = read_pool(out)
        assert len(pool) == 3 * limit
        return pool_manifest(pool)["n_path"], res.output

    file, parts = tmp_path / "pool.parquet", tmp_path / "pool-dir"
    honours = [False]  # the server's behaviour, switched below (the base URL, part of the manifest, stays)
    fake = FastAPI()

    @fake.post("/v1/completions")
    def completions(body: dict) -> dict:
        n = body["n"] if honours[0] else 1
        return {"choices": [{"index": i, "text": f"fix {body['seed']}.{i}", "finish_reason": "stop"} for i in range(n)]}

    with live(fake) as root:
        path, said = sample(root, file, 2)
        assert path == "per-seed" and "(n_path per-seed)" in said
        assert sample(root, file, 2)[0] == "per-seed"  # nothing left to sample: kept
        assert sample(root, file, 3)[0] == "per-seed"  # resumed on the same path
        assert sample(root, parts, 2)[0] == "per-seed"
        honours[0] = True
        assert sample(root, file, 4)[0] == "mixed"  # resumed on the other path: not refused, recorded
        assert sample(root, parts, 3)[0] == "mixed"
    service = create_service(FakeLM(), f"sqlite:///{tmp_path / 'p.db'}", admin_key="")
    with live(service) as root:  # a running ttpkit server honours n
        assert sample(root, tmp_path / "served.parquet", 2)[0] == "n"
        assert sample(root, tmp_path / "served-dir", 2)[0] == "n"


def test_a_response_with_an_undefined_number_is_json_with_null_not_a_500():
    app = create_app(Fake())

    @app.get("/nan")
    def nan() -> dict:
        return {"r2": float("nan"), "gain": float("inf"), "n": 3}

    with live(app) as root:
        raw = httpx.get(f"{root}/nan")
    assert raw.status_code == 200 and raw.text == '{"r2":null,"gain":null,"n":3}'
