"""Train the reward models shipped in the wheel (``--rm default``) and write their cards.

    python scripts/train_bundled.py --data ../shared/data --results results

For git-commits and debian-synopsis: ``user-pairwise`` and ``user-prob`` trained on
the task's full train pool (early stopping on 20% of its training users, held out:
the dev split stays unseen, so ``ttpkit demo``, whose bundled sample comes from
dev, shows the models on users they never met); and the task-agnostic pair
(``any``) trained on both train pools together. All use ``encoder_dtype: auto``
(bf16 where the CPU has it) and, by default, all 6 of MiniLM's layers: the
configuration that held up best on training users it never saw in
``scripts/select_default_rm.py``'s cross-validation (docs/performance.md,
"Choosing the default reward model"); ``--layers`` sets the depth, for all
models or per ``<group>/<variant>``. Each model is then scored on its task's
test pool (``any``: on both), and ``card.json`` / ``README.md`` record the share
of the oracle gain with a bootstrap interval over the test users, the law's
quantities and, under ``"cv"``, the model's cross-validated share from
``<results>/bundled/cv/cv.csv``. The scored test pools go to
``<results>/bundled/<task>/test.parquet`` (the adaptive-N evaluation reads them).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from ttpkit import stages
from ttpkit.pool import ROUGEL, read_pool, score_col, std_col, write_pool
from ttpkit.reward.bundled import AGNOSTIC, CV_NS, DEFAULT_VARIANTS, MODELS_DIR, RM_VARIANTS, ModelCard, agnostic_dataset, measure_card
from ttpkit.reward.encoder import Encoder
from ttpkit.reward.models import RMConfig

TASKS = ("git-commits", "debian-synopsis")
VARIANTS = ("user-pairwise", "user-prob")

CARD = """# Bundled reward model: `{variant}` for `{task}`

- **What it is**: a ttpkit personalized reward model (`{variant}`), a 2-layer MLP over
  {n_features} features of a candidate, its input and the user's profile; the embedding
  features use {depth} of all-MiniLM-L6-v2, scored in `{dtype}`
  (`auto`: bf16 where the CPU has native bf16, else float32).
- **Trained on**: {trained_on}; early stopping on 20% of the training users, held
  out. Users of the dev and test splits are never seen.
- **Cross-validated**: {cv}
- **Measured on** the test users of {tested_on} ({queries} queries of {users} users, pools of {m} Gemma 3 270M
  candidates): best-of-{m} recovers **{share:.0%} of the oracle gain** (95% bootstrap interval over the
  test users {lo:.0%}–{hi:.0%}; expected ROUGE-L {first:.3f} at N=1, {last:.3f} at N={m}; oracle {oracle:.3f}).
  Law quantities: μ̄ {mu:.3f}, c {c:.2f}, σ_eff {sigma:.3f}, ρ_eff {rho:.3f}.
- **Retrain**: `python scripts/train_bundled.py --data ../shared/data --results results`
  (all six models: {minutes} on 2 CPU cores, load average {load:.1f}, when this card was written).
- **Limits**: short outputs only (commit subjects, package synopses); on another task use
  the `any` model, whose share on each task is in its card.
