"""What the P3 benchmarks share: their arguments and the RM, pool and queries they load."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from ttpkit.data import Query, load_split
from ttpkit.pool import read_pool
from ttpkit.reward.models import RewardModel


@dataclass(frozen=True)
class Setup:
    """A loaded P3 setting: ``cached`` are the texts a service has embedded already (inputs, profiles)."""

    args: argparse.Namespace
    rm: RewardModel
    pool: Any
    queries: dict[str, Query]
    cached: list[str]


def parser(doc: str | None) -> argparse.ArgumentParser:
    """``--rm``, ``--pool``, ``--data``, ``--split``; the caller adds its own options."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rm", required=True, help="reward model directory")
    ap.add_argument("--pool", required=True, help="pool to score")
    ap.add_argument("--data", required=True, help="LaMP-layout data directory")
    ap.add_argument("--split", default="test")
    return ap


def load(ap: argparse.ArgumentParser) -> Setup:
    """Parse the arguments and load the RM, the pool and the queries of the pool's split."""
    args = ap.parse_args()
    queries = load_split(args.data, args.split).by_id()
    pool = read_pool(args.pool)
    used = {queries[q] for q in pool["query_id"].unique()}
    cached = [q.source for q in used] + [p.target for q in used for p in q.profile]
    return Setup(args, RewardModel.load(args.rm), pool, queries, cached)
