"""Rendering: tables, plots and reports of what :mod:`ttpkit.scaling` computed. No analysis lives here.

Terminal tables stay readable at 80 columns: scorer names are never cut, and
wide tables are split rather than squeezed. matplotlib is imported only when a
plot is drawn.

- :mod:`ttpkit.report._draw`: shared pieces: rich tables, number cells
  (``n/a`` for NaN), saving PNGs. :func:`write_json` is :func:`ttpkit.jsonio.write_json`
  (NaN and inf written as ``null``), re-exported.
- :mod:`ttpkit.report._curves`: best-of-N curves (table, JSON, Markdown,
  plot) and adaptive stopping against fixed N.
- :mod:`ttpkit.report._greedy`: best-of-N against the greedy answer (table,
  Markdown, JSON, plot of the gain over greedy).
- :mod:`ttpkit.report._runs`: one run's output: a personalization's
  candidates and notes, the demo's example query, and a reward model's
  training losses.
- :mod:`ttpkit.report._diagnosis`: a :class:`ttpkit.scaling.Diagnosis`
  (tables, the peak in words, law plots, ``report.md`` and ``law.json``) and
  ``law_forms.md``, the law forms' fit over many curves; ``forecast.md``, the
  forecasting protocol (:mod:`ttpkit.report._forecast`).
- :mod:`ttpkit.report._studies`: study results: tables per data set and
  policy, the share of the oracle gain per regime, the law scatter and the
  reliability plot.
"""

from __future__ import annotations

from ttpkit.jsonio import write_json
from ttpkit.report._curves import adaptive_markdown, curves_json, curves_markdown, curves_table, plot_adaptive, plot_curves
from ttpkit.report._diagnosis import (
    diagnosis_tables,
    law_forms_markdown,
    law_summary_markdown,
    peak_sentence,
    plot_law_grid,
    write_diagnosis,
)
from ttpkit.report._greedy import greedy_json, greedy_markdown, greedy_table, plot_versus_greedy
from ttpkit.report._forecast import forecast_markdown, plot_forecast_errors
from ttpkit.report._runs import demo_example_lines, personalized_notes, personalized_table, plot_training
from ttpkit.report._studies import plot_law_scatter, plot_reliability, regime_tables, study_markdown, study_tables

__all__ = [
    "adaptive_markdown",
    "curves_json",
    "curves_markdown",
    "curves_table",
    "demo_example_lines",
    "diagnosis_tables",
    "law_forms_markdown",
    "forecast_markdown",
    "greedy_json",
    "greedy_markdown",
    "greedy_table",
    "plot_versus_greedy",
    "plot_forecast_errors",
    "law_summary_markdown",
    "peak_sentence",
    "personalized_notes",
    "personalized_table",
    "plot_adaptive",
    "plot_curves",
    "plot_law_grid",
    "plot_law_scatter",
    "plot_reliability",
    "plot_training",
    "regime_tables",
    "study_markdown",
    "study_tables",
    "write_diagnosis",
    "write_json",
]
