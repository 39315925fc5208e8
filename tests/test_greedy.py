"""The greedy answer as baseline: exact selection probabilities, paired gains, and the pool's greedy rows."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ttpkit.errors import ConfigError
from ttpkit.policy.base import Candidate, SamplingConfig
from ttpkit.pool import GREEDY, candidates_per_query, greedy_rows, read_pool, sampled
from ttpkit.scaling import best_of_n, curves, selection_probabilities, versus_greedy


def _brute(scores, k, greedy_score=None):
    """P(chosen) by enumerating every k-subset, ties broken uniformly (the greedy row, if any, always a candidate)."""
    m = len(scores)
    p, pg, subsets = np.zeros(m), 0.0, list(itertools.combinations(range(m), k))
    for sub in subsets:
        cands = [(scores[j], j) for j in sub] + ([(greedy_score, -1)] if greedy_score is not None else [])
        top = max(s for s, _ in cands)
        tied = [j for s, j in cands if s == top]
        for j in tied:
            if j == -1:
                pg += 1 / len(tied) / len(subsets)
            else:
                p[j] += 1 / len(tied) / len(subsets)
    return p, pg


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 3), min_size=1, max_size=7), st.data())
def test_selection_probabilities_match_enumeration_with_ties(scores, data):
    scores = np.array(scores, dtype=float)
    k = data.draw(st.integers(1, len(scores)))
    p, pg = selection_probabilities(scores, k)
    bp, _ = _brute(scores, k)
    assert pg == 0 and np.allclose(p, bp) and p.sum() == pytest.approx(1)
    g = float(data.draw(st.integers(0, 3)))
    k0 = data.draw(st.integers(0, len(scores)))
    p, pg = selection_probabilities(scores, k0, g)
    bp, bpg = _brute(scores, k0, g)
    assert np.allclose(p, bp) and pg == pytest.approx(bpg) and p.sum() + pg == pytest.approx(1)


def test_expected_utility_equals_the_best_of_n_estimator():
    rng = np.random.default_rng(0)
    r, u = rng.integers(0, 4, (5, 8)).astype(float), rng.random((5, 8))
    ns = (1, 2, 4, 8)
    want = best_of_n(r, u, ns)
    got = np.array([[selection_probabilities(r[i], n)[0] @ u[i] for n in ns] for i in range(5)])
    assert np.allclose(got, want)


def _pool(q: int = 12, m: int = 8, seed: int = 0) -> pd.DataFrame:
    """Samples with an informative score, and one greedy row per query that is better than the average sample."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(q):
        u = rng.random(m) * 0.5
        for j in range(m):
            rows.append(dict(query_id=f"q{i}", user_id=f"u{i % 3}", idx=j, text=f"t{i}.{j}", policy="p", seed=0,
                             greedy=False, rougeL=u[j], score_rm=u[j] + rng.normal(0, 0.1)))
        rows.append(dict(query_id=f"q{i}", user_id=f"u{i % 3}", idx=m, text=f"g{i}", policy="p", seed=0, greedy=True,
                         rougeL=0.3, score_rm=0.3 + rng.normal(0, 0.1)))
    return pd.DataFrame(rows)


def test_greedy_rows_are_the_baseline_never_a_sample():
    pool = _pool()
    assert candidates_per_query(pool) == 8 and len(greedy_rows(pool)) == 12 and not sampled(pool)[GREEDY].any()
    with_greedy = curves(pool, ["oracle", "rm"], ns=(1, 2, 4, 8))
    without = curves(sampled(pool), ["oracle", "rm"], ns=(1, 2, 4, 8))
    assert with_greedy["rm"].mean == without["rm"].mean and with_greedy["oracle"].mean == without["oracle"].mean


