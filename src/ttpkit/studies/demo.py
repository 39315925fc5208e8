"""``ttpkit demo``: the whole loop on the bundled sample with the embedded Gemma 3 270M.

It samples M candidates for each of the 16 bundled git-commits queries, and
each query's greedy decode (the answer a user gets without best-of-N), labels
them with ROUGE, scores them with the bundled default reward model
(column ``score_rm``), and computes best-of-N for random, style, the RM and
oracle selection, then the same against the greedy answer (greedy + N-1
samples, paired gains and win rates), with the shipped sampler
(:data:`ttpkit.policy.base.SHIPPED`). Where the bundled default is the
stacked ranker, ``rm`` is the reward model behind it and the greedy table
adds the default itself (``default``), whose within-draw signals are
estimated by Monte Carlo over draws. The output folder is scratch: a pool made with another M or
seed is started over.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ttpkit import stages
from ttpkit.data import Dataset, bundled_sample_dir, load_split
from ttpkit.errors import TtpkitError
from ttpkit.manifest import check_resume
from ttpkit.paths import check_writable
from ttpkit.policy import PolicySpec, lazy_policy
from ttpkit.pool import QUERY_ID, ROUGEL, n_grid, pool_manifest, read_pool, score_col, write_pool
from ttpkit.report import curves_json, greedy_json, plot_curves, write_json
from ttpkit.policy.base import SHIPPED
from ttpkit.reward import bundled_path, load_rm, resolve_scorer
from ttpkit.reward.stack import StackedScorer
from ttpkit.scaling import Curve, VersusGreedy, curves, draw_versus_greedy, versus_greedy

__all__ = ["SCORERS", "DemoResult", "demo_data", "run_demo"]

SCORERS = ("random", "style", "rm", "oracle")


@dataclass(frozen=True)
class DemoResult:
    """What the demo made.

    Attributes:
        data: The bundled split it ran on.
        pool: The labelled and scored pool (also at ``out/pool.parquet``).
        curves: Best-of-N curve per scorer of :data:`SCORERS`.
        example: The candidates of the query whose candidates differ most.
        rm_name: The bundled reward model's name.
        greedy: Best-of-N of each scorer against the greedy answer, the greedy row one of the N.
    """

    data: Dataset
    pool: pd.DataFrame
    curves: dict[str, Curve]
    example: pd.DataFrame
    rm_name: str
    greedy: dict[str, VersusGreedy]


def demo_data() -> Dataset:
    """The demo's queries: the bundled git-commits sample's dev split."""
    return load_split(bundled_sample_dir(), "dev")


def _fresh(path: Path, manifest: dict) -> bool:
    """Whether the scratch pool at ``path`` must start over (it was made with another M or seed, or is unreadable)."""
    try:
        check_resume(path, pool_manifest(read_pool(path)), manifest)
        return False
    except TtpkitError:
        return True


def run_demo(out: Path, m: int = 8, seed: int = 0, progress: stages.Progress | None = None) -> DemoResult:
    """Run the demo into ``out`` (``pool.parquet``, ``curves.json``, ``curves.png``)."""
    check_writable(out, "--out", directory=True)
    progress = progress or stages.NullProgress()
    data, path = demo_data(), out / "pool.parquet"
    spec = PolicySpec.from_options("embedded", temperature=SHIPPED.temperature, top_p=SHIPPED.top_p, greedy=SHIPPED.greedy,
                                   dtype="float32")  # its printed numbers are pinned in the docs, on any CPU
    manifest = stages.sampling_manifest(spec, data, m, seed)
    stages.sample_pool(data.queries, path, m, lazy_policy(spec, data.task, seed, progress.note), progress,
                       manifest=manifest, force_new=_fresh(path, manifest))
    df = stages.label_pool(path, data)
    default = load_rm(bundled_path(data.task.name))
    stacked = default if isinstance(default, StackedScorer) else None  # the default ranks with the RM behind it
    rm = resolve_scorer(stacked.rm_model, data.task.name) if stacked is not None and stacked.rm_model else default
    progress.note(f"scoring {len(df)} candidates with the bundled {rm.name} reward model")
    df = stages.score_pool(df, rm, data, name="rm")
    if stacked is not None:
        df = df.assign(**{score_col(stacked.rm): df[score_col("rm")]})
    write_pool(df, path)
    result = curves(df, list(SCORERS), ROUGEL, n_grid(m), seed=seed)
    against = versus_greedy(df, list(SCORERS), ROUGEL, n_grid(m), "with-greedy", seed=seed)
    if stacked is not None:  # within-draw signals: Monte Carlo over draws (ttpkit.scaling.draw_versus_greedy)
        against = {**{k: v for k, v in against.items() if k != "oracle"},
                   "default": draw_versus_greedy(df, stacked, ROUGEL, n_grid(m), "with-greedy", seed=seed, name="default"),
                   "oracle": against["oracle"]}
    write_json({**curves_json(result), "against_greedy": greedy_json(against)}, out / "curves.json")
    plot_curves(result, out / "curves.png", ROUGEL, title=f"ttpkit demo: best-of-N, {result['oracle'].n_queries} queries")
    qid = df.groupby(QUERY_ID)[ROUGEL].std().idxmax()  # the query whose candidates differ most
    return DemoResult(data, df, result, df[df[QUERY_ID] == qid].reset_index(drop=True), rm.name, against)
