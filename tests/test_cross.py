"""The cross-encoder RM with the real all-MiniLM-L6-v2 weights, on a few bundled queries."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import EchoPolicy

from ttpkit.errors import ConfigError
from ttpkit.reward.cross import CrossConfig, CrossEncoderRM
from ttpkit.stages import label_pool, sample_pool

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("head", ["pairwise", "prob"])
def test_fine_tuning_moves_the_weights_and_round_trips(tmp_path, sample, head):
    import torch

    path = tmp_path / "p.parquet"
    sample_pool(sample.queries[:4], path, 4, EchoPolicy())
    pool = label_pool(path, sample)
    rm = CrossEncoderRM(CrossConfig(head=head, epochs=1, queries_per_step=2, max_length=64))
    rm._build()
    before = {k: v.clone() for k, v in rm.encoder_.state_dict().items()}
    rm.fit(pool, sample.by_id())
    changed = [k for k, v in rm.encoder_.state_dict().items() if v.dtype.is_floating_point and not torch.equal(v, before[k])]
    assert len(changed) > 10  # the encoder itself is fine-tuned, not only the head
    s = rm.score(pool, sample.by_id())
    assert s.mean.shape == (len(pool),) and ((s.std > 0).all() if head == "prob" else (s.std == 0).all())
    assert rm.name == ("cross" if head == "pairwise" else "cross-prob") and rm.probabilistic == (head == "prob")
    back = CrossEncoderRM.load(rm.save(tmp_path / head))
    again = back.score(pool, sample.by_id())
    assert np.allclose(again.mean, s.mean, atol=1e-5) and np.allclose(again.std, s.std, atol=1e-5)


def test_bad_settings():
    with pytest.raises(ConfigError, match="unknown cross-encoder head"):
        CrossConfig(head="listwise")
    with pytest.raises(ConfigError, match="not fitted"):
        CrossEncoderRM().score(None, {})