def test_versus_greedy_pairs_each_query_with_its_greedy_answer():
    pool = _pool()
    res = versus_greedy(pool, ["random", "oracle", "rm"], ns=(1, 2, 4, 8), n_boot=200)
    rnd, orc = res["random"], res["oracle"]
    u = sampled(pool).groupby("query_id")["rougeL"]
    assert rnd.greedy == pytest.approx(0.3) and rnd.n_queries == 12
    assert np.allclose(rnd.mean, u.mean().mean())  # random selection: flat at the pool mean
    assert orc.mean[-1] == pytest.approx(u.max().mean())  # N = M: the oracle takes every query's best sample
    for r in res.values():
        assert np.allclose(np.array(r.win) + np.array(r.tie) + np.array(r.loss), 1)
        assert all(lo <= g <= hi for lo, g, hi in zip(r.lo, r.gain, r.hi))
        assert np.allclose(r.gain, np.array(r.mean) - r.greedy)
    assert orc.win[-1] >= res["rm"].win[-1] and orc.gain[-1] >= res["rm"].gain[-1]


def test_with_greedy_mode_has_the_greedy_answer_at_n_1_and_never_loses_with_the_oracle():
    pool = _pool()
    res = versus_greedy(pool, ["oracle", "rm", "random"], ns=(1, 2, 9), mode="with-greedy", n_boot=100)
    assert res["rm"].gain[0] == 0 and res["rm"].tie[0] == 1  # N=1: the greedy answer alone
    assert min(res["oracle"].gain) >= 0 and res["oracle"].loss == (0.0, 0.0, 0.0)
    m_plus = 9  # the greedy row and all 8 samples: random picks uniformly among them
    want = (sampled(pool).groupby("query_id")["rougeL"].sum() + 0.3) / m_plus
    assert res["random"].mean[-1] == pytest.approx(want.mean())


def test_versus_greedy_takes_a_separate_pool_of_greedy_decodes():
    pool = _pool()
    greedy = greedy_rows(pool).assign(rougeL=0.1)
    res = versus_greedy(sampled(pool), ["rm"], ns=(1, 4), greedy=greedy, n_boot=100)
    assert res["rm"].greedy == pytest.approx(0.1)
    with pytest.raises(Exception, match="no greedy answers"):
        versus_greedy(sampled(pool), ["rm"], ns=(1,))
    with pytest.raises(ConfigError, match="unknown mode"):
        versus_greedy(pool, ["rm"], mode="best")


@pytest.mark.parametrize("t", [1e-4, -1.0, float("nan"), float("inf"), 1e999, True])
def test_temperature_zero_is_greedy_and_other_bad_values_are_refused(t):
    assert SamplingConfig(temperature=0).is_greedy and not SamplingConfig(temperature=0.5).is_greedy
    with pytest.raises(ConfigError, match="temperature must be 0 \\(greedy\\)"):
        SamplingConfig(temperature=t)


def test_greedy_rows_journal_and_resume(tmp_path, sample):
    """A pool sampled with the greedy row keeps its columns through the journal, the fold and a resume."""
    from ttpkit.stages import sample_pool

    class Greedy:
        name, batch_queries, calls = "fake", 2, 0

        def sample(self, queries, m):
            Greedy.calls += 1
            return [[Candidate(q.id, q.user_id, j, f"{q.id} {j}", "fake", 0, j == m, -1.5 * (j + 1), j + 1)
                     for j in range(m + 1)] for q in queries]

    out = tmp_path / "p.parquet"
    assert sample_pool(sample.queries[:3], out, 2, Greedy()) == 3
    assert sample_pool(sample.queries[:5], out, 2, Greedy()) == 2  # resumed: only the two new queries
    pool = read_pool(out)
    assert len(pool) == 15 and candidates_per_query(pool) == 2
    g = greedy_rows(pool)
    assert list(g["idx"]) == [2] * 5 and list(g["n_tokens"]) == [3] * 5 and np.allclose(g["logp"], -4.5)
    parts = tmp_path / "parts"
    sample_pool(sample.queries[:3], parts, 2, Greedy())
    assert read_pool(parts)[GREEDY].sum() == 3


