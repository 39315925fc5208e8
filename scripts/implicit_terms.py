"""Score a pool with every form of the implicit reward at once (one set of teacher-forced passes), in place.

    python scripts/implicit_terms.py --pool results/greedy/git-commits/test_T0.7.parquet \
        --data ../shared/data/git-commits --split test [--terms user,zero,other]

Writes ``score_<form>`` for each form of :data:`ttpkit.reward.implicit.FORMS` whose terms were computed
(``ttpkit score --rm implicit:<form>`` computes one form per call; this shares the passes).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from rich.progress import Progress  # noqa: E402

from ttpkit.data import load_split  # noqa: E402
from ttpkit.policy import SamplingConfig  # noqa: E402
from ttpkit.policy.local import LocalPolicy  # noqa: E402
from ttpkit.pool import QUERY_ID, read_pool, score_col, write_pool  # noqa: E402
from ttpkit.reward.implicit import _TERMS, FORMS, form_scores, likelihood_terms  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pool", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--split", required=True)
    ap.add_argument("--terms", default="user,zero,other")
    args = ap.parse_args()
    terms = tuple(args.terms.split(","))
    pool = read_pool(args.pool)
    ds = load_split(args.data, args.split)
    policy = LocalPolicy.embedded(ds.task, SamplingConfig(k=4))
    t0 = time.time()
    with Progress() as bar:
        task = bar.add_task("implicit terms", total=pool[QUERY_ID].nunique())
        frame = likelihood_terms(pool, ds.by_id(), policy, terms, progress=lambda: bar.advance(task))
    for form in FORMS:
        if set(_TERMS[form]) <= set(terms):
            pool[score_col(form)] = form_scores(frame, form)
    write_pool(pool, args.pool)
    print(f"{args.pool}: {', '.join(f for f in FORMS if set(_TERMS[f]) <= set(terms))} in {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
