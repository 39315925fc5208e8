"""The failure study (``ttpkit bench`` with ``kind: failures``): where reward models stop paying as N grows, and which fix helps.

A regime is a test pool plus the conditions it is scored under: which pools the
reward models were trained on (another task, another policy, fewer queries),
how many candidates per query (large N), how much of the user's profile the
scorers may see (cold start). Every regime is scored by every method of
:data:`METHODS`, one row each: how it scores, what it tunes on dev, and the
base its paired CI is against. Every setting is chosen on the regime's dev
pool under ordinary conditions, never on test (:mod:`ttpkit.studies._measure`).

Outputs: ``regimes.csv`` (curves, share of the oracle gain, collapse and hacking
per regime x method), ``paired.csv`` (each fix against its base: difference in
the share of the oracle gain at the largest N, paired bootstrap 95% CI over
queries), ``calibration.csv``/``.json`` (ensemble and judge scores are first
mapped to utility units by an affine fit on dev), ``tuning.json``,
``examples.json``, ``law_forms.csv``/``.md`` (every law form fitted on M_fit = 4
and 8 candidates against every observed curve: :func:`ttpkit.scaling.law_table`),
``reliability.png``, and per regime a plot of the curves and one of the law forms.
With ``forecast_boot`` > 0, also ``forecast.csv``/``.md``: the forecasting protocol
(:func:`ttpkit.scaling.forecast`, every form fitted on the first M_fit = 8
candidates and scored against all M, the dist band from that many bootstrap
resamples) on every curve that moves; each regime's rows are written to
``forecast/<regime>.csv`` as soon as they are computed, so an interrupted run
keeps the regimes it finished.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ttpkit import jsonio, stages
from ttpkit.engine import Engine
from ttpkit.manifest import record_study
from ttpkit.paths import check_writable, writing
from ttpkit.pool import ROUGEL, candidates_per_query, n_grid
from ttpkit.report import forecast_markdown, law_forms_markdown, plot_curves, plot_law_grid, plot_reliability
from ttpkit.scaling import curves, forecast, law_table
from ttpkit.studies import _measure
from ttpkit.studies._failure_config import FailureStudy, PoolRef, RegimeSpec  # the config classes, re-exported: KINDS names them here
from ttpkit.studies._scoring import DET, JudgeModel, RegimeModels, check_refs, judged_columns, load_ref, scored_pool

__all__ = ["METHODS", "FailureStudy", "Method", "PoolRef", "RegimeSpec", "run_failures"]

LAW_M_FIT = (4, 8)  # candidates per query the law forms are fitted on (those the pools allow)
FORECAST_M_FIT = (8,)  # candidates per query the forecasting protocol fits on (the target of docs/results.md)


@dataclass(frozen=True)
class Method:
    """One method of the failure study, a row of :data:`METHODS`.

    Attributes:
        label: Its name in the tables (``{ens}`` stands for the ensemble's label, ``ens<members>``).
        scorer: The scorer it ranks by, with tuned settings in braces (``user-prob@lcb:{kappa:g}``).
        base: The method its paired CI is against (``None``: not a fix).
        needs: ``cross`` or ``judge``: only in regimes that score with those.
        capped: Its curve caps N on queries that look hacked (``cap`` tuned on dev).
        measured_as: The scorer whose collapse and hacking it reports (default: its own).
        plot: Drawn in the regime's curve plot.
        law_plot: Drawn in the regime's law plot.
    """

    label: str
    scorer: str
    base: str | None = None
    needs: str | None = None
    capped: bool = False
    measured_as: str | None = None
    plot: bool = False
    law_plot: bool = False

    def resolve(self, tuned: dict[str, float], ens: str) -> Method:
        """This method with its label and scorer filled in for the regime's tuned settings."""
        return dataclasses.replace(self, label=self.label.format(ens=ens), scorer=self.scorer.format(ens=ens, **tuned),
                                   base=self.base and self.base.format(ens=ens))


METHODS: tuple[Method, ...] = (  # the row order of regimes.csv
    Method("random", "random", plot=True),
    Method("style", "style", law_plot=True),
    Method("mbr", "mbr", base=DET, plot=True, law_plot=True),  # pool consensus, no training
    Method("global-mse", "global-mse"),  # a deterministic RM without the user's profile features
    Method("user-mse", "user-mse"),
    Method(DET, DET, plot=True, law_plot=True),  # the deterministic RM every fix is compared with
    Method("user-prob", "user-prob", base=DET, plot=True, law_plot=True),  # the probabilistic RM
    Method("user-prob@lcb", "user-prob@lcb:{kappa:g}", base=DET),
    Method("user-prob@ucb", "user-prob@ucb:{kappa:g}", base=DET),
    Method("{ens}", "{ens}", base=DET, plot=True, law_plot=True),  # members seeds of user-pairwise
    Method("{ens}@lcb", "{ens}@lcb:{lambda:g}", base=DET),
    Method("{ens}-min", "{ens}-min", base=DET, plot=True),  # the members' worst case
    Method("soft", DET + "@soft:{tau:g}", base=DET, plot=True),  # soft best-of-N
    Method("reg", "reg", base=DET, plot=True, law_plot=True),  # z(user-pairwise) + beta z(mbr)
    Method("backoff", "backoff", base=DET, plot=True),  # mbr for users user-pairwise looks collapsed for
    Method("cross", "cross", base=DET, needs="cross"),  # MiniLM fine-tuned as a cross-encoder
    Method("cross-prob", "cross-prob", base=DET, needs="cross"),
    Method("cross-prob@lcb", "cross-prob@lcb:{kappa_cross:g}", base=DET, needs="cross"),
    Method("oracle", "oracle", plot=True),
    Method("backoff+cap", "backoff+cap:{cap}", base=DET, capped=True, measured_as="backoff"),
    Method("judge", "judge", needs="judge"),  # the LLM judge's argmax rating
    Method("judge-prob", "judge-prob", base="judge", needs="judge"),  # its rating distribution
    Method("judge-prob@lcb", "judge-prob@lcb:{kappa_judge:g}", base="judge", needs="judge"),
)


def _methods(study: FailureStudy, spec: RegimeSpec, tuned: dict[str, float]) -> dict[str, Method]:
    """The regime's methods by label, resolved for its tuned settings (cross and judge only where it scores them)."""
    has = {"cross": "kappa_cross" in tuned, "judge": "kappa_judge" in tuned}
    resolved = [m.resolve(tuned, study.ensemble_label) for m in METHODS if m.needs is None or has[m.needs]]
    return {m.label: m for m in resolved}


def _test_curves(test: pd.DataFrame, methods: dict[str, Method], ns: tuple[int, ...], cap: int, seed: int) -> dict:
    res = curves(test, [m.scorer for m in methods.values() if not m.capped], ROUGEL, ns, seed=seed)
    for m in methods.values():
        if m.capped:
            res[m.scorer] = _measure.capped(test, ns, cap, m.measured_as, seed)
    return res


def _regime(study: FailureStudy, spec: RegimeSpec, out: Path, encoder: Any, progress: stages.Progress,
            judge: JudgeModel, engine: Engine | None = None) -> dict[str, Any]:
    """Score one regime's dev and test pools with every method and measure them."""
    models, ens = RegimeModels(study, spec, out, encoder, engine), study.ensemble_label
    progress.note(f"{spec.name}: tuning on {spec.dev}")
    dev_ref, test_ref = study.pools[spec.dev], study.pools[spec.test]
    dev = scored_pool(out, models, dev_ref, None, None)
    tuned = _measure.tune(dev, ens)
    progress.note(f"{spec.name}: scoring {spec.test} ({tuned})")
    test = scored_pool(out, models, test_ref, spec.profile_items, tuned["beta"])
    if spec.judge and study.judge:
        progress.note(f"{spec.name}: LLM judge")
        dev = dev.join(judged_columns(out, study, dev_ref, None, progress, judge))
        test = test.join(judged_columns(out, study, test_ref, spec.profile_items, progress, judge))
        tuned.update(_measure.tune(dev, ens, keys=["kappa_judge"]))
    ns = n_grid(candidates_per_query(test))
    methods = _methods(study, spec, tuned)
    res = _test_curves(test, methods, ns, int(tuned["cap"]), study.seed)
    rows, paired = _measure.method_rows(spec.name, methods, res, test, ns, study.seed)
    cal = _measure.calibration_rows(spec.name, ("user-prob", ens, "cross-prob", "judge-prob"), dev, test, res)
    progress.note(f"{spec.name}: law forms")
    by_scorer = {m.scorer: label for label, m in methods.items() if not m.capped}
    law, diags = law_table(test, list(by_scorer), ROUGEL, [f for f in LAW_M_FIT if f <= max(ns)] or [max(ns)], ns, study.seed)
    law.insert(0, "method", law["scorer"].map(by_scorer))
    law.insert(0, "regime", spec.name)
    refs = {q.id: q.reference for q in load_ref(test_ref).queries}
    return {"rows": rows, "paired": paired, "calibration": cal, "tuned": tuned, "methods": methods, "curves": res,
            "law": law, "law_diagnosis": diags[max(diags)], "examples": _measure.examples(test, spec.name, refs),
            "forecast": _forecast(study, spec, test, law, progress)}


def _forecast(study: FailureStudy, spec: RegimeSpec, test: pd.DataFrame, law: pd.DataFrame, progress: stages.Progress) -> pd.DataFrame:
    """The forecasting protocol on the regime's moving curves at each M_fit below M (empty without ``forecast_boot``)."""
    moving = law[law["moves"] & ~law["method"].isin(["oracle", "random"])]
    m = candidates_per_query(test)
    if not study.forecast_boot or moving.empty:
        return pd.DataFrame()
    progress.note(f"{spec.name}: forecasting {moving['scorer'].nunique()} curves")
    parts = []
    for m_fit in sorted({int(f) for f in moving["m_fit"] if 3 <= f < m and f in FORECAST_M_FIT}):
        rows = moving[moving["m_fit"] == m_fit]
        t = forecast(test, list(rows["scorer"]), ROUGEL, m_fit=m_fit, n_boot=study.forecast_boot, seed=study.seed)
        parts.append(t.assign(method=list(rows["method"]), source=study.name, pool=spec.name))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _plot_regime(out: Path, name: str, r: dict[str, Any]) -> None:
    methods, diag = r["methods"], r["law_diagnosis"]
    plot_curves({label: r["curves"][m.scorer] for label, m in methods.items() if m.plot}, out / f"curves_{name}.png", ROUGEL, title=name)
    law = [m.scorer for m in methods.values() if m.law_plot and m.scorer in diag.scorers]
    plot_law_grid(diag, law, out / f"law_{name}.png", title=f"{name}: observed vs every law form (M_fit={diag.m_fit})")


def _write(out: Path, results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """The study's tables, JSON files and reliability plot from every regime's results (a failed write names ``out``)."""
    with writing(out, "study results", "the study's cache is kept; make room and rerun to write them"):
        return _write_files(out, results)


def _write_files(out: Path, results: dict[str, dict[str, Any]]) -> pd.DataFrame:
    gather = lambda key: [row for r in results.values() for row in r[key]]  # noqa: E731
    table = pd.DataFrame(gather("rows"))
    table.to_csv(out / "regimes.csv", index=False)
    law_forms = pd.concat([r["law"] for r in results.values()], ignore_index=True)
    law_forms.to_csv(out / "law_forms.csv", index=False)
    (out / "law_forms.md").write_text(law_forms_markdown(law_forms), encoding="utf-8")
    if any(not r["forecast"].empty for r in results.values()):
        fc = pd.concat([r["forecast"] for r in results.values()], ignore_index=True)
        fc.to_csv(out / "forecast.csv", index=False)
        (out / "forecast.md").write_text(forecast_markdown(fc), encoding="utf-8")
    pd.DataFrame(gather("paired")).to_csv(out / "paired.csv", index=False)
    cal = gather("calibration")
    pd.DataFrame(cal).drop(columns=["bins_std", "bins_rmse"]).to_csv(out / "calibration.csv", index=False)
    jsonio.write_json(cal, out / "calibration.json", indent=1)
    plot_reliability(cal, out / "reliability.png")
    jsonio.write_json({k: r["tuned"] for k, r in results.items()}, out / "tuning.json")
    jsonio.write_json(gather("examples"), out / "examples.json", indent=1, ensure_ascii=False)
    return table


def run_failures(study: FailureStudy, out: str | Path, progress: stages.Progress | None = None, encoder: Any = None,
                 engine: Engine | None = None) -> pd.DataFrame:
    """Run every regime and write the results directory (see the module docstring); returns ``regimes.csv``'s table.

    Args:
        study: The study.
        out: Results directory (``out/cache`` holds RMs and scored pools).
        progress: Where to report progress (default: nowhere).
        encoder: Sentence encoder (default: :func:`ttpkit.stages.default_encoder`).
        engine: Where the RM variants score the pools (default: here); the study samples nothing.
    """
    progress = progress or stages.NullProgress()
    out = check_writable(out, "results", directory=True)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    study.check_models()
    check_refs(study)
    record_study(out, {"study": dataclasses.asdict(study)})
    encoder = encoder or stages.default_encoder()
    judge = JudgeModel(study.judge)
    results = {}
    for spec in study.regimes:
        results[spec.name] = _regime(study, spec, out, encoder, progress, judge, engine)
        if not results[spec.name]["forecast"].empty:  # the slow part, kept if a later regime is interrupted
            (out / "forecast").mkdir(exist_ok=True)
            results[spec.name]["forecast"].to_csv(out / "forecast" / f"{spec.name}.csv", index=False)
        _plot_regime(out, spec.name, results[spec.name])
    return _write(out, results)
