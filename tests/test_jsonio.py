"""ttpkit.jsonio: every JSON ttpkit writes parses under a strict parser (NaN and inf written as null)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from ttpkit.jsonio import dumps, finite, write_json


def _strict(text: str):
    """json.loads that refuses NaN, Infinity and -Infinity, as jq, JavaScript and Go do."""
    return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def test_non_finite_numbers_become_null_at_any_depth():
    obj = {"a": math.nan, "b": [1.5, math.inf, (-math.inf, np.float32("nan"))], "c": {"d": np.float64(2.0)},
           "n": 3, "t": True, "s": "NaN"}
    assert _strict(dumps(obj)) == {"a": None, "b": [1.5, None, [None, None]], "c": {"d": 2.0}, "n": 3, "t": True,
                                   "s": "NaN"}


def test_a_non_finite_key_becomes_null_too():
    """A dict keyed by a float (say, a user id that pandas read as NaN) is written, never refused mid-report."""
    assert _strict(dumps({math.nan: 1, 2.5: 2, "u": 3})) == {"null": 1, "2.5": 2, "u": 3}


def test_finite_keeps_integers_bools_and_strings_as_they_are():
    assert finite([True, 7, np.int64(7), "x", None]) == [True, 7, np.int64(7), "x", None]
    assert type(finite(np.float32(0.5))) is float


def test_write_json_is_strict_and_ends_with_a_newline(tmp_path):
    path = write_json({"r2": float("nan")}, tmp_path / "sub" / "x.json")
    text = path.read_text()
    assert text.endswith("\n") and _strict(text) == {"r2": None}


def test_dumps_still_refuses_what_json_cannot_hold():
    with pytest.raises(TypeError):
        dumps({"x": object()})
