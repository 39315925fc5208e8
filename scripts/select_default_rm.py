"""Choose the shipped default reward model by cross-validation over the train pools' users.

    python scripts/select_default_rm.py --data ../shared/data --results results

For each group of ``scripts/train_bundled.py`` (``git-commits``, ``debian-synopsis``
and ``any`` = both) and each candidate configuration (``user-pairwise`` and
``user-prob`` on MiniLM's first 2 layers or on all 6; ``--dtypes auto,float32``
adds the float32 encoder), a grouped K-fold over the users of the **train**
pools only: the users are dealt into K folds (seeded, per task, so fold k of
``any`` is fold k of each task), a model is trained on K-1 folds exactly as
``train_bundled.py`` trains it (early stopping on 20% of those training users,
held out) and scores the held-out fold's users, whom it never saw. The test
split is never read here.

Each candidate's **CV share** is the share of the oracle's best-of-N gain at
N = M = 8 (the train pools' M; the exact best-of-N estimator) over all
held-out queries, every training user held out once: sum of (E_8 - E_1)
over sum of (oracle E_8 - E_1). Its 95% interval is a bootstrap over users
(seeded), and each candidate's difference to the group's best is a paired
bootstrap on the same draws, and so is each full-encoder candidate's difference to the
same variant on 2 layers. ``--repeats R`` repeats the K-fold with R fold
seeds (``seed``, ``seed + 1``, ...; the RM's own seed stays 0, as shipped) and
averages per query.

**The rule** (:func:`choose`): the candidate with the highest CV share wins; a
candidate with a cheaper encoder replaces it only if its share is within
``--tolerance`` (default 0.01, one percentage point of the oracle gain) of the
winner's. Scoring costs milliseconds against seconds of sampling
(docs/performance.md), so speed only breaks what is a tie.

Writes ``<out>/per_query.parquet`` (one row per candidate, fold and held-out
query: the resume store, rewritten after each cell; finished cells are skipped
on a rerun),
``<out>/cv.csv`` and ``<out>/cv.md`` (default ``<results>/bundled/cv``).
Embeddings go through the persistent encoder cache
(``~/.cache/ttpkit/embeddings``), one encoder per depth and dtype.
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ttpkit import stages
from ttpkit.paths import embeddings_cache_file
from ttpkit.pool import QUERY_ID, ROUGEL, USER_ID, read_pool
from ttpkit.reward.bundled import AGNOSTIC, CV_NS, agnostic_dataset
from ttpkit.reward.encoder import Encoder
from ttpkit.reward.models import RMConfig
from ttpkit.scaling import per_query_curve
from ttpkit.scaling._bootstrap import user_share_boot

TASKS = ("git-commits", "debian-synopsis")
VARIANTS = ("user-pairwise", "user-prob")
LAYERS = (2, 6)
NS = CV_NS
KEY = ["group", "candidate", "repeat", "fold"]


@dataclass(frozen=True)
class Candidate:
    """One configuration under test: an RM variant on an encoder of ``layers`` layers in ``dtype``."""

    variant: str
    layers: int
    dtype: str

    @property
    def name(self) -> str:
        """``<variant>-L<layers>`` (``-f32`` for the float32 encoder)."""
        return f"{self.variant}-L{self.layers}" + ("-f32" if self.dtype == "float32" else "")

    @property
    def cost(self) -> tuple[int, int]:
        """Scoring cost order: layers first, then float32 after bf16 (``auto``)."""
        return self.layers, int(self.dtype == "float32")

    def config(self) -> RMConfig:
        """The RM configuration ``train_bundled.py`` would ship for it."""
        return RMConfig(variant=self.variant, encoder_layers=self.layers, encoder_dtype=self.dtype)


def deal_folds(pools: dict[str, pd.DataFrame], k: int, seed: int) -> dict[str, int]:
    """Each user's fold in 0..k-1: per task, the sorted users permuted by ``seed`` and dealt round-robin."""
    folds = {}
    for i, task in enumerate(sorted(pools)):
        users = np.array(sorted(pools[task][USER_ID].unique()))
        order = np.random.default_rng([seed, i]).permutation(len(users))
        folds.update({str(users[j]): pos % k for pos, j in enumerate(order)})
    return folds


