"""The study registry and the one typed loader that every study kind uses."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from ttpkit.errors import ConfigError
from ttpkit.studies import KINDS, load_study, study_kind
from ttpkit.studies._cache import cache_key
from ttpkit.studies.config import build, rename_deprecated, type_ok
from ttpkit.studies.failures import FailureStudy, PoolRef
from ttpkit.studies.paper import StudyConfig

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class _Thing:
    name: str
    size: int = 1
    weight: float | None = None
    tags: tuple[str, ...] = ()


def test_build_checks_keys_and_types_and_names_the_key_path():
    assert build(_Thing, {"name": "a", "size": 2, "weight": 1, "tags": ("x",)}, "things[0]") == _Thing("a", 2, 1, ("x",))
    for obj, needle in [({"name": "a", "colour": 1}, "things[0]: unknown keys ['colour']"),
                        ({"name": "a", "size": True}, "things[0].size: True is not a valid int"),
                        ({"name": 3}, "things[0].name: 3 is not a valid str"),
                        ({"size": 2}, "things[0]:"), ([1], "things[0]: expected a mapping")]:
        with pytest.raises(ConfigError) as e:
            build(_Thing, obj, "things[0]")
        assert needle in str(e.value)


def test_type_ok_reads_optionals_and_tuples():
    assert type_ok(None, int | None) and type_ok(2, float) and not type_ok(True, float)
    assert type_ok(("a",), tuple[str, ...]) and not type_ok(("a", 1), tuple[str, ...])


def test_deprecated_key_is_renamed_and_the_new_one_wins():
    assert rename_deprecated({"ensemble": 3}, "ensemble", "members", "top") == {"members": 3}
    assert rename_deprecated({"ensemble": 3, "members": 4}, "ensemble", "members", "top") == {"members": 4}


def test_every_committed_study_loads_as_its_kind():
    for path, kind in [("paper.yaml", StudyConfig), ("long-form.yaml", FailureStudy)]:  # failures.yaml needs the judge package
        k, cfg = load_study(ROOT / "studies" / path)
        assert isinstance(cfg, kind) and k.load("config") is kind and callable(k.load("run"))
    assert set(KINDS) == {"paper", "failures"}


def test_unknown_kind_lists_the_known_ones():
    with pytest.raises(ConfigError, match="known kinds: paper, failures"):
        study_kind({"kind": "ablation"})


def test_cache_keys_are_those_of_the_two_runners_before_they_shared_one():
    """The paper runner hashed dataclasses as their fields, the failure runner as their text: both stay valid."""
    import dataclasses
    import hashlib
    import json

    ref = PoolRef("p.parquet", "/d", "test")
    old_paper = hashlib.sha256(json.dumps(("a", {"n": 1}, ref), sort_keys=True,
                                          default=lambda o: dataclasses.asdict(o)).encode()).hexdigest()[:12]
    old_failures = hashlib.sha256(json.dumps((ref, 0), sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert cache_key("a", {"n": 1}, ref) == old_paper and cache_key(repr(ref), 0) == old_failures
