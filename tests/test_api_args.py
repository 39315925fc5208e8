"""Issue 31: the public API checks its arguments at the door and raises only ttpkit's own errors.

``ttpkit.personalize``, ``load_split``, the stages and ``ttpkit.client.Client`` are driven with each argument
replaced by a value of another type (hypothesis); what comes out is a result or a :class:`TtpkitError` naming
the argument, never a ``TypeError`` or an ``AttributeError`` from inside. Fakes only: no model loads.
"""

from __future__ import annotations

import httpx
import pandas as pd
import pytest
from conftest import EchoPolicy, FakeEncoder
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ttpkit import load_split, personalize, stages
from ttpkit._args import INT, STR, checked
from ttpkit.client import Client
from ttpkit.data import bundled_sample_dir
from ttpkit.errors import ArgumentError, ConfigError, DataError, TtpkitError
from ttpkit.policy import PolicySpec
from ttpkit.reward import RMConfig

FAST = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# values of every kind a caller might pass by mistake
JUNK = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30), st.floats(),
                 st.binary(max_size=8), st.text(max_size=8), st.lists(st.integers(), max_size=3),
                 st.dictionaries(st.text(max_size=3), st.integers(), max_size=2), st.just(object()))


@pytest.fixture(scope="module")
def sample():
    return load_split(bundled_sample_dir(), "dev")


def _personalize_args(sample) -> dict:
    q = sample.queries[0]
    profile = [{"id": p.id, "text": p.source, "title": p.target} for p in q.profile[:3]]
    return {"profile": profile, "input": q.source, "task": "git-commits", "n": 2, "policy": EchoPolicy(), "encoder": FakeEncoder()}


def test_the_issues_examples_name_the_argument():
    with pytest.raises(ArgumentError, match=r"personalize\(\): argument 'profile' must be a list .*not NoneType \(None\)"):
        personalize(None, "fix it")
    with pytest.raises(ArgumentError, match=r"argument 'rule' must be a str, not NoneType"):
        personalize([], "fix it", rule=None)
    with pytest.raises(ArgumentError, match=r"argument 'input' must be a str, not bytes \(b'fix it'\)"):
        personalize([], b"fix it")
    with pytest.raises(DataError, match="the input is empty"):  # an empty str is still said to be empty
        personalize([], "  ", policy=EchoPolicy(), encoder=FakeEncoder())
    e = ArgumentError("x")
    assert isinstance(e, ConfigError) and isinstance(e, TypeError)  # ttpkit's own, and what Python raises for a type


def test_checked_refuses_rules_for_arguments_the_function_lacks_and_calls_it_cannot_bind():
    with pytest.raises(TypeError, match="nmae"):
        checked(nmae=STR)(lambda name: name)

    @checked(name=STR, n=INT)
    def f(name: str, n: int = 1) -> str:
        return name * n

    assert f("ab", n=2) == "abab"
    with pytest.raises(ArgumentError, match=r"argument 'n' must be an int, not bool \(True\)"):
        f("ab", True)
    with pytest.raises(ArgumentError, match="missing a required argument"):
        f()


@FAST
@given(arg=st.sampled_from(["profile", "input", "task", "rm", "n", "rule", "policy", "seed", "adaptive", "max_n",
                            "round_size", "min_round_gain", "user_id", "encoder"]), value=JUNK)
def test_personalize_with_any_argument_of_another_kind_raises_only_ttpkit_errors(sample, arg, value):
    try:
        personalize(**{**_personalize_args(sample), arg: value})
    except TtpkitError:
        pass


@FAST
@given(arg=st.sampled_from(["data_dir", "split", "task"]), value=JUNK)
def test_load_split_with_any_argument_of_another_kind_raises_only_ttpkit_errors(arg, value):
    try:
        load_split(**{"data_dir": bundled_sample_dir(), "split": "dev", arg: value})
    except TtpkitError:
        pass


# values no stage argument takes (a stage given a right one would run, and could run long)
WRONG = st.one_of(st.none(), st.binary(max_size=8), st.floats(), st.just(object()), st.lists(st.integers(), max_size=3),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@FAST
@given(value=WRONG, which=st.sampled_from(["sample_pool", "label_pool", "score_pool", "train_rm", "sampling_manifest"]),
       position=st.integers(0, 2))
def test_a_stage_given_an_argument_of_another_kind_names_it(tmp_path, sample, value, which, position):
    pool = pd.DataFrame({"query_id": ["q"], "user_id": ["u"], "idx": [0], "text": ["t"]})
    args = {"sample_pool": [list(sample.queries[:1]), tmp_path / "p.parquet", 2, EchoPolicy()],
            "label_pool": [tmp_path / "nowhere.parquet", sample],
            "score_pool": [pool, EchoScorer(), sample],
            "train_rm": [RMConfig(), pool, sample],
            "sampling_manifest": [PolicySpec("p", "openai", base_url="http://127.0.0.1:9/v1"), sample, 2, 0]}[which]
    args[position % len(args)] = value
    with pytest.raises(TtpkitError):  # never a TypeError or AttributeError from inside
        getattr(stages, which)(*args)


class EchoScorer:
    name, probabilistic = "echo", False

    def score(self, *a, **k):
        raise AssertionError("a stage given a bad argument must not run")


def _client() -> Client:
    return Client("http://ttpkit.test", transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"keys": []})))


@FAST
@given(method=st.sampled_from([("complete", ("hi",)), ("chat", ([{"role": "user", "content": "hi"}],)),
                               ("add_items", ("alice", [{"text": "a", "title": "b"}])), ("profile", ("alice",)),
                               ("forget", ("alice",)), ("keys", ("alice",)), ("revoke_key", ("alice", "k1")),
                               ("personalize", ("fix it",)), ("feedback", ("r1", "kept"))]),
       position=st.integers(0, 1), value=JUNK)
def test_the_client_with_any_argument_of_another_kind_raises_only_ttpkit_errors(method, position, value):
    name, args = method
    args = list(args)
    args[min(position, len(args) - 1)] = value
    try:
        getattr(_client(), name)(*args)
    except TtpkitError:
        pass
    with pytest.raises(TtpkitError):
        Client(value if not isinstance(value, str) else "::" + value)  # a base URL that is no http(s) URL