def test_stacked_ranker_learns_the_signal_and_round_trips(tmp_path):
    """Fitted on pools where the RM column carries the utility, the rm weight dominates; save/load keeps the weights."""
    from ttpkit.reward.stack import StackedScorer
    from ttpkit.scaling import draw_versus_greedy

    pool = _pool(q=30)
    model = StackedScorer(rm="rm", signals=("rm", "length", "greedy")).fit([pool])
    w = dict(zip(("rm", "logp", "logp_tok", "mbr", "length", "greedy", "implicit"), model.weights_))
    assert w["rm"] > 5 * abs(w["length"]) and w["logp"] == w["mbr"] == 0
    model.save(tmp_path / "s")
    again = StackedScorer.load(tmp_path / "s")
    assert np.array_equal(again.weights_, model.weights_) and again.signals == model.signals
    res = draw_versus_greedy(pool, model, ns=(1, 2, 8), mode="with-greedy", draws=50, n_boot=100)
    assert res.gain[0] == 0 and res.tie[0] == 1  # N=1 with the greedy row: the greedy answer
    exact = versus_greedy(pool, ["rm"], ns=(8,), mode="samples", n_boot=100)["rm"]
    mc = draw_versus_greedy(pool, model, ns=(8,), mode="samples", n_boot=100)  # N = M: one draw, the whole pool
    assert mc.mean[0] == pytest.approx(exact.mean[0], abs=0.02)
    with pytest.raises(ConfigError, match="unknown signals"):
        StackedScorer(rm="rm", signals=("rm", "vibes"))


def test_openai_backend_adds_the_greedy_row_by_a_separate_temperature_0_request(sample):
    """Servers differ in how they sample; the greedy row is one request with n=1 and temperature 0, whatever the seed."""
    from fastapi import FastAPI

    from ttpkit.policy.openai import OpenAIPolicy

    from conftest import live

    seen = []
    fake = FastAPI()

    @fake.post("/v1/completions")
    def completions(body: dict) -> dict:
        seen.append(body)
        text = "argmax" if body["temperature"] == 0 else f"draw {body['seed']}"
        return {"choices": [{"index": i, "text": f" {text} {i}\n", "finish_reason": "stop"} for i in range(body["n"])]}

    with live(fake) as root:
        runs = []
        for seed in (0, 9):
            pol = OpenAIPolicy(f"{root}/v1", "m", sample.task, SamplingConfig(seed=seed, greedy=True))
            runs.append(pol.sample(sample.queries[:2], 3))
    for rows in runs:
        assert [c.greedy for c in rows[0]] == [False, False, False, True] and rows[0][-1].idx == 3
        assert rows[0][-1].text == "argmax 0"
    assert runs[0][0][0].text != runs[1][0][0].text  # the samples follow the seed; the greedy row does not
    greedy_requests = [b for b in seen if b["temperature"] == 0]
    assert len(greedy_requests) == 4 and all(b["n"] == 1 for b in greedy_requests)


def test_curves_shows_greedy_and_the_gain_over_it(tmp_path):
    import json

    from typer.testing import CliRunner

    from ttpkit.cli import app as cli
    from ttpkit.pool import write_pool

    path = tmp_path / "p.parquet"
    write_pool(_pool(), path)
    run = lambda *a: CliRunner().invoke(cli, ["curves", "--pool", str(path), "--scorers", "oracle,random,rm", *a])  # noqa: E731
    res = run("--format", "json")
    assert res.exit_code == 0, res.output
    body = json.loads(res.output)
    assert body["rm"]["1"] == pytest.approx(sampled(_pool())["rougeL"].mean())  # curves: samples only
    vs = body["against_greedy"]["rm"]
    assert vs["mode"] == "samples" and vs["greedy"] == pytest.approx(0.3) and set(vs["by_n"]) == {"1", "2", "4", "8"}
    res = run("--with-greedy", "--format", "markdown")
    assert res.exit_code == 0 and "minus greedy [95% CI]" in res.output and "| rm | 1 | 0.300 | +0.000" in res.output
    table = run("--plot", str(tmp_path / "c.png"))
    assert table.exit_code == 0 and "against greedy" in table.output and (tmp_path / "c.greedy.png").exists()
    write_pool(sampled(_pool()), path)
    assert "against greedy" not in run().output  # no greedy rows, no --greedy: the curves alone
    assert run("--with-greedy").exit_code == 2


