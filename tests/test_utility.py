from __future__ import annotations

import pandas as pd
import pytest

from ttpkit.data import Query
from ttpkit.errors import DataError
from ttpkit.utility import add_labels, rouge


def test_rouge_by_hand():
    # unigram overlap 3; P = 3/3, R = 3/6, F1 = 2PR/(P+R) = 2/3
    r = rouge("the cat sat", "the cat sat on the mat")
    assert r["rouge1"] == pytest.approx(2 / 3)
    # LCS "the cat sat" = 3 tokens as well
    assert r["rougeL"] == pytest.approx(2 / 3)
    # order matters for L but not for 1: LCS("sat cat the", ref) = 1 ("the" or "cat" or "sat")
    r2 = rouge("sat cat the", "the cat sat")
    assert r2["rouge1"] == pytest.approx(1.0)
    assert r2["rougeL"] == pytest.approx(1 / 3)


def test_stemming_is_on():
    assert rouge("running cats", "run cat")["rouge1"] == pytest.approx(1.0)
    assert rouge("", "anything")["rougeL"] == 0.0


def test_add_labels_needs_reference():
    pool = pd.DataFrame({"query_id": ["a"], "user_id": ["u"], "idx": [0], "text": ["x y"], "policy": ["p"], "seed": [0]})
    ok = {"a": Query("a", "u", "i", "i", (), reference="x y")}
    assert add_labels(pool, ok)["rougeL"].iloc[0] == pytest.approx(1.0)
    with pytest.raises(DataError, match="no reference"):
        add_labels(pool, {"a": Query("a", "u", "i", "i", ())})
    with pytest.raises(DataError, match="not in the data split"):
        add_labels(pool, {})
