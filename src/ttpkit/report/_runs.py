"""One run's own output: a personalization (``ttpkit personalize``), the demo's example query, an RM's training losses."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from ttpkit.pool import GREEDY, QUERY_ID, ROUGEL, TEXT, score_col
from ttpkit.report._draw import _finish, _pyplot, _table


def personalized_table(res: Any) -> Any:
    """The candidates of a :class:`ttpkit.online.Personalized` record: score (± std), the chosen one marked."""
    table = _table(f"{res.n} candidates, rule {res.rule}", "#", [str(c.idx) for c in res.candidates], ["score", "", "candidate"])
    table.columns[-1].justify = "left"
    for c in res.candidates:
        score = f"{c.score:.3f}" + ("" if c.std is None else f" ± {c.std:.3f}")
        table.add_row(str(c.idx), score, "◀" if c.idx == res.chosen else "", c.text)
    return table


def personalized_notes(res: Any) -> list[str]:
    """What the law expects for this user (when known), then the run's cost and reward model, one line each."""
    from ttpkit.reward.bundled import MODELS_DIR  # lazily: importing ttpkit.reward loads the model libraries

    lines = []
    e = res.expected
    if e is not None:
        lines.append("this user's scores barely vary (collapsed): expect about what one sample gives" if e.collapsed else
                     f"the law expects best-of-{e.n} to add {e.gain:+.3f} ROUGE-L over one sample for this user "
                     f"(this RM recovers {e.share:.0%} of the oracle gain on its test users)")
    where = Path(res.rm)
    rm_name = f"bundled {where.relative_to(MODELS_DIR)}" if where.is_relative_to(MODELS_DIR) else res.rm
    lines.append(f"{res.n} candidates in {res.rounds} round{'s' if res.rounds > 1 else ''}, {res.seconds:.1f} s; RM {rm_name}")
    return lines


def demo_example_lines(example: pd.DataFrame, by_id: Mapping[str, Any]) -> list[str]:
    """The demo's example query (rich markup): its reference, then each candidate's RM score, ROUGE-L and text, picks marked.

    Args:
        example: One query's candidates with ``score_rm``, ``rougeL`` and ``text``.
        by_id: ``{query_id: query}`` of the data set (for the reference).
    """
    qid = example[QUERY_ID].iloc[0]
    pick, best = example[score_col("rm")].idxmax(), example[ROUGEL].idxmax()
    lines = [f"\nquery {qid}: reference [italic]{by_id[qid].reference}[/]"]
    for i, row in example.iterrows():
        mark = ("greedy " if bool(row.get(GREEDY, False)) else "") + ("RM pick " if i == pick else "") + ("oracle pick" if i == best else "")
        lines.append(f"  {row[score_col('rm')]:+.2f}  {row[ROUGEL]:.2f}  {row[TEXT][:60]}  [bold]{mark}[/]")
    return [*lines, "  (RM score, then rougeL)"]


def plot_training(history: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """Plot a reward model's train and dev loss against the step; write a PNG.

    Args:
        history: One dict per evaluation with ``epoch``, ``train_loss`` and ``dev_loss``.
        path: PNG to write.
        title: Figure title (default ``training``).
    """
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5), dpi=110)
    steps = [h["epoch"] for h in history]
    ax.plot(steps, [h["train_loss"] for h in history], label="train")
    ax.plot(steps, [h["dev_loss"] for h in history], label="dev")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title or "training")
    return _finish(fig, ax, path)
