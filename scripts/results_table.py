"""Print the Markdown tables of docs/results.md from a scored test pool and its diagnosis.

    python scripts/results_table.py runs/git-commits/test.parquet runs/git-commits/report/law.json SCORER [SCORER ...]
"""

from __future__ import annotations

import json
import sys

from ttpkit.pool import IDX, QUERY_ID, ROUGEL, n_grid, read_pool
from ttpkit.scaling import curves, scorer_values
from ttpkit.utility import within_query_corr


def main(pool_path: str, law_path: str, scorers: list[str]) -> None:
    pool = read_pool(pool_path)
    m = int(pool.groupby(QUERY_ID)[IDX].nunique().min())
    ns = n_grid(m)
    res = curves(pool, scorers, ROUGEL, ns)
    oracle = res["oracle"].mean
    mean, gain = oracle[0], oracle[-1] - oracle[0]
    print(f"{res['oracle'].n_queries} test queries, pools of {m}; expected ROUGE-L of best-of-N (95% CI half-width at N={ns[-1]})\n")
    print("| scorer | " + " | ".join(f"N={n}" for n in ns) + f" | ±CI N={ns[-1]} | frac. oracle gain N={ns[-1]} | within-query corr | monotone |")
    print("|---|" + "---:|" * (len(ns) + 4))
    u = pool[ROUGEL].to_numpy()
    g = pool[QUERY_ID].to_numpy()
    for name, c in res.items():
        corr = 1.0 if name == "oracle" else within_query_corr(scorer_values(pool, name, ROUGEL), u, g)
        mono = all(b >= a - 1e-9 for a, b in zip(c.mean, c.mean[1:]))
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in c.mean)
              + f" | {(c.hi[-1] - c.lo[-1]) / 2:.3f} | {(c.mean[-1] - mean) / gain:.0%} | {corr:.3f} | {'yes' if mono else 'no'} |")
    law = json.loads(open(law_path).read())
    print(f"\nLaw measured on M_fit={law['settings']['m_fit']} candidates per query, predicting N=1..{max(int(k) for k in next(iter(law['scorers'].values()))['predicted']['plain'])}; "
          f"R² and max error (fraction of the oracle gain) over the observed N up to {m}.\n")
    print("| scorer | μ̄ | c | σ̄ | ρ̄ | ρ_eff | hacked | R² plain | R² tail | R² log | max err plain | max err tail | max err log |")
    print("|---|" + "---:|" * 12)
    for name, e in law["scorers"].items():
        q = e["quantities"]
        r2 = lambda f: "n/a" if e["r2"][f] != e["r2"][f] else f"{e['r2'][f]:.2f}"  # noqa: E731
        err = lambda f: f"{e['max_error_frac_of_oracle_gain'][f]:.0%}"  # noqa: E731
        print(f"| {name} | {q['mu']:.3f} | {q['c']:.2f} | {q['sigma']:.3f} | {q['rho']:.3f} | {q['rho_eff']:.3f} | {q['hacked']:.2f} | "
              f"{r2('plain')} | {r2('tail')} | {r2('log')} | {err('plain')} | {err('tail')} | {err('log')} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
