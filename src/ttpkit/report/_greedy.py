"""Best-of-N against the greedy answer (:func:`ttpkit.scaling.versus_greedy`): a table, Markdown and a plot."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ttpkit.report._draw import _plot_over_n, _table
from ttpkit.scaling import VersusGreedy


def _headroom(results: Mapping[str, VersusGreedy], name: str, i: int) -> str:
    """The scorer's gain as a share of the oracle's gain over greedy at the same N.

    Blank without an oracle row, and where the oracle's own gain is not clearly above greedy (its CI
    reaches 0): a share of a headroom that may not exist means nothing.
    """
    oracle = results.get("oracle")
    if oracle is None or name == "oracle" or oracle.lo[i] <= 0:
        return ""
    return f" {results[name].gain[i] / oracle.gain[i]:.0%}"


def greedy_table(results: Mapping[str, VersusGreedy], utility: str = "rougeL") -> Any:
    """A rich Table: per scorer and N, best-of-N's utility, its paired gain over greedy [95% CI] and win/tie/loss.

    The last column gives the share of the oracle's headroom over greedy at that N.
    """
    first = next(iter(results.values()))
    mode = "greedy + N-1 samples" if first.mode == "with-greedy" else "N samples"
    title = (f"best-of-N ({mode}) against greedy: {utility} {first.greedy:.3f} on {first.n_queries} queries "
             "(paired 95% CI; win/tie/loss against greedy)")
    table = _table(title, "scorer", list(results), ["N", "mean", "minus greedy [95% CI]", "win/tie/loss", "of oracle"])
    for name, r in results.items():
        for i, n in enumerate(r.ns):
            table.add_row(name if i == 0 else "", str(n), f"{r.mean[i]:.3f}", f"{r.gain[i]:+.3f} [{r.lo[i]:+.3f}, {r.hi[i]:+.3f}]",
                          f"{r.win[i]:.0%}/{r.tie[i]:.0%}/{r.loss[i]:.0%}", _headroom(results, name, i).strip())
    return table


def greedy_markdown(results: Mapping[str, VersusGreedy]) -> str:
    """The same in Markdown: one row per scorer and N."""
    lines = ["| scorer | N | best-of-N | minus greedy [95% CI] | win / tie / loss | share of oracle headroom |",
             "|---|---:|---:|---|---|---:|"]
    for name, r in results.items():
        for i, n in enumerate(r.ns):
            lines.append(f"| {name} | {n} | {r.mean[i]:.3f} | {r.gain[i]:+.3f} [{r.lo[i]:+.3f}, {r.hi[i]:+.3f}] | "
                         f"{r.win[i]:.0%} / {r.tie[i]:.0%} / {r.loss[i]:.0%} | {_headroom(results, name, i).strip()} |")
    return "\n".join(lines) + "\n"


def greedy_json(results: Mapping[str, VersusGreedy]) -> dict[str, Any]:
    """``{scorer: {mode, greedy, queries, by_n: {N: {mean, gain, lo, hi, win, tie, loss}}}}``."""
    return {name: {"mode": r.mode, "greedy": r.greedy, "queries": r.n_queries, "by_n": {str(n): r.at(n) for n in r.ns}}
            for name, r in results.items()}


def plot_versus_greedy(results: Mapping[str, VersusGreedy], path: str | Path, utility: str = "rougeL", title: str = "") -> Path:
    """Gain over greedy against N (log2 axis), one line per scorer with its 95% band; zero is greedy."""
    first = next(iter(results.values()))
    series = [(name, r.ns, r.gain, r.lo, r.hi) for name, r in results.items()]
    return _plot_over_n(series, path, f"{utility} minus greedy's",
                        title or f"best-of-N against greedy ({first.greedy:.3f}), {first.n_queries} queries", zero=True)
