"""The forecasting protocol of the law's forms (docs/results.md, "Forecasting the curve from 8 candidates").

Every form is fitted on the first M_fit candidates of each query and scored against the curve observed on all
M: the synthetic populations of ttpkit.scaling (M = 64, 400 queries), the M = 64 pools of the failure study
(style, the bundled RMs and mbr), and the committed M = 16 test pools (the paper study's cache, the
bundled-RM pools, the main-results pools and the long-form ablation). Test pools are only scored, never tuned on:
the dist form's settings were fixed on the synthetic populations first.

    python scripts/forecast_law.py --out results/forecast [--m64 DIR]   (about 15 min on 2 cores)

--m64 (default results/forecast/m64) holds git-commits-64.parquet and debian-synopsis-64.parquet:
results/failures/*/test64.parquet (which carry only style) scored by
`ttpkit score --rm default|default:user-prob|mbr --pool <copy> --data ../shared/data/<set> --split test`.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import pandas as pd

from ttpkit.pool import candidates_per_query, scorer_names
from ttpkit.report import forecast_markdown, plot_forecast_errors
from ttpkit.scaling import KINDS, forecast, synthetic_pool

ROOT = Path(__file__).resolve().parents[1]


def _real_pools(m64: Path | None) -> dict[str, pd.DataFrame]:
    pools = {}
    for f in sorted(glob.glob(str(ROOT / "results/paper/cache/scored-*.parquet"))):
        pools[f"paper/{Path(f).stem}"] = pd.read_parquet(f)
    for name in ("git-commits", "debian-synopsis"):
        pools[f"main/{name}"] = pd.read_parquet(ROOT / f"results/{name}/test.parquet")
        pools[f"bundled/{name}"] = pd.read_parquet(ROOT / f"results/bundled/{name}/test.parquet")
    pools["long-form/ablation"] = pd.read_parquet(ROOT / "results/long-form/ablation/test.parquet")
    for name in ("git-commits", "debian-synopsis"):
        path = (m64 / f"{name}-64.parquet") if m64 else ROOT / f"results/failures/{name}/test64.parquet"
        pools[f"m64/{name}"] = pd.read_parquet(path)
    return pools


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "forecast")
    ap.add_argument("--m64", type=Path, default=ROOT / "results" / "forecast" / "m64")
    ap.add_argument("--boot", type=int, default=100, help="bootstrap resamples of the dist band")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--render", action="store_true", help="only re-render forecast.md and the plot from forecast.csv")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.render:
        return _render(pd.read_csv(args.out / "forecast.csv"), args.out)
    rows = []
    for kind in KINDS:
        pool = synthetic_pool(kind, seed=args.seed)
        for m_fit in (4, 8):
            t = forecast(pool, ["rm"], m_fit=m_fit, n_boot=args.boot, seed=args.seed)
            rows.append(t.assign(source="synthetic", pool=kind))
            print(f"synthetic {kind} M_fit={m_fit}: dist err {t['err_dist'].iloc[0]:.3f}", flush=True)
    for name, pool in _real_pools(args.m64).items():
        scorers = [s for s in scorer_names(pool) if s != "random"]
        m = candidates_per_query(pool)
        for m_fit in (4, 8):
            if m_fit >= m:
                continue
            t = forecast(pool, scorers, m_fit=m_fit, n_boot=args.boot, seed=args.seed)
            rows.append(t.assign(source="real", pool=name))
            print(f"{name} M_fit={m_fit}: {len(t)} curves, dist err ≤ 10% on {(t['err_dist'] <= 0.1).mean():.0%}", flush=True)
    table = pd.concat(rows, ignore_index=True)
    table.to_csv(args.out / "forecast.csv", index=False)
    _render(table, args.out)


def _render(table: pd.DataFrame, out: Path) -> None:
    (out / "forecast.md").write_text(forecast_markdown(table))
    plot_forecast_errors(table, out / "forecast_errors.png")
    print(f"wrote {out}/forecast.csv, forecast.md and forecast_errors.png")


if __name__ == "__main__":
    main()
