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
    client = TestClient(create_app(FakeLocal(), model_name="m"))
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


# -- cross-request batching ------------------------------------------------------------------------
import asyncio  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

from ttpkit.serve import Batcher  # noqa: E402


class SlowBatched(FakeBatched):
    """Records each decode batch's prompts and thread; each batch takes ``delay`` seconds."""

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__()
        self.delay, self.calls, self.threads = delay, [], []

    def complete_many(self, prompts, n, seeds):
        self.calls.append((list(prompts), n, self.config.max_new_tokens))
        self.threads.append(threading.current_thread().name)
        time.sleep(self.delay)
        return super().complete_many(prompts, n, seeds)


def _gather(batcher, jobs):
    async def main():
        return await asyncio.gather(*(batcher.complete(*job) for job in jobs))

    return asyncio.run(main())


def test_concurrent_requests_share_one_decode_batch_and_keep_their_own_seeds():
    policy = SlowBatched()
    cfg = policy.config
    batcher = Batcher(policy, window_ms=50, max_batch=16)
    jobs = [([f"p{i}aaaa"], 2, [i], cfg) for i in range(4)] + [(["q1aaaa", "q2aaaa"], 2, [7, 8], cfg)]
    out = _gather(batcher, jobs)
    assert len(policy.calls) == 1 and len(policy.calls[0][0]) == 6  # five requests, six prompts, one batch
    assert all(name.startswith("ttpkit-model") for name in policy.threads)  # never on the event loop's thread
    for (prompts, n, seeds, _), texts in zip(jobs, out):  # each request gets its own prompts' texts
        assert texts == [policy.complete(p, n, s) for p, s in zip(prompts, seeds)]


def test_batches_split_by_n_and_settings_and_respect_the_cap():
    import dataclasses

    policy = SlowBatched()
    cool = dataclasses.replace(policy.config, temperature=0.5)
    batcher = Batcher(policy, window_ms=50, max_batch=3)
    jobs = [(["aaaaa"], 2, [0], policy.config), (["bbbbb"], 3, [0], policy.config), (["ccccc"], 2, [0], cool),
            (["ddddd"], 2, [1], policy.config), (["eeeee"], 2, [2], policy.config), (["fffff"], 2, [3], policy.config)]
    out = _gather(batcher, jobs)
    sizes = sorted((n, len(prompts)) for prompts, n, _ in policy.calls)
    assert sizes == [(2, 1), (2, 1), (2, 3), (3, 1)]  # n=2 default: a, d, e capped at 3, then f; b and c alone
    assert out[2] == [[t.replace("|1.0", "|0.5") for t in policy.complete("ccccc", 2, 0)]]  # its own temperature
    assert policy.config.temperature == 1.0  # restored after the batch


def test_a_cancelled_request_does_not_stall_its_batch_and_errors_reach_every_member():
    policy = SlowBatched(delay=0.2)
    batcher = Batcher(policy, window_ms=20)

    async def main():
        gone = asyncio.ensure_future(batcher.complete(["aaaaa"], 1, [0], policy.config))
        kept = asyncio.ensure_future(batcher.complete(["bbbbb"], 1, [0], policy.config))
        await asyncio.sleep(0.05)  # the batch is decoding
        gone.cancel()
        late = asyncio.ensure_future(batcher.complete(["ccccc"], 1, [0], policy.config))
        await asyncio.sleep(0.001)
        late.cancel()  # cancelled before its batch starts: dropped
        return await asyncio.wait_for(kept, 5), await asyncio.wait_for(batcher.complete(["ddddd"], 1, [0], policy.config), 5)

    kept, after = asyncio.run(main())
    assert kept == [policy.complete("bbbbb", 1, 0)] and after == [policy.complete("ddddd", 1, 0)]
    assert [p for p, _, _ in policy.calls] == [["aaaaa", "bbbbb"], ["ddddd"]]

    class Broken(FakeBatched):
        def complete_many(self, prompts, n, seeds):
            raise RuntimeError("out of memory")

    broken = Batcher(Broken(), window_ms=20)
    with pytest.raises(RuntimeError, match="out of memory"):
        _gather(broken, [(["aaaaa"], 1, [0], SamplingConfig()), (["bbbbb"], 1, [0], SamplingConfig())])
    with pytest.raises(ValueError, match="one seed per prompt"):
        _gather(broken, [(["aaaaa"], 1, [0, 1], SamplingConfig())])