def test_diagnose_writes_the_comparison_with_greedy_beside_the_report(tmp_path):
    import json

    from typer.testing import CliRunner

    from ttpkit.cli import app as cli
    from ttpkit.pool import write_pool

    path = tmp_path / "p.parquet"
    write_pool(_pool(q=16), path)
    res = CliRunner().invoke(cli, ["diagnose", "--pool", str(path), "--out", str(tmp_path / "r"), "--scorers", "oracle,rm"])
    assert res.exit_code == 0, res.output
    body = json.loads((tmp_path / "r" / "against_greedy.json").read_text())
    assert set(body) == {"oracle", "rm"} and body["rm"]["greedy"] == pytest.approx(0.3)
    assert "| rm | 8 |" in (tmp_path / "r" / "against_greedy.md").read_text()


class GreedyEcho:
    """A policy with the greedy row: candidate i is word i of the source; the greedy row is its first three words."""

    name, batch_queries = "greedy-echo", 1

    def __init__(self) -> None:
        self.config = SamplingConfig(greedy=True)
        self.asked: list[int] = []

    def sample(self, queries, m):
        self.asked.append(m)
        out = []
        for q in queries:
            words = q.source.split() or ["x"]
            rows = [Candidate(q.id, q.user_id, i, " ".join(words[i + 1 : i + 5]), self.name, 0) for i in range(m)]
            out.append([*rows, Candidate(q.id, q.user_id, m, " ".join(words[:3]), self.name, 0, True, -2.0, 4)])
        return out


def test_personalize_returns_the_greedy_answer_beside_the_chosen_one(sample):
    import json

    from ttpkit import personalize
    from ttpkit.report import personalized_notes, personalized_table

    from conftest import FakeEncoder

    q = sample.queries[0]
    profile = [{"id": p.id, "text": p.source, "title": p.target} for p in q.profile]
    pol = GreedyEcho()
    res = personalize(profile, q.source, task=sample.task, n=6, policy=pol, encoder=FakeEncoder())
    assert res.n == 6 and pol.asked == [5]  # N counts the greedy row: 5 samples and the greedy answer
    assert res.greedy == 5 and res.greedy_text == " ".join(q.source.split()[:3])
    assert res.chosen_is_greedy == (res.chosen == 5)
    record = json.loads(json.dumps(res.as_dict()))
    assert record["greedy"] == 5 and record["greedy_text"] == res.greedy_text and "chosen_is_greedy" in record
    notes = personalized_notes(res)
    assert any("greedy answer" in line for line in notes)
    adaptive = personalize(profile, q.source, task=sample.task, policy=GreedyEcho(), encoder=FakeEncoder(),
                           adaptive=True, max_n=12, min_round_gain=0.0)
    assert adaptive.n == 12 and sum(c.text == res.greedy_text for c in adaptive.candidates) >= 1
    assert adaptive.greedy == 3  # the first round's: later rounds add samples only
    assert personalized_table(res) is not None


