"""The renderers of :mod:`ttpkit.report`, per subject, on small synthetic pools (no model loads).

The law forms' and the adaptive Markdown must stay byte-identical to what the
renderers wrote before their analysis moved to :mod:`ttpkit.scaling._summary`:
verbatim copies of the old functions live at the end of this file, for that
comparison only.
"""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from ttpkit.jsonio import dumps
from ttpkit.report import (
    adaptive_markdown,
    curves_json,
    curves_markdown,
    curves_table,
    demo_example_lines,
    diagnosis_tables,
    law_forms_markdown,
    peak_sentence,
    personalized_notes,
    personalized_table,
    plot_adaptive,
    plot_curves,
    plot_law_grid,
    plot_law_scatter,
    plot_reliability,
    plot_training,
    regime_tables,
    study_markdown,
    study_tables,
    write_diagnosis,
    write_json,
)
from ttpkit.scaling import FORMS, adaptive_curve, curves, diagnose, law_table
from ttpkit.scaling._summary import cost_matched, law_targets, peak_targets

PNG = b"\x89PNG\r\n\x1a\n"


def _pool(n_queries=24, m=16, b=-0.03, seed=0):
    """Pools whose utility bends in the score's quantile z (a z + b (z² - 1)); ``rm`` tracks z, ``flat`` is constant
    for users 0-1 (collapsed), and ``anti`` is minus z (hacked)."""
    rng = np.random.default_rng(seed)
    frames = []
    for q in range(n_queries):
        z = rng.standard_normal(m)
        util = rng.uniform(0.15, 0.35) + 0.06 * z + b * (z**2 - 1) + 0.01 * rng.standard_normal(m)
        user = q // 4
        frames.append(pd.DataFrame({"query_id": f"q{q}", "user_id": f"u{user}", "idx": np.arange(m), "text": f"t{q}",
                                    "rougeL": util, "score_rm": z, "score_anti": -z,
                                    "score_flat": np.full(m, 0.5) if user < 2 else z + rng.standard_normal(m)}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def pool():
    return _pool()


@pytest.fixture(scope="module")
def diag(pool):
    return diagnose(pool, ["random", "rm", "anti", "flat"], ns=[1, 2, 4, 8, 16], max_n=16)


def _rendered(table, width=80) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None, legacy_windows=False)
    console.print(table)
    return console.file.getvalue().splitlines()


def _fits(table, names, width=80) -> None:
    """The table renders within ``width`` columns, and every row name starts exactly one line (no row wraps)."""
    lines = _rendered(table, width)
    assert all(len(line) <= width for line in lines), lines
    body = [line for line in lines if line.strip()]
    for name in names:
        assert sum(line.split()[0] == name for line in body if line.split()) == 1, (name, lines)
    rule = next(i for i, line in enumerate(body) if set(line.strip()) <= set("━─ "))
    assert len(body) - rule - 1 == len(names), lines  # one line per row


# --- curves -----------------------------------------------------------------------------------


def test_curves_table_splits_the_n_columns_to_fit_80_columns(pool):
    ns = [1, 2, 3, 4, 8, 16]
    cs = curves(pool, ["oracle", "random", "rm"], "rougeL", ns, n_boot=20)
    one = curves_table(curves(pool, ["oracle", "rm"], "rougeL", ns[:4], n_boot=20))
    assert type(one).__name__ == "Table" and len(one.columns) == 5  # what fits stays one table
    _fits(one, ["oracle", "rm"])
    for names in (["oracle", "random", "rm"], ["oracle", "bundled-user-pairwise"]):
        renamed = {name: cs[list(cs)[i]] for i, name in enumerate(names)}
        tables = curves_table(renamed).renderables
        assert len(tables) > 1 and [c.header for t in tables for c in t.columns[1:]] == [f"N={n}" for n in ns]
        for t in tables:
            _fits(t, names)
        assert tables[0].title.startswith("expected rougeL of best-of-N") and not tables[1].title


def test_a_curve_of_one_query_has_no_interval_rather_than_plus_minus_zero(pool):
    one = pool[pool["query_id"] == "q0"]
    text = " ".join(" ".join(_rendered(curves_table(curves(one, ["oracle", "rm"], "rougeL", [1, 2, 4], n_boot=20)))).split())
    assert "1 query: no interval" in text and "±n/a" in text and "±0.000" not in text


def test_curves_renderers(pool, tmp_path):
    cs = curves(pool, ["oracle", "random", "rm", "anti"], "rougeL", [1, 2, 4, 8, 16], n_boot=20)
    data = curves_json(cs)
    assert json.loads(json.dumps(data, allow_nan=False)) == data
    assert set(data) == set(cs) and set(data["rm"]) == {"1", "2", "4", "8", "16"}
    md = curves_markdown(cs).splitlines()
    assert md[0] == "| scorer | N=1 | N=2 | N=4 | N=8 | N=16 |" and len(md) == 2 + len(cs)
    assert md[2 + list(cs).index("rm")] == "| rm | " + " | ".join(f"{v:.3f}" for v in cs["rm"].mean) + " |"
    assert plot_curves(cs, tmp_path / "c" / "curves.png").read_bytes().startswith(PNG)
    path = write_json(data, tmp_path / "j" / "curves.json")
    assert path.read_text().endswith("}\n") and json.loads(path.read_text()) == data


def _adaptive(pool):
    fixed, rows = {}, []
    for task, part in (("a", pool), ("b", pool[pool["user_id"] != "u0"])):
        fixed[task] = curves(part, ["rm"], "rougeL", list(range(1, 17)), n_boot=10)["rm"]
        table = adaptive_curve(part, "rm", [0.5, 0.1, 0.0], "rougeL", round_size=4, n_orders=5)
        table.insert(0, "task", task)
        rows.append(table)
    return pd.concat(rows, ignore_index=True), fixed


def test_adaptive_markdown_is_unchanged_and_only_formats(pool, tmp_path):
    table, fixed = _adaptive(pool)
    assert adaptive_markdown(table, fixed) == _old_adaptive_markdown(table, fixed)
    matched = cost_matched(table, fixed)
    assert list(matched.columns[: len(table.columns)]) == list(table.columns)
    assert (matched["fixed_at_max_n"] == [fixed[t].mean[-1] for t in table["task"]]).all()
    full = matched[matched["mean_n"] == 16]  # at the full cost, the fixed curve's last point
    assert np.allclose(full["fixed_at_cost"], full["fixed_at_max_n"])
    assert plot_adaptive(fixed["a"], table[table["task"] == "a"], tmp_path / "adaptive.png").read_bytes().startswith(PNG)


# --- one run: personalize, training -----------------------------------------------------------


def test_personalized_table_marks_the_chosen_candidate():
    cands = [SimpleNamespace(idx=i, score=s, std=sd, text=t)
             for i, (s, sd, t) in enumerate([(0.1, None, "a short one"), (0.7, 0.05, "the pick"), (0.3, 0.1, "x" * 200)])]
    res = SimpleNamespace(n=3, rule="lcb:1", candidates=cands, chosen=1)
    lines = _rendered(personalized_table(res))
    assert all(len(line) <= 80 for line in lines)
    assert any("0.700 ± 0.050" in line and "◀" in line and "the pick" in line for line in lines)
    assert sum("◀" in line for line in lines) == 1 and any("0.100 " in line for line in lines)


def test_personalized_notes_say_what_the_law_expects_and_what_the_run_cost():
    from ttpkit.reward.bundled import MODELS_DIR

    expected = SimpleNamespace(collapsed=False, n=8, gain=0.0312, share=0.41)
    res = SimpleNamespace(expected=expected, rm=str(MODELS_DIR / "git-commits" / "user-pairwise"), n=8, rounds=2, seconds=1.26)
    assert personalized_notes(res) == [
        "the law expects best-of-8 to add +0.031 ROUGE-L over one sample for this user "
        "(this RM recovers 41% of the oracle gain on its test users)",
        "8 candidates in 2 rounds, 1.3 s; RM bundled git-commits/user-pairwise"]
    one = SimpleNamespace(expected=SimpleNamespace(collapsed=True), rm="my/rm", n=1, rounds=1, seconds=0.5)
    assert personalized_notes(one) == ["this user's scores barely vary (collapsed): expect about what one sample gives",
                                       "1 candidates in 1 round, 0.5 s; RM my/rm"]
    assert personalized_notes(SimpleNamespace(expected=None, rm="x", n=4, rounds=1, seconds=2.0)) == [
        "4 candidates in 1 round, 2.0 s; RM x"]


def test_demo_example_lines_mark_the_picks():
    example = pd.DataFrame({"query_id": "q7", "idx": range(3), "text": ["a", "b" * 100, "c"],
                            "rougeL": [0.1, 0.5, 0.2], "score_rm": [0.3, -0.2, 0.9]})
    lines = demo_example_lines(example, {"q7": SimpleNamespace(reference="the ref")})
    assert lines[0] == "\nquery q7: reference [italic]the ref[/]" and lines[-1] == "  (RM score, then rougeL)"
    assert lines[1:4] == ["  +0.30  0.10  a  [bold][/]", f"  -0.20  0.50  {'b' * 60}  [bold]oracle pick[/]",
                          "  +0.90  0.20  c  [bold]RM pick [/]"]


def test_plot_training_writes_a_png(tmp_path):
    history = [{"epoch": e, "train_loss": 1 / (e + 1), "dev_loss": 1.2 / (e + 1)} for e in range(5)]
    assert plot_training(history, tmp_path / "t" / "training.png").read_bytes().startswith(PNG)


# --- diagnosis --------------------------------------------------------------------------------


def test_diagnosis_tables_fit_80_columns(diag):
    tables = diagnosis_tables(diag)
    assert len(tables) == 3
    for t in tables:
        _fits(t, list(diag.scorers))
    r2 = "\n".join(_rendered(tables[1]))
    assert all(f in r2 for f in FORMS) and "n/a" in r2  # random's flat curve has no R²


def test_peak_sentence_names_the_peaks(diag):
    text = peak_sentence(diag, "rm")
    p = diag.scorers["rm"].predicted_peak
    assert text.startswith(f"predicted peak at N≈{p.n}" if p.inside else "no peak predicted up to")
    seen = diag.scorers["rm"].observed_peak
    assert ("observed peak at" in text) == bool(seen.inside)


def test_write_diagnosis_writes_report_law_and_plots(diag, tmp_path):
    law = write_diagnosis(diag, tmp_path / "d")
    out = tmp_path / "d"
    for name in ("report.md", "law.json", "rho_hist.png"):
        assert (out / name).exists(), name
    for slug in ("oracle", "random", "rm", "anti", "flat"):
        assert (out / f"law_{slug}.png").read_bytes().startswith(PNG)
        assert (out / f"collapsed_{slug}.csv").exists() and (out / f"hacked_{slug}.csv").exists()
    assert json.loads((out / "law.json").read_text()) == json.loads(dumps(law))  # NaN written as null
    report = (out / "report.md").read_text()
    assert report.startswith("# ttpkit diagnosis\n") and report.endswith("![rho histogram](rho_hist.png)\n\n")
    rows = [line for line in report.splitlines() if line.startswith("| ") and line.split(" | ")[0][2:] in diag.scorers]
    assert [r.split(" | ")[0][2:] for r in rows] == list(diag.scorers)
    assert all(r.endswith(f" | {diag.scorers[r.split(' | ')[0][2:]].recommended_n} |") for r in rows)
    assert "Collapsed users (2): u0" in report  # flat is constant for users 0 and 1
    assert f"Hacked queries (ρ_q < -0.1): {diag.n_queries} of {diag.n_queries}." in report  # anti = -z
    assert "| query | ρ_q | top-scored | best | reference |" in report


def test_plot_law_grid_writes_a_png(diag, tmp_path):
    path = plot_law_grid(diag, ["rm", "anti", "flat", "random"], tmp_path / "grid.png", title="grid")
    assert path.read_bytes().startswith(PNG)


def _synthetic_law_table(seed=0) -> pd.DataFrame:
    """A law table as the failure study writes it, with moving curves, flat ones, NaN R² and observed peaks."""
    rng = np.random.default_rng(seed)
    rows = []
    for regime in ("r1", "r2"):
        for method in ("oracle", "random", "a", "b", "c", "d"):
            for m_fit in (4, 8):
                inside = bool(rng.random() < 0.6)
                row = {"regime": regime, "method": method, "scorer": method, "m_fit": m_fit, "moves": bool(rng.random() < 0.7),
                       "share": rng.random(), "form": str(rng.choice(["tail", "bend"])), "b": -0.01, "b_hi": 0.0,
                       "obs_peak": int(rng.choice([2, 4, 8])) if inside else 16, "obs_inside": inside,
                       "obs_drop": rng.random() / 10, "obs_drop_lo": rng.normal(0, 0.01), "obs_drop_hi": 0.02}
                for f in FORMS:
                    row[f"r2_{f}"] = float("nan") if rng.random() < 0.1 else rng.uniform(0.8, 1.0)
                    row[f"err_{f}"] = rng.uniform(0, 0.2)
                    row[f"peak_{f}"] = int(rng.choice([1, 2, 4, 8, 16]))
                    row[f"falls_{f}"] = bool(rng.random() < 0.5)
                rows.append(row)
    return pd.DataFrame(rows)


def test_law_forms_markdown_is_unchanged_on_a_synthetic_table():
    table = _synthetic_law_table()
    assert law_forms_markdown(table) == _old_law_forms_markdown(table)
    assert law_forms_markdown(table, m_fit=4) == _old_law_forms_markdown(table, m_fit=4)
    assert law_forms_markdown(table.iloc[:0]) == _old_law_forms_markdown(table.iloc[:0])


def test_law_forms_markdown_is_unchanged_on_a_real_law_table(pool):
    law, _ = law_table(pool, ["random", "rm", "anti", "flat"], "rougeL", (4,), [1, 2, 4, 8, 16])
    law.insert(0, "method", law["scorer"])
    law.insert(0, "regime", "r")
    assert law["moves"].any() and law["obs_inside"].any()  # both summaries have rows
    md = law_forms_markdown(law, m_fit=4)
    assert md == _old_law_forms_markdown(law, m_fit=4)
    shown = [line.split(" | ")[1] for line in md.split("## Every curve")[1].split("## Observed peaks")[0].splitlines() if line.startswith("| r |")]
    assert shown == ["rm", "anti", "flat"]  # oracle and random are left out


def test_law_targets_and_peak_targets_count_shares():
    table = _synthetic_law_table()
    targets = law_targets(table)
    kept = table[~table["method"].isin(["oracle", "random"]) & table["moves"]]
    assert list(targets["form"].unique()) == [*FORMS, "trusted", "best"]
    for m_fit, g in kept.groupby("m_fit"):
        tail = targets[(targets["m_fit"] == m_fit) & (targets["form"] == "tail")].iloc[0]
        assert tail["curves"] == len(g) and tail["r2_ok"] == pytest.approx((g["r2_tail"] >= 0.95).mean())
        best = targets[(targets["m_fit"] == m_fit) & (targets["form"] == "best")].iloc[0]
        assert best["r2_ok"] >= targets[(targets["m_fit"] == m_fit) & targets["form"].isin(FORMS)]["r2_ok"].max()
    peaks = peak_targets(table)
    assert list(peaks["form"].unique()) == [*FORMS, "trusted"]
    assert ((0 <= peaks["within"]) & (peaks["within"] <= 1) & (peaks["significant"] <= peaks["peaks"])).all()


# --- studies ----------------------------------------------------------------------------------


def test_study_tables_and_markdown():
    ns = [f"N={n}" for n in (1, 2, 4, 8, 16)]
    rows = [{"dataset": d, "policy": p, "scorer": s, **{n: 0.2 + 0.01 * i for i, n in enumerate(ns)},
             "frac_oracle_gain": float("nan") if s == "oracle@lcb:1" else 0.5, "corr": 0.25}
            for d in ("lamp4", "git-commits") for p in ("gemma3-270m",) for s in ("oracle", "user-prob@lcb:1", "oracle@lcb:1")]
    table = pd.DataFrame(rows)
    tables = study_tables(table)
    assert len(tables) == 2
    for t in tables:
        _fits(t, ["oracle", "user-prob@lcb:1", "oracle@lcb:1"])
    md = study_markdown(table).splitlines()
    assert md[0] == "| " + " | ".join(table.columns) + " |" and len(md) == 2 + len(table)
    assert md[2] == "| lamp4 | gemma3-270m | oracle | 0.200 | 0.210 | 0.220 | 0.230 | 0.240 | 0.500 | 0.250 |"


def test_regime_tables_split_regimes_to_fit_80_columns():
    methods = ["random", "mbr", "user-prob", "ens5-min", "oracle"]
    regimes = [f"regime-{i}" for i in range(6)]
    table = pd.DataFrame([{"regime": r, "method": m, "share": float("nan") if m == "random" else 0.1 * i}
                          for r in regimes for i, m in enumerate(methods)])
    tables = regime_tables(table, per_table=4)
    assert [len(t.columns) - 1 for t in tables] == [4, 2]
    for t in tables:
        _fits(t, methods)
    assert "regime-5" in "\n".join(_rendered(tables[1]))


def test_study_plots_write_pngs(tmp_path):
    points = pd.DataFrame({"policy": ["p", "p", "q"], "scorer": ["a", "b", "a"], "n": [1, 2, 4],
                           "observed": [0.1, 0.2, 0.3], "predicted": [0.12, 0.19, 0.31]})
    assert plot_law_scatter(points, tmp_path / "scatter.png").read_bytes().startswith(PNG)
    rows = [{"regime": r, "model": m, "bins_std": [0.1, 0.2], "bins_rmse": [0.12, 0.25]} for r in ("r1", "r2") for m in ("x", "y")]
    assert plot_reliability(rows, tmp_path / "rel" / "reliability.png").read_bytes().startswith(PNG)


# --- verbatim copies of the renderers before the analysis moved out (for the comparisons above only) ---


def _old_num(v, fmt=".2f"):
    return "n/a" if v != v else format(v, fmt)


def _old_adaptive_markdown(table, fixed):
    lines = ["| task | threshold | mean samples | expected rougeL (95% CI) | fixed N at that cost | fixed N=16 |",
             "|---|---:|---:|---|---:|---:|"]
    for r in table.itertuples():
        f = fixed[r.task]
        at = float(np.interp(r.mean_n, f.ns, f.mean))
        lines.append(f"| {r.task} | {r.threshold:g} | {r.mean_n:.1f} | {r.utility:.4f} ({r.lo:.4f}..{r.hi:.4f}) | "
                     f"{at:.4f} | {f.mean[-1]:.4f} |")
    return "\n".join(lines) + "\n"


def _old_law_summary_markdown(table):
    forms = list(FORMS)
    t = table[~table["method"].isin(["oracle", "random"])]
    lines = ["## Summary\n",
             "Over the curves that move by more than their 95% CI: the share that each form fits with R² ≥ .95, with a "
             "max error ≤ 10% of the oracle gain, and both; `trusted` is the form the diagnosis uses (`bend` when its "
             "curvature is below 0 with 95% confidence, else `tail`); `best` picks the best form per curve after seeing "
             "it (an upper bound, not a method).\n",
             "| M_fit | curves | form | R² ≥ .95 | err ≤ 10% | both | median R² |", "|---:|---:|---|---:|---:|---:|---:|"]
    for m_fit, g in t[t["moves"]].groupby("m_fit"):
        cols = {f: (g[f"r2_{f}"], g[f"err_{f}"]) for f in forms}
        cols["trusted"] = (g.apply(lambda r: r[f"r2_{r['form']}"], axis=1), g.apply(lambda r: r[f"err_{r['form']}"], axis=1))
        cols["best"] = (g[[f"r2_{f}" for f in forms]].max(axis=1), g[[f"err_{f}" for f in forms]].min(axis=1))
        for name, (r2, err) in cols.items():
            lines.append(f"| {m_fit} | {len(g)} | {name} | {(r2 >= .95).mean():.0%} | {(err <= .1).mean():.0%} | "
                         f"{((r2 >= .95) & (err <= .1)).mean():.0%} | {r2.median():.2f} |")
    lines += ["", "Peaks: curves whose highest point is before the largest N (`significant`: the drop's 95% CI excludes 0); "
              "the share where a form's predicted peak is within a factor 2 of the observed one, and where its "
              "prediction falls right after the observed peak.\n",
              "| M_fit | peaks | significant | form | peak N within ×2 | falls after it |", "|---:|---:|---:|---|---:|---:|"]
    for m_fit, g in t[t["obs_inside"]].groupby("m_fit"):
        for f in [*forms, "trusted"]:
            pk = g.apply(lambda r: r[f"peak_{r['form']}"], axis=1) if f == "trusted" else g[f"peak_{f}"]
            falls = g.apply(lambda r: r[f"falls_{r['form']}"], axis=1) if f == "trusted" else g[f"falls_{f}"]
            within = (pk <= 2 * g["obs_peak"]) & (pk >= g["obs_peak"] / 2)
            lines.append(f"| {m_fit} | {len(g)} | {int((g['obs_drop_lo'] > 0).sum())} | {f} | {within.mean():.0%} | {falls.mean():.0%} |")
    return lines + [""]


def _old_law_forms_markdown(table, m_fit=8):
    forms = list(FORMS)
    t = table[(table["m_fit"] == m_fit) & ~table["method"].isin(["oracle", "random"])]
    lines = ["# Law forms against the observed curves\n", *_old_law_summary_markdown(table),
             f"## Every curve (fit on M_fit={m_fit})\n",
             "R² and max error (share of the oracle gain) of every form over the observed N; `moves`: the curve moves "
             "by more than its 95% CI; the trusted form is marked *.\n",
             "| regime | method | moves | " + " | ".join(f"R² {f}" for f in forms) + " | "
             + " | ".join(f"err {f}" for f in forms) + " |",
             "|---|---|:-:|" + "---:|" * (2 * len(forms))]
    for r in t.itertuples():
        mark = lambda f, text: text + ("*" if f == r.form else "")  # noqa: E731
        lines.append(f"| {r.regime} | {r.method} | {'yes' if r.moves else 'no'} | "
                     + " | ".join(mark(f, _old_num(getattr(r, f"r2_{f}"))) for f in forms) + " | "
                     + " | ".join(mark(f, _old_num(getattr(r, f"err_{f}"), ".0%")) for f in forms) + " |")
    peaks = t[t["obs_inside"]]
    lines += ["", f"## Observed peaks (fit on M_fit={m_fit})\n",
              "Curves whose highest point is before the largest N. `drop`: from the peak to the largest N, with its paired "
              "bootstrap 95% CI; per form, the predicted peak N and whether it falls right after the observed peak.\n",
              "| regime | method | peak N | drop (95% CI) | " + " | ".join(forms) + " |",
              "|---|---|---:|---|" + "---|" * len(forms)]
    for r in peaks.itertuples():
        cells = [f"{getattr(r, f'peak_{f}')} {'↓' if getattr(r, f'falls_{f}') else '↑'}" for f in forms]
        lines.append(f"| {r.regime} | {r.method} | {r.obs_peak} | {r.obs_drop:.3f} ({r.obs_drop_lo:+.3f}..{r.obs_drop_hi:+.3f}) | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def test_law_json_of_a_flat_curve_holds_null_not_nan(tmp_path):
    """A flat observed curve has no R² (NaN); law.json writes null there, so strict parsers (jq, JavaScript) accept it."""
    flat = _pool().assign(rougeL=0.25)
    d = diagnose(flat, ["rm"], ns=[1, 2, 4, 8, 16], max_n=16)
    law = write_diagnosis(d, tmp_path / "d")
    assert "NaN" in json.dumps(law)  # the diagnosis itself has an undefined value
    text = (tmp_path / "d" / "law.json").read_text()
    json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    assert "NaN" not in text and "null" in text
