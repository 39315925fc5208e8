from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from ttpkit.errors import TtpkitError
from ttpkit.policy import SamplingConfig
from ttpkit.policy.openai import OpenAIPolicy
from ttpkit.serve import create_app


class FakeLocal:
    """Stands in for LocalPolicy: completions are a function of prompt, seed and config."""

    def __init__(self) -> None:
        self.config = SamplingConfig()

    def complete(self, prompt, n, seed):
        return [f"{prompt[-5:]}|{seed}|{i}|{self.config.temperature}\nsecond line" for i in range(n)]


def test_openai_backend_against_ttpkit_server(sample):
    from ttpkit import __version__

    client = TestClient(create_app(FakeLocal(), model_name="fake"))
    assert client.get("/openapi.json").json()["info"]["version"] == __version__
    assert client.get("/health").json() == {"status": "ok"}
    pol = OpenAIPolicy("http://testserver/v1", "fake", sample.task, SamplingConfig(temperature=0.5, seed=3), client=client)
    (cands,) = pol.sample([sample.queries[0]], 4)
    assert [c.idx for c in cands] == [0, 1, 2, 3]
    assert all("second" not in c.text and c.text.endswith("|0.5") for c in cands)  # first line; temperature forwarded
    assert pol.sample([sample.queries[0]], 4)[0] == cands  # seeded per query
    assert cands[0].policy == "openai:fake"


def test_server_validates_and_client_reports_errors(sample):
    client = TestClient(create_app(FakeLocal()))
    assert client.post("/v1/completions", json={"prompt": "x", "n": 0}).status_code == 422
    too_long = OpenAIPolicy("http://testserver/v1", "m", sample.task, SamplingConfig(max_new_tokens=5000), client=client)
    with pytest.raises(TtpkitError, match="answered 422.*max_tokens"):  # the server's reason reaches the user
        too_long.sample([sample.queries[0]], 2)
    bad = OpenAIPolicy("http://testserver/nope", "m", sample.task, client=client)
    with pytest.raises(TtpkitError, match="answered 404"):
        bad.sample([sample.queries[0]], 2)


class FakeBatched(FakeLocal):
    def __init__(self) -> None:
        super().__init__()
        self.batches = []

    def complete_many(self, prompts, n, seeds):
        self.batches.append(len(prompts))
        return [self.complete(p, n, s) for p, s in zip(prompts, seeds)]


@pytest.mark.parametrize("fake", [FakeLocal, FakeBatched])
def test_a_list_of_prompts_answers_prompt_major_as_openai_does(fake):
    policy = fake()
    client = TestClient(create_app(policy))
    body = client.post("/v1/completions", json={"prompt": ["aaaaa", "bbbbb"], "n": 3, "seed": 7}).json()
    texts = [c["text"] for c in sorted(body["choices"], key=lambda c: c["index"])]
    assert [t.split("|")[0] for t in texts] == ["aaaaa"] * 3 + ["bbbbb"] * 3
    assert [t.split("|")[2] for t in texts] == ["0", "1", "2"] * 2
    if fake is FakeBatched:
        assert policy.batches == [2]  # one decode batch
    assert client.post("/v1/completions", json={"prompt": [], "n": 1}).status_code == 422
    assert client.post("/v1/completions", json={"prompt": ["x"] * 65, "n": 1}).status_code == 422