def test_batcher_settings_are_checked():
    from ttpkit.errors import ConfigError

    with pytest.raises(ConfigError, match="max_batch"):
        Batcher(FakeLocal(), max_batch=0)
    with pytest.raises(ConfigError, match="batch_window_ms"):
        Batcher(FakeLocal(), window_ms=-1)


@pytest.mark.slow
def test_embedded_model_batched_equals_solo():
    """Each prompt's samples are its own seed's, whatever its batch-mates (the real embedded model)."""
    from ttpkit.data import get_task
    from ttpkit.policy.local import LocalPolicy

    policy = LocalPolicy.embedded(get_task("git-commits"), SamplingConfig(max_new_tokens=6))
    prompts = ["Commit message: fix typo in", "Commit message: add tests for", "Subject: bump version"]
    seeds = [11, 12, 13]
    sizes = []
    batcher = Batcher(policy, window_ms=200, on_batch=lambda requests, prompts, secs: sizes.append(prompts))
    together = _gather(batcher, [([p], 3, [s], policy.config) for p, s in zip(prompts, seeds)])
    solo = [policy.complete(p, 3, s) for p, s in zip(prompts, seeds)]
    assert sizes == [3]  # the three requests decoded in one batch
    assert [t[0] for t in together] == solo
    from ttpkit.serve._openai import ChatMessage, chat_prompt, count_tokens

    assert count_tokens(policy, "Subject: bump version", prompt=True) == policy.tokenizer(prompts[2], return_tensors="pt").input_ids.shape[1]
    chat = chat_prompt(policy, [ChatMessage(role="user", content="hi")])
    if policy.tokenizer.chat_template:  # Gemma's template, without the BOS the tokenizer adds itself
        assert "<start_of_turn>user" in chat and not chat.startswith(policy.tokenizer.bos_token)
    else:  # the GGUF conversion keeps no template: the plain role-prefixed prompt
        assert chat == "User: hi\nAssistant:"


def test_a_score_group_scores_its_members_in_one_pass_and_never_waits_past_its_limit():
    import threading
    import time

    import numpy as np
    import pandas as pd

    from ttpkit.data import Query
    from ttpkit.reward.base import Needs
    from ttpkit.reward.models import Scores
    from ttpkit.serve._scoring import ScoreGroup

    class Model:  # a row's feature is its query's input length plus its text's
        passes: list = []
        needs = Needs(row_features=True)

        def features(self, pool, by_id, encoder=None):
            self.passes.append(sorted(set(pool["query_id"])))
            return np.array([[len(by_id[q].input) + len(t)] for q, t in zip(pool["query_id"], pool["text"])], float)

        def score_features(self, x):
            return Scores(mean=x[:, 0], std=np.zeros(len(x)))

    model, out = Model(), {}
    group = ScoreGroup(expected=3, wait_s=0.5)  # the third member never comes
    members = {"a": ("xx", ["1", "22"]), "b": ("yyyy", ["333"])}

    def member(name):
        source, texts = members[name]
        query = Query(id="q", user_id="u", input=source, source=source, profile=())  # one query id for both
        pool = pd.DataFrame({"query_id": ["q"] * len(texts), "text": texts})
        out[name] = list(group.score(model, pool, {"q": query}).mean)

    start = time.monotonic()
    threads = [threading.Thread(target=member, args=(n,)) for n in members]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert out == {"a": [3.0, 4.0], "b": [7.0]} and len(model.passes) == 1 and len(model.passes[0]) == 2
    assert 0.4 < time.monotonic() - start < 4
