"""``stream: true`` on the OpenAI routes: server-sent events read by the official ``openai`` client, on real uvicorn."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from ttpkit.serve import create_app

from conftest import FakeLM, live

CHAT = [{"role": "system", "content": "Answer in four words."}, {"role": "user", "content": "name four colours please"}]


def _client(root: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{root}/v1", api_key="unused", max_retries=0, timeout=20)


def _events(raw: httpx.Response) -> list[str]:
    """The ``data:`` payloads of an event stream, checking the framing (every event ``data: ...`` then a blank line)."""
    assert raw.text.endswith("\n\n")
    events = raw.text[:-2].split("\n\n")
    assert all(e.startswith("data: ") and "\n" not in e for e in events), raw.text
    return [e[len("data: "):] for e in events]


def test_streamed_completions_are_the_unstreamed_answer_in_text_completion_chunks():
    with live(create_app(FakeLM(), model_name="fake")) as root:
        client = _client(root)
        args = {"model": "fake", "prompt": ["fix the parser for empty lines", "add a flag to skip tests"], "n": 3,
                "seed": 5, "max_tokens": 4}
        whole = client.completions.create(**args)
        chunks = list(client.completions.create(**args, stream=True, stream_options={"include_usage": True}))
        plain = list(client.completions.create(**args, stream=True))
        raw = httpx.post(f"{root}/v1/completions", json={**args, "stream": True})
    *texts, last = chunks
    assert len({c.id for c in chunks}) == 1 and {c.object for c in chunks} == {"text_completion"}
    assert {c.model for c in chunks} == {"fake"} and {c.seed for c in chunks} == {5}
    assert [len(c.choices) for c in texts] == [1] * 6 and last.choices == []
    got = {c.choices[0].index: (c.choices[0].text, c.choices[0].finish_reason) for c in texts}
    assert got == {c.index: (c.text, c.finish_reason) for c in whole.choices}  # each choice's text and finish_reason
    assert all(c.usage is None for c in texts) and last.usage == whole.usage  # the usage chunk comes last
    assert [(c.choices[0].index, c.choices[0].text) for c in plain] == [(c.index, c.text) for c in whole.choices]
    assert all(c.usage is None for c in plain)  # no usage chunk unless asked for
    assert raw.status_code == 200 and raw.headers["content-type"].startswith("text/event-stream")
    data = _events(raw)
    assert data[-1] == "[DONE]" and [json.loads(d)["choices"][0]["text"] for d in data[:-1]] == [
        c.text for c in whole.choices]


def test_streamed_chat_sends_role_content_and_finish_reason_as_deltas():
    with live(create_app(FakeLM(), model_name="fake")) as root:
        client = _client(root)
        whole = client.chat.completions.create(model="fake", messages=CHAT, n=2, seed=8, max_tokens=3)
        stream = client.chat.completions.create(model="fake", messages=CHAT, n=2, seed=8, max_tokens=3, stream=True,
                                                stream_options={"include_usage": True})
        chunks = list(stream)
        raw = httpx.post(f"{root}/v1/chat/completions", json={"messages": CHAT, "stream": True, "seed": 8})
    *deltas, last = chunks
    assert {c.object for c in chunks} == {"chat.completion.chunk"} and len({c.id for c in chunks}) == 1
    assert last.choices == [] and last.usage == whole.usage
    for want in whole.choices:
        mine = [c.choices[0] for c in deltas if c.choices[0].index == want.index]
        assert mine[0].delta.role == "assistant" and all(d.delta.role is None for d in mine[1:])
        assert "".join(d.delta.content or "" for d in mine) == want.message.content
        assert [d.finish_reason for d in mine] == [None] * (len(mine) - 1) + [want.finish_reason]
    data = _events(raw)
    assert data[-1] == "[DONE]" and json.loads(data[-2])["choices"][0]["finish_reason"] in ("stop", "length")


def test_a_refused_stream_is_an_error_response_not_an_event_stream():
    with live(create_app(FakeLM(), model_name="fake")) as root:
        client = _client(root)
        with pytest.raises(openai.NotFoundError) as e:
            client.chat.completions.create(model="gpt-4o", messages=CHAT, stream=True)
        assert e.value.code == "model_not_found"
        with pytest.raises(openai.UnprocessableEntityError, match="stream_options: only allowed with stream: true"):
            client.completions.create(model="fake", prompt="x", stream_options={"include_usage": True})
        with pytest.raises(openai.UnprocessableEntityError, match="include_obfuscation"):  # a field it cannot honour
            client.completions.create(model="fake", prompt="x", stream=True,
                                      stream_options={"include_usage": True, "include_obfuscation": True})
        with pytest.raises(openai.UnprocessableEntityError, match="logprobs is not supported"):
            client.completions.create(model="fake", prompt="x", stream=True, logprobs=1)
