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
    client = TestClient(create_app(FakeLocal(), model_name="fake"))
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
    pol = OpenAIPolicy("http://testserver/v1", "m", sample.task, client=client)
    pol.config = SamplingConfig(temperature=1.0)
    bad = OpenAIPolicy("http://testserver/nope", "m", sample.task, client=client)
    with pytest.raises(TtpkitError, match="answered 404"):
        bad.sample([sample.queries[0]], 2)
