"""Coverage and CRPS of a loco suite's runs, one row per target (issue 27).

    python benchmarks/interval_table.py runs/bench/loco_blend_s0 [--seed 0]

Reads ``RUNS/runs/<target>/seed<S>/intervals.csv`` (written by every ``gpdiff run``: split conformal
intervals calibrated on the target's validation day, scored on its test period, averaged over the
horizon steps) and prints a Markdown table: GPD's empirical coverage of the 80% and 95% intervals,
GPD's CRPS against the best of the three naive baselines, the method with the lowest CRPS, and how
many methods hold both coverage ranges the issue asks for (75-85% and 91-98%).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

TARGETS = ("melbourne-ped", "nyc-taxi", "montevideo-bus", "hangzhou-metro", "la-loop")
NAIVE = ("seasonal_naive", "weekly_naive", "historical_average")
RANGES = {0.8: (0.75, 0.85), 0.95: (0.91, 0.98)}


def row(path: Path, target: str) -> str:
    d = pd.read_csv(path)
    d = d[d.horizon.astype(str) == "avg"]
    cov = d.pivot_table(index="method", columns="level", values="coverage")
    crps = d[d.level == 0.8].set_index("method").crps
    held = pd.Series(True, index=cov.index)
    for level, (lo, hi) in RANGES.items():
        held &= cov[level].between(lo, hi)
    best = crps.idxmin()
    return (f"| {target} | {100 * cov.loc['gpd', 0.8]:.1f}% | {100 * cov.loc['gpd', 0.95]:.1f}% | "
            f"{crps['gpd']:.4g} | {crps[list(NAIVE)].min():.4g} | {crps[best]:.4g} ({best}) | "
            f"{int(held.sum())} of {len(held)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("suite", type=Path, help="a bench output folder (gpdiff bench ... --out SUITE)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print("| target | GPD 80% | GPD 95% | GPD CRPS | best naive CRPS | lowest CRPS (method) | methods in both ranges |")
    print("|---|---|---|---|---|---|---|")
    for target in TARGETS:
        path = args.suite / "runs" / target / f"seed{args.seed}" / "intervals.csv"
        if path.is_file():
            print(row(path, target))


if __name__ == "__main__":
    main()