def test_the_service_answers_with_the_greedy_row_as_the_library_does(tmp_path, sample):
    import dataclasses

    from fastapi.testclient import TestClient

    from ttpkit import personalize
    from ttpkit.policy.base import Completion
    from ttpkit.serve import create_service

    from conftest import FakeEncoder, FakeLM, items_of

    class ScoredLM(FakeLM):
        """FakeLM with log-probabilities and a greedy row (the words of the prompt's last line)."""

        def complete_scored(self, prompts, n, seeds, greedy=False):
            out = [[Completion(t, -1.0 * len(t), len(t.split())) for t in ts] for ts in self.complete_many(prompts, n, seeds)]
            if greedy:
                for cs, p in zip(out, prompts):
                    cs.append(Completion(" ".join(p.split()[-3:]), -0.5, 3, True))
            return out

    client = TestClient(create_service(ScoredLM(), f"sqlite:///{tmp_path / 'p.db'}", batch_window_ms=1.0,
                                       encoder=FakeEncoder(), admin_key=""))
    q = sample.queries[1]
    client.post("/v1/users/alice/items", json={"items": items_of(q)})
    got = client.post("/v1/personalize", json={"user_id": "alice", "input": q.source, "n": 6, "seed": 2})
    assert got.status_code == 200, got.text
    got = got.json()
    lib = ScoredLM(2)
    lib.config = dataclasses.replace(lib.config, greedy=True)
    want = personalize(items_of(q), q.source, n=6, seed=2, policy=lib, user_id="alice", encoder=FakeEncoder())
    assert got["greedy"] == want.greedy == 5 and got["greedy_text"] == want.greedy_text
    assert [c["text"] for c in got["candidates"]] == [c.text for c in want.candidates]
    assert got["chosen"] == want.chosen and got["chosen_is_greedy"] == want.chosen_is_greedy


def test_score_takes_a_saved_stacked_ranker_and_names_the_implicit_forms(tmp_path, sample):
    from typer.testing import CliRunner

    from ttpkit.cli import app as cli
    from ttpkit.pool import write_pool
    from ttpkit.reward import resolve_scorer
    from ttpkit.reward.implicit import ImplicitScorer
    from ttpkit.reward.stack import StackedScorer

    rows = []
    for i, q in enumerate(sample.queries[:4]):
        for j in range(4):
            rows.append(dict(query_id=q.id, user_id=q.user_id, idx=j, text=f"{q.source.split()[j]} fix {j}", policy="p",
                             seed=0, greedy=j == 3, rougeL=0.1 * j, score_rm=0.1 * j + 0.01 * i, logp=-1.0 - j, n_tokens=3))
    pool = pd.DataFrame(rows)
    StackedScorer(rm="rm", signals=("rm", "greedy")).fit([pool]).save(tmp_path / "stacked")
    path = tmp_path / "p.parquet"
    write_pool(pool, path)
    res = CliRunner().invoke(cli, ["score", "--rm", str(tmp_path / "stacked"), "--pool", str(path),
                                   "--data", str(sample.path), "--split", "dev"])
    assert res.exit_code == 0, res.output
    scored = read_pool(path)
    assert np.allclose(scored.groupby("query_id")["score_stacked"].apply(lambda s: s.to_numpy().argmax()), 3)
    assert isinstance(resolve_scorer("implicit:loglik-tok", "git-commits"), ImplicitScorer)
    with pytest.raises(ConfigError, match="unknown form 'vibes'"):
        resolve_scorer("implicit:vibes", "git-commits")