"""


def _cv_entry(table: pd.DataFrame | None, group: str, cfg: RMConfig, test: dict) -> dict:
    """The card's ``"cv"`` object: this configuration's row of the CV table (if it was cross-validated), and the test share."""
    entry: dict = {"test": {"share": test["share"], "lo": test["lo"], "hi": test["hi"], "n": test["m"],
                            "users": test["users"], "queries": test["queries"], "interval": "95% bootstrap over test users"}}
    name = f"{cfg.variant}-L{cfg.encoder_layers or Encoder.N_LAYERS}" + ("-f32" if cfg.encoder_dtype == "float32" else "")
    row = None if table is None else table[(table["group"] == group) & (table["candidate"] == name)]
    if row is None or row.empty:
        return entry | {"candidate": name, "cross_validated": False}
    r = row.iloc[0]
    return entry | {"candidate": name, "cross_validated": True, "share": float(r["share"]), "lo": float(r["lo"]),
                    "hi": float(r["hi"]), "n": CV_NS[-1], "users": int(r["users"]), "folds": int(r["folds"]),
                    "repeats": int(r["repeats"]), "chosen": bool(r["chosen"]),
                    "best": table.loc[(table["group"] == group) & table["chosen"], "candidate"].iloc[0],
                    "command": "python scripts/select_default_rm.py --data ../shared/data --results results --repeats 3 "
                               "--dtypes auto,float32"}


def _cv_sentence(cv: dict, group: str, variant: str) -> str:
    if not cv.get("cross_validated"):
        return f"no cross-validation: `{cv['candidate']}` is not in `results/bundled/cv/cv.csv`."
    if cv["chosen"]:
        verdict = (f"the best of the configurations tried, so it is the reward model of `{group}`'s `--rm default`"
                   + (" (the stacked ranker over it, `models/<task>/stacked`)" if DEFAULT_VARIANTS.get(group) == "stacked" else ""))
    else:
        verdict = (f"`--rm default` for `{group}` is the CV's choice, `{cv['best']}`; this model is "
                   f"`--rm default:{variant}`")
    pools = "train pools" if group == AGNOSTIC else "train pool"
    return (f"grouped {cv['folds']}-fold cross-validation ({cv['repeats']} fold seeds) over the {cv['users']} users "
            f"of the {pools} (`scripts/select_default_rm.py`, docs/performance.md): `{cv['candidate']}` recovers "
            f"**{cv['share']:.0%} of the oracle gain** at N={cv['n']} on users it never saw (95% bootstrap "
            f"interval over users {cv['lo']:.0%}–{cv['hi']:.0%}); {verdict}.")


def _layers(spec: str) -> dict[str, int]:
    """``6`` or ``6,git-commits/user-prob=2``: ``{"*": 6, "git-commits/user-prob": 2}`` (argparse type)."""
    out = {}
    for part in spec.split(","):
        key, _, value = part.rpartition("=")
        if not value.isdigit() or not 1 <= int(value) <= Encoder.N_LAYERS:
            raise argparse.ArgumentTypeError(f"{part!r}: want L or <group>/<variant>=L with L in 1..{Encoder.N_LAYERS}")
        out[key or "*"] = int(value)
    if "*" not in out:
        raise argparse.ArgumentTypeError(f"{spec!r}: start with the depth of every model, e.g. 6,{spec}")
    return out


def _write_card(out: Path, card: ModelCard, cfg: RMConfig, group: str, tasks: list[str], extra: dict, cv: dict,
                pools: dict, minutes: str, load: float) -> None:
    (out / "card.json").write_text(json.dumps({"card": asdict(card), "trained_on": list(tasks), "cv": cv}, indent=2) + "\n")
    layers = cfg.encoder_layers
    depth = "all 6 layers" if layers is None else f"the first {layers} of the 6 layers"
    cards_md = CARD.format(variant=card.variant, task=group, n_features=len(cfg.features), dtype=cfg.encoder_dtype, depth=depth,
                           trained_on=", ".join(f"`{t}` train pool ({len(pools[t, 'train'])} candidates)" for t in tasks),
                           tested_on=" and ".join(f"`{t}`" for t in tasks), share=card.share, mu=card.mu, c=card.c,
                           sigma=card.sigma_eff, rho=card.rho_eff, cv=_cv_sentence(cv, group, card.variant), minutes=minutes, load=load,
                           **extra)
    (out / "README.md").write_text(cards_md)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="Directory holding git-commits/ and debian-synopsis/.")
    ap.add_argument("--results", type=Path, default=Path("results"), help="Directory of the committed pools.")
    ap.add_argument("--layers", type=_layers, default="6", help="MiniLM layers of every model, then <group>/<variant>=L overrides "
                                                  "(6 = all, the CV's choice; e.g. 6,any/user-prob=2).")
    ap.add_argument("--dtype", default="auto", help="encoder_dtype of the shipped models.")
    args = ap.parse_args()
    layers = args.layers
    known = {f"{g}/{v}" for g in (*TASKS, AGNOSTIC) for v in VARIANTS}
    if set(layers) - known - {"*"}:
        ap.error(f"--layers: unknown model {sorted(set(layers) - known - {'*'})[0]!r}; known: {', '.join(sorted(known))}")
    cv_csv = args.results / "bundled" / "cv" / "cv.csv"
    cv_table = pd.read_csv(cv_csv) if cv_csv.exists() else None
    if cv_table is not None:
        for group, name in cv_table.loc[cv_table["chosen"], ["group", "candidate"]].itertuples(index=False):
            if not name.startswith(RM_VARIANTS[group] + "-L"):
                print(f"warning: the CV chose {name} for {group}, but the RM default there is {RM_VARIANTS[group]} "
                      "(ttpkit.reward.bundled.RM_VARIANTS)", flush=True)
    t0 = time.time()
    pools, data = {}, {}
    for task in TASKS:
        for split in ("train", "test"):
            pools[task, split] = read_pool(args.results / task / f"{split}.parquet", require=[ROUGEL])
            data[task, split] = stages.dataset_for_pool(args.data / task, pools[task, split], split)
    groups = {task: [task] for task in TASKS} | {AGNOSTIC: list(TASKS)}
    scored = {task: pools[task, "test"].copy() for task in TASKS}
    written = []
    for group, tasks in groups.items():
        train = pd.concat([pools[t, "train"] for t in tasks], ignore_index=True)
        train_data = agnostic_dataset([data[t, "train"] for t in tasks]) if len(tasks) > 1 else data[tasks[0], "train"]
        for variant in VARIANTS:
            depth = layers.get(f"{group}/{variant}", layers["*"])
            cfg = RMConfig(variant=variant, encoder_layers=depth, encoder_dtype=args.dtype)
            out = MODELS_DIR / group / variant
            enc = stages.default_encoder(args.dtype, cfg.encoder_layers)
            rm = stages.train_rm(cfg, train, train_data, encoder=enc)  # early stopping on held-out training users
            rm.tasks_ = (AGNOSTIC,) if group == AGNOSTIC else tuple(tasks)  # `any`: usable on every task
            rm.save(out)
            (out / "training.json").unlink()  # the wheel ships weights and config only
            name = f"{group}-{variant}" if group == AGNOSTIC else variant
            for t in tasks:
                scored[t] = stages.score_pool(scored[t], rm, data[t, "test"], name=f"bundled-{name}", encoder=enc)
            test = pd.concat([scored[t] for t in tasks], ignore_index=True)
            card, extra = measure_card(test, f"bundled-{name}", group, variant)
            cv = _cv_entry(cv_table, group, cfg, {"share": card.share, **extra})
            written.append((out, card, cfg, group, tasks, extra, cv))
            print(f"{group}/{variant} ({cv['candidate']}): test share {card.share:.3f} [{extra['lo']:.3f}, {extra['hi']:.3f}] "
                  f"at N={card.n}, CV share {cv.get('share', float('nan')):.3f} ({time.time() - t0:.0f} s)", flush=True)
    minutes = "{:d} min {:02d} s".format(*divmod(round(time.time() - t0), 60))
    for out, card, cfg, group, tasks, extra, cv in written:  # at the end, so the cards state the whole run's time
        _write_card(out, card, cfg, group, tasks, extra, cv, pools, minutes, os.getloadavg()[0])
    for task in TASKS:
        path = args.results / "bundled" / task / "test.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        cols = [c for c in scored[task].columns
                if not c.startswith(("score_", "std_")) or c.startswith((score_col("bundled-"), std_col("bundled-")))]
        write_pool(scored[task][cols], path)


if __name__ == "__main__":
    main()