def run_cell(cand: Candidate, tasks: list[str], fold: int, folds: dict[str, int], pools: dict, data: dict,
             enc: Encoder) -> pd.DataFrame:
    """Train ``cand`` on the users outside ``fold`` and return the per-query curves of the fold's users."""
    held = {t: pools[t][USER_ID].map(folds).eq(fold) for t in tasks}
    train = pd.concat([pools[t][~held[t]] for t in tasks], ignore_index=True)
    train_data = agnostic_dataset([data[t] for t in tasks]) if len(tasks) > 1 else data[tasks[0]]
    rm = stages.train_rm(cand.config(), train, train_data, encoder=enc)  # early stopping on held-out training users
    rows = []
    for t in tasks:
        test = stages.score_pool(pools[t][held[t]], rm, data[t], name="cv", encoder=enc)
        qids, pq = per_query_curve(test, "cv", ROUGEL, NS)
        _, oq = per_query_curve(test, "oracle", ROUGEL, NS)
        users = test.groupby(QUERY_ID)[USER_ID].first().loc[qids]
        frame = pd.DataFrame({"task": t, USER_ID: users.to_numpy(), QUERY_ID: qids})
        for j, n in enumerate(NS):
            frame[f"e{n}"] = pq[:, j]
            frame[f"o{n}"] = oq[:, j]
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def user_bootstrap(per_query: pd.DataFrame, names: list[str], n: int, n_boot: int, seed: int) -> tuple[dict, np.ndarray]:
    """CV share at N=``n`` of each candidate over its held-out queries (averaged over repeats), and (B, C) resampled."""
    q = per_query.groupby([USER_ID, QUERY_ID, "candidate"])[[f"e{n}", "e1", f"o{n}", "o1"]].mean()
    gain = (q[f"e{n}"] - q["e1"]).unstack("candidate")[names]  # (Q, C)
    ogain = (q[f"o{n}"] - q["o1"]).unstack("candidate")[names[0]]  # the same for every candidate
    share, boot = user_share_boot(gain.to_numpy().T, ogain.to_numpy(), gain.index.get_level_values(USER_ID).to_numpy(),
                                  n_boot, seed)
    return dict(zip(names, map(float, share))), boot


def choose(table: pd.DataFrame, tolerance: float) -> str:
    """The rule: the highest CV share; a cheaper candidate within ``tolerance`` of it replaces it."""
    best = table.loc[table["share"].idxmax()]
    close = table[table["share"] >= best["share"] - tolerance]
    return str(close.sort_values(["layers", "float32", "share"], ascending=[True, True, False]).iloc[0]["candidate"])


def summarize(per_query: pd.DataFrame, cands: list[Candidate], args: argparse.Namespace) -> pd.DataFrame:
    """One row per group and candidate: CV share, its interval, folds' spread, paired difference to the best, winner."""
    rows = []
    for group, pq in per_query.groupby("group", sort=False):
        names = [c.name for c in cands if c.name in set(pq["candidate"])]
        share, boot = user_bootstrap(pq, names, NS[-1], args.n_boot, args.seed)
        best = max(names, key=share.get)
        ib = names.index(best)
        fold_share = pq.groupby(["candidate", "repeat", "fold"]).apply(
            lambda f: (f["e8"] - f["e1"]).sum() / (f["o8"] - f["o1"]).sum(), include_groups=False)
        for i, c in enumerate(names):
            cand = next(x for x in cands if x.name == c)
            lo, hi = np.nanquantile(boot[:, i], [0.025, 0.975])
            dlo, dhi = np.nanquantile(boot[:, i] - boot[:, ib], [0.025, 0.975])
            shallow = c.replace(f"-L{cand.layers}", f"-L{LAYERS[0]}")  # the same variant and dtype on 2 layers
            j = names.index(shallow) if shallow in names and shallow != c else None
            vs = (share[c] - share[shallow], *np.nanquantile(boot[:, i] - boot[:, j], [0.025, 0.975])) if j is not None \
                else (np.nan, np.nan, np.nan)
            rows.append({"group": group, "candidate": c, "variant": cand.variant, "layers": cand.layers,
                         "float32": int(cand.dtype == "float32"), "share": share[c], "lo": lo, "hi": hi,
                         "fold_mean": fold_share.loc[c].mean(), "fold_sd": fold_share.loc[c].std(),
                         "diff_to_best": share[c] - share[best], "diff_lo": dlo, "diff_hi": dhi,
                         "vs_l2": vs[0], "vs_l2_lo": vs[1], "vs_l2_hi": vs[2],
                         "users": pq[USER_ID].nunique(), "queries": pq[QUERY_ID].nunique(), "folds": args.k,
                         "repeats": args.repeats})
    table = pd.DataFrame(rows)
    table["chosen"] = False
    for group, t in table.groupby("group", sort=False):
        table.loc[(table["group"] == group) & (table["candidate"] == choose(t, args.tolerance)), "chosen"] = True
    return table