def test_ttpkits_own_server_decodes_temperature_0_as_greedy_and_the_openai_backend_uses_it(sample):
    """The openai backend's greedy request against ``ttpkit serve`` (its completer sees temperature 0)."""
    from ttpkit.policy.openai import OpenAIPolicy
    from ttpkit.serve import create_app

    from conftest import live

    class Recorder:
        def __init__(self) -> None:
            self.config, self.temperatures = SamplingConfig(), []

        def complete(self, prompt, n, seed):
            self.temperatures.append(self.config.temperature)
            word = "argmax" if self.config.temperature == 0 else f"s{seed}"
            return [f"{word} {i}" for i in range(n)]

    served = Recorder()
    with live(create_app(served, model_name="m")) as root:
        pol = OpenAIPolicy(f"{root}/v1", "m", sample.task, SamplingConfig(seed=1, greedy=True))
        (rows,) = pol.sample(sample.queries[:1], 2)
        import httpx

        tiny = httpx.post(f"{root}/v1/completions", json={"prompt": "x", "temperature": 1e-5})
        hot = httpx.post(f"{root}/v1/completions", content=b'{"prompt": "x", "temperature": 1e999}',
                         headers={"content-type": "application/json"})
    assert rows[-1].greedy and rows[-1].text == "argmax 0" and 0.0 in served.temperatures
    assert tiny.status_code == 422 and "temperature must be 0 (greedy)" in tiny.text
    assert hot.status_code == 422


def test_a_study_row_gains_the_greedy_columns_where_its_pool_has_greedy_rows():
    from ttpkit.studies._measure import against_greedy_columns

    rows = [{"scorer": "oracle"}, {"scorer": "rm"}]
    out = against_greedy_columns(rows, _pool(), ["oracle", "rm"], 8)
    assert out[0]["greedy"] == pytest.approx(0.3) and out[0]["vs_greedy N=8"] > 0 and out[0]["loss_vs_greedy"] == 0
    assert out[1]["vs_greedy_lo"] <= out[1]["vs_greedy N=8"] <= out[1]["vs_greedy_hi"]
    assert against_greedy_columns(rows, sampled(_pool()), ["oracle", "rm"], 8) == rows  # no greedy rows: unchanged


def test_a_study_pools_cache_key_names_greedy_only_when_it_is_on():
    from ttpkit.policy import PolicySpec
    from ttpkit.studies.paper import _policy_key

    assert "greedy" not in _policy_key(PolicySpec()) and _policy_key(PolicySpec(greedy=True))["greedy"] is True


def test_personalize_with_n_1_answers_the_greedy_decode(sample):
    from ttpkit import personalize

    from conftest import FakeEncoder

    q = sample.queries[0]
    profile = [{"id": p.id, "text": p.source, "title": p.target} for p in q.profile]
    res = personalize(profile, q.source, task=sample.task, n=1, policy=GreedyEcho(), encoder=FakeEncoder())
    assert res.n == 1 and res.greedy == 0 and res.chosen_is_greedy


@pytest.mark.slow
def test_the_personalize_command_samples_with_the_shipped_sampler_and_names_the_greedy_answer(tmp_path, sample):
    """`ttpkit personalize` asks the server for samples at SHIPPED's temperature and for the greedy decode (the real encoder scores)."""
    import json

    from fastapi import FastAPI
    from typer.testing import CliRunner

    from ttpkit.cli import app as cli
    from ttpkit.policy import SHIPPED

    from conftest import live

    seen = []
    fake = FastAPI()

    @fake.post("/v1/completions")
    def completions(body: dict) -> dict:
        seen.append((body["n"], body["temperature"]))
        return {"choices": [{"index": i, "text": f" fix parser {body['seed'] % 97} {i}", "finish_reason": "stop"}
                            for i in range(body["n"])]}

    q = sample.queries[0]
    profile = tmp_path / "user.json"
    profile.write_text(json.dumps([{"text": p.source, "title": p.target} for p in q.profile]))
    with live(fake) as root:
        res = CliRunner().invoke(cli, ["personalize", "--profile", str(profile), "--input", q.source, "--n", "4", "--json",
                                       "--backend", "openai", "--base-url", f"{root}/v1"])
    assert res.exit_code == 0, res.output
    record = json.loads(res.stdout[res.stdout.index("{"):])
    assert record["n"] == 4 and record["greedy"] == 3 and record["greedy_text"].startswith("fix parser")
    assert (3, SHIPPED.temperature) in seen and (1, 0) in seen
