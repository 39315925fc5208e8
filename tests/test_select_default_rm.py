"""scripts/select_default_rm.py's parts that decide the shipped default: the folds, the user bootstrap and the rule.

The script itself runs for minutes on the real train pools (docs/performance.md); these check its
pieces on tiny frames, with no model.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cv():
    spec = importlib.util.spec_from_file_location("select_default_rm", ROOT / "scripts" / "select_default_rm.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up there
    spec.loader.exec_module(module)
    return module


def _pool(users: list[str], per_user: int = 2) -> pd.DataFrame:
    return pd.DataFrame({"user_id": [u for u in users for _ in range(per_user)]})


def test_folds_hold_every_user_once_per_task_evenly_and_follow_the_seed(cv):
    pools = {"a": _pool([f"a{i}" for i in range(23)]), "b": _pool([f"b{i}" for i in range(11)])}
    folds = cv.deal_folds(pools, 5, seed=0)
    assert set(folds) == {f"a{i}" for i in range(23)} | {f"b{i}" for i in range(11)}
    for task, n in (("a", 23), ("b", 11)):
        sizes = np.bincount([f for u, f in folds.items() if u.startswith(task)], minlength=5)
        assert sizes.sum() == n and sizes.max() - sizes.min() <= 1  # each task dealt evenly over the folds
    assert folds == cv.deal_folds({"b": pools["b"], "a": pools["a"]}, 5, seed=0)  # not the dict's order
    assert folds != cv.deal_folds(pools, 5, seed=1)


def test_user_bootstrap_is_the_ratio_of_sums_and_resamples_whole_users(cv):
    rng = np.random.default_rng(0)
    users = np.array(["u3", "u1", "u2", "u1", "u3", "u2", "u2"])  # unsorted, uneven queries per user
    gains, oracle = rng.random((2, 7)), rng.random(7) + 1.0
    share, boot = cv.user_share_boot(gains, oracle, users, n_boot=200, seed=4)
    assert np.allclose(share, gains.sum(1) / oracle.sum())
    # the same draws by hand: counts over the sorted users, each user with all of its queries
    counts = np.random.default_rng(4).multinomial(3, np.full(3, 1 / 3), size=200)  # (B, U) for u1, u2, u3
    weight = counts[:, np.searchsorted(["u1", "u2", "u3"], users)]  # (B, Q)
    assert np.allclose(boot, (weight @ gains.T) / (weight @ oracle)[:, None])
    again = cv.user_share_boot(gains[:, ::-1], oracle[::-1], users[::-1], n_boot=200, seed=4)[1]
    assert np.allclose(again, boot)  # the row order of the queries does not change the draws


def test_the_rule_takes_the_best_share_unless_a_cheaper_encoder_ties(cv):
    table = pd.DataFrame({"candidate": ["p-L2", "q-L2", "p-L6", "q-L6", "p-L6-f32"], "layers": [2, 2, 6, 6, 6],
                          "float32": [0, 0, 0, 0, 1], "share": [0.520, 0.515, 0.550, 0.540, 0.552]})
    assert cv.choose(table, tolerance=0.01) == "p-L6"  # f32 is 0.002 better but dearer: the bf16 one ties
    assert cv.choose(table, tolerance=0.0) == "p-L6-f32"
    assert cv.choose(table, tolerance=0.05) == "p-L2"  # the cheapest within 0.05, the better of the two at 2 layers