def markdown(table: pd.DataFrame, args: argparse.Namespace) -> str:
    """The CV table as markdown, with the rule and the command."""
    lines = [f"Grouped {args.k}-fold CV over the train pools' users ({args.repeats} fold seed(s) from {args.seed}), "
             f"share of the oracle gain at N=8, 95% bootstrap CI over users ({args.n_boot} draws, seed {args.seed}).",
             f"Rule: highest CV share; a cheaper encoder within {args.tolerance:.2f} of it replaces it.", "",
             "| group | candidate | CV share [95% CI] | folds mean ± sd | vs best [95% CI] | vs 2 layers [95% CI] | users "
             "| chosen |",
             "|---|---|---:|---:|---:|---:|---:|:---:|"]
    for r in table.itertuples():
        vs = "" if np.isnan(r.vs_l2) else f"{r.vs_l2:+.3f} [{r.vs_l2_lo:+.3f}, {r.vs_l2_hi:+.3f}]"
        lines.append(f"| {r.group} | {r.candidate} | {r.share:.3f} [{r.lo:.3f}, {r.hi:.3f}] | {r.fold_mean:.3f} ± {r.fold_sd:.3f} "
                     f"| {r.diff_to_best:+.3f} [{r.diff_lo:+.3f}, {r.diff_hi:+.3f}] | {vs} | {r.users} | {'✓' if r.chosen else ''} |")
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="Directory holding git-commits/ and debian-synopsis/.")
    ap.add_argument("--results", type=Path, default=Path("results"), help="Directory of the committed pools.")
    ap.add_argument("--out", type=Path, default=None, help="Output directory (default: <results>/bundled/cv).")
    ap.add_argument("--k", type=int, default=5, help="Folds.")
    ap.add_argument("--repeats", type=int, default=1, help="K-folds with fold seeds seed, seed+1, ...")
    ap.add_argument("--seed", type=int, default=0, help="Seed of the folds and of the bootstrap.")
    ap.add_argument("--dtypes", default="auto", help="Encoder dtypes to try (auto, float32).")
    ap.add_argument("--groups", default=",".join((*TASKS, AGNOSTIC)), help="Groups to run.")
    ap.add_argument("--n-boot", type=int, default=2000, help="Bootstrap draws over users.")
    ap.add_argument("--tolerance", type=float, default=0.01, help="Share within which the cheaper encoder is preferred.")
    ap.add_argument("--cache", type=Path, default=None, help="Embedding cache file (default: ttpkit's persistent one).")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: the MLPs are tiny, and on a shared 2-core box 2 threads thrash).")
    return ap.parse_args()


def run_cells(args: argparse.Namespace, cands: list[Candidate], groups: dict[str, list[str]], store: Path) -> None:
    """Run every (group, candidate, repeat, fold) cell that ``store`` does not hold yet, saving it after each."""
    pools = {t: read_pool(args.results / t / "train.parquet", require=[ROUGEL]) for t in TASKS}
    data = {t: stages.dataset_for_pool(args.data / t, pools[t], "train") for t in TASKS}
    done = pd.read_parquet(store) if store.exists() else None
    finished = set() if done is None else set(map(tuple, done[KEY].astype(str).to_numpy()))
    encoders: dict[tuple[int, str], Encoder] = {}  # one per depth and dtype, over one cache file
    cells = [(g, ts, c, r, f) for g, ts in groups.items() for c in cands for r in range(args.repeats) for f in range(args.k)]
    t0 = time.time()
    for i, (group, tasks, cand, r, fold) in enumerate(cells):
        if (group, cand.name, str(r), str(fold)) in finished:
            continue
        folds = deal_folds(pools, args.k, args.seed + r)
        if (cand.layers, cand.dtype) not in encoders:
            cache = args.cache or embeddings_cache_file()
            encoders[cand.layers, cand.dtype] = Encoder(cache_file=cache, dtype=cand.dtype, layers=cand.layers)
        cell = run_cell(cand, tasks, fold, folds, pools, data, encoders[cand.layers, cand.dtype])
        cell = cell.assign(group=group, candidate=cand.name, repeat=r, fold=fold)
        cell = cell[KEY + [c for c in cell.columns if c not in KEY]]
        done = cell if done is None else pd.concat([done, cell], ignore_index=True)
        done.to_parquet(store.with_suffix(".tmp"), index=False)
        store.with_suffix(".tmp").replace(store)  # a killed run keeps every finished cell
        share = (cell["e8"] - cell["e1"]).sum() / (cell["o8"] - cell["o1"]).sum()
        print(f"[{i + 1}/{len(cells)}] {group} {cand.name} repeat {r} fold {fold}: share {share:.3f} "
              f"({len(cell)} queries, {time.time() - t0:.0f} s)", flush=True)


def main() -> None:
    args = parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    import torch

    torch.set_num_threads(args.threads)
    out = args.out or args.results / "bundled" / "cv"
    out.mkdir(parents=True, exist_ok=True)
    store = out / "per_query.parquet"
    cands = [Candidate(v, layers, d) for d in args.dtypes.split(",") for layers in LAYERS for v in VARIANTS]
    groups = {g: [g] if g != AGNOSTIC else list(TASKS) for g in args.groups.split(",")}
    run_cells(args, cands, groups, store)
    per_query = pd.read_parquet(store)
    per_query = per_query[per_query["group"].isin(groups) & per_query["candidate"].isin([c.name for c in cands])
                          & (per_query["repeat"] < args.repeats)]
    table = summarize(per_query, cands, args)
    table.to_csv(out / "cv.csv", index=False, float_format="%.4f")
    (out / "cv.md").write_text(markdown(table, args))
    print(markdown(table, args))


if __name__ == "__main__":
    main()
