"""Train the reward models shipped in the wheel (``--rm default``) and write their cards.

    python scripts/train_bundled.py --data ../shared/data --results results

For git-commits and debian-synopsis: ``user-pairwise`` and ``user-prob`` trained on
the task's full train pool (early stopping on 20% of its training users, held out:
the dev split stays unseen, so ``ttpkit demo``, whose bundled sample comes from
dev, shows the models on users they never met); and the task-agnostic pair
(``any``) trained on both train pools together. All use MiniLM's first 2
layers and ``encoder_dtype: auto`` (bf16 where the CPU has it): the scoring
defaults chosen in docs/performance.md. Each model is then scored on its task's
test pool (``any``: on both), and ``card.json`` / ``README.md`` record the share
of the oracle gain and the law's quantities. The scored test pools go to
``<results>/bundled/<task>/test.parquet`` (the adaptive-N evaluation reads them).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from ttpkit import stages
from ttpkit.data import Dataset, TaskSpec
from ttpkit.pool import QUERY_ID, ROUGEL, n_grid, read_pool, score_col, std_col, write_pool
from ttpkit.reward.bundled import AGNOSTIC, MODELS_DIR, ModelCard
from ttpkit.reward.models import RMConfig
from ttpkit.scaling import curves, fit_law, scorer_values

TASKS = ("git-commits", "debian-synopsis")
VARIANTS = ("user-pairwise", "user-prob")
TAU = 0.05

CARD = """# Bundled reward model: `{variant}` for `{task}`

- **What it is**: a ttpkit personalized reward model (`{variant}`), a 2-layer MLP over
  {n_features} features of a candidate, its input and the user's profile; the embedding
  features use the first 2 of all-MiniLM-L6-v2's 6 layers, scored in `{dtype}`
  (`auto`: bf16 where the CPU has native bf16, else float32).
- **Trained on**: {trained_on}; early stopping on 20% of the training users, held
  out. Users of the dev and test splits are never seen.
- **Measured on** the test users of {tested_on} ({queries} queries, pools of {m} Gemma 3 270M
  candidates): best-of-{m} recovers **{share:.0%} of the oracle gain** (expected ROUGE-L
  {first:.3f} at N=1, {last:.3f} at N={m}; oracle {oracle:.3f}). Law quantities: μ̄ {mu:.3f},
  c {c:.2f}, σ_eff {sigma:.3f}, ρ_eff {rho:.3f}.
- **Retrain**: `python scripts/train_bundled.py --data ../shared/data --results results`
  (all six models: 2 min 15 s on 2 CPU cores with a warm embedding cache).
- **Limits**: short outputs only (commit subjects, package synopses); on another task use
  the `any` model, whose share on each task is in its card.
"""


def _merged(datasets: list[Dataset]) -> Dataset:
    queries = tuple(q for ds in datasets for q in ds.queries)
    task = TaskSpec(AGNOSTIC, "source", "target", "Input", "Output")
    return Dataset(task=task, queries=queries, path=datasets[0].path, split=datasets[0].split)


def _card(pool: pd.DataFrame, name: str, task: str, variant: str) -> tuple[ModelCard, dict]:
    m = int(pool.groupby(QUERY_ID).size().min())
    ns = n_grid(m)
    res = curves(pool, ["oracle", name], ROUGEL, ns)
    o, c = res["oracle"].mean, res[name].mean
    share = (c[-1] - c[0]) / (o[-1] - o[0])
    fit = fit_law(pool, name, m_fit=m, tau=TAU)
    std = float(np.std(scorer_values(pool, name, ROUGEL)))
    card = ModelCard(task=task, variant=variant, mu=fit.mu, c=fit.c, sigma_eff=fit.sigma_eff, rho_eff=fit.rho_eff,
                     score_std=std, tau=TAU, share=float(share), n=m)
    extra = {"queries": res["oracle"].n_queries, "m": m, "first": c[0], "last": c[-1], "oracle": o[-1]}
    return card, extra


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="Directory holding git-commits/ and debian-synopsis/.")
    ap.add_argument("--results", type=Path, default=Path("results"), help="Directory of the committed pools.")
    args = ap.parse_args()
    t0 = time.time()
    pools, data = {}, {}
    for task in TASKS:
        for split in ("train", "test"):
            pools[task, split] = read_pool(args.results / task / f"{split}.parquet", require=[ROUGEL])
            data[task, split] = stages.dataset_for_pool(args.data / task, pools[task, split], split)
    groups = {task: [task] for task in TASKS} | {AGNOSTIC: list(TASKS)}
    scored = {task: pools[task, "test"].copy() for task in TASKS}
    cards = []
    for group, tasks in groups.items():
        train = pd.concat([pools[t, "train"] for t in tasks], ignore_index=True)
        train_data = _merged([data[t, "train"] for t in tasks]) if len(tasks) > 1 else data[tasks[0], "train"]
        for variant in VARIANTS:
            cfg = RMConfig(variant=variant, encoder_layers=2, encoder_dtype="auto")
            out = MODELS_DIR / group / variant
            enc = stages.default_encoder("auto", 2)
            rm = stages.train_rm(cfg, train, train_data, encoder=enc)  # early stopping on held-out training users
            rm.tasks_ = (AGNOSTIC,) if group == AGNOSTIC else tuple(tasks)  # `any`: usable on every task
            rm.save(out)
            (out / "training.json").unlink()  # the wheel ships weights and config only
            name = f"{group}-{variant}" if group == AGNOSTIC else variant
            for t in tasks:
                scored[t] = stages.score_pool(scored[t], rm, data[t, "test"], name=f"bundled-{name}", encoder=enc)
            test = pd.concat([scored[t] for t in tasks], ignore_index=True)
            card, extra = _card(test, f"bundled-{name}", group, variant)
            cards.append(card)
            (out / "card.json").write_text(json.dumps({"card": asdict(card), "trained_on": list(tasks)}, indent=2) + "\n")
            cards_md = CARD.format(variant=variant, task=group, n_features=len(cfg.features), dtype=cfg.encoder_dtype,
                                   trained_on=", ".join(f"`{t}` train pool ({len(pools[t, 'train'])} candidates)" for t in tasks),
                                   tested_on=" and ".join(f"`{t}`" for t in tasks), share=card.share, mu=card.mu, c=card.c,
                                   sigma=card.sigma_eff, rho=card.rho_eff, **extra)
            (out / "README.md").write_text(cards_md)
            print(f"{group}/{variant}: share {card.share:.3f} of the oracle gain at N={card.n} ({time.time() - t0:.0f} s)", flush=True)
    for task in TASKS:
        path = args.results / "bundled" / task / "test.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        cols = [c for c in scored[task].columns
                if not c.startswith(("score_", "std_")) or c.startswith((score_col("bundled-"), std_col("bundled-")))]
        write_pool(scored[task][cols], path)


if __name__ == "__main__":
    main()
