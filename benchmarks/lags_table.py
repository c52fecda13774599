"""The lag-aware base model against the same runs without lags (issue 28): two `gpdiff bench` folders.

    gpdiff bench loco_blend --out runs/bench/loco_blend      # window.context: none
    gpdiff bench loco_lags --out runs/bench/loco_lags        # window.context: lags
    python benchmarks/lags_table.py runs/bench/loco_blend runs/bench/loco_lags
    python benchmarks/lags_table.py runs/bench/loco_blend runs/bench/lags_s0,runs/bench/lags_s12   # seeds split

Each side may be several bench folders, comma-separated (a suite run seed by seed).

Prints two markdown tables, each number the mean over the seeds both folders hold for a target:

1. before/after: the best naive method, GPD alone and blended without and with lags, and the best
   learned method blended (test MAE averaged over the horizon, original units);
2. the issue's targets with lags: the lag-aware anchor zero-shot (``transfer_zero_shot`` alone) as a
   ratio to weekly naive (target: at most 0.95 on 4 of 5), GPD fine-tuned alone against both naive
   baselines and against that anchor (target: better on 4 of 5 each).

"Alone" is the method before the seasonal blend: the ``MAE alone`` column of each run's report.md.
A target missing from either folder is left out with a line saying so.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pandas as pd

NAIVE = ("seasonal_naive", "weekly_naive", "historical_average")
ALONE_ROW = re.compile(r"^\| (\w+) \| ([\d.]+) \| ([\d.]+) \|$", re.M)


def read_run(run: Path) -> pd.DataFrame | None:
    """One run's test MAE per method: columns ``blended`` (results.csv, average horizon) and ``alone``
    (report.md; the naive methods have no blend, so alone = blended)."""
    if not (run / "report.md").is_file() or not (run / "results.csv").is_file():
        return None
    res = pd.read_csv(run / "results.csv")
    blended = res[res.horizon.astype(str) == "avg"].set_index("method").mae.astype(float)
    alone = {m: float(a) for m, a, _ in ALONE_ROW.findall((run / "report.md").read_text())}
    return pd.DataFrame({"blended": blended, "alone": [alone.get(m, blended[m]) for m in blended.index]})


def read_bench(roots: str) -> dict[str, dict[int, pd.DataFrame]]:
    """target -> seed -> :func:`read_run` for every finished run of the bench folders ``roots``
    (comma-separated; a later folder's run of the same target and seed wins)."""
    out: dict[str, dict[int, pd.DataFrame]] = {}
    runs = [r for root in roots.split(",") for r in sorted((Path(root) / "runs").glob("*/seed*"))]
    for run in runs:
        table = read_run(run)
        if table is not None:
            out.setdefault(run.parent.name, {})[int(run.name[len("seed"):])] = table
    return out


def mean_over(runs: dict[int, pd.DataFrame], seeds: list[int]) -> pd.DataFrame:
    return sum(runs[s] for s in seeds) / len(seeds)


def fmt(x: float) -> str:
    return f"{x:.4g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("without", help="bench folder(s) with window.context none (loco_blend), comma-separated")
    ap.add_argument("with_lags", help="bench folder(s) with window.context lags (loco_lags), comma-separated")
    args = ap.parse_args()
    a, b = read_bench(args.without), read_bench(args.with_lags)
    before = ["| target | seeds | best naive | GPD alone: none -> lags | GPD blended: none -> lags "
              "| best learned blended: none -> lags |", "|---|---|---|---|---|---|"]
    goals = ["| target | weekly naive | best naive | anchor zero-shot alone (ratio to weekly) | GPD alone "
             "| GPD alone beats both naive | GPD alone beats the anchor zero-shot |", "|---|---|---|---|---|---|---|"]
    for target in dict.fromkeys([*a, *b]):
        seeds = sorted(set(a.get(target, {})) & set(b.get(target, {})))
        if not seeds:
            print(f"{target}: not in both folders with a common seed; left out")
            continue
        x, y = mean_over(a[target], seeds), mean_over(b[target], seeds)
        learned = [m for m in x.index if m not in NAIVE and m in y.index]
        naive = y.loc[list(NAIVE), "blended"]
        bx, by = x.loc[learned, "blended"].idxmin(), y.loc[learned, "blended"].idxmin()
        before.append(f"| {target} | {','.join(map(str, seeds))} | {fmt(naive.min())} ({naive.idxmin()}) "
                      f"| {fmt(x.at['gpd', 'alone'])} -> {fmt(y.at['gpd', 'alone'])} "
                      f"| {fmt(x.at['gpd', 'blended'])} -> {fmt(y.at['gpd', 'blended'])} "
                      f"| {fmt(x.at[bx, 'blended'])} ({bx}) -> {fmt(y.at[by, 'blended'])} ({by}) |")
        weekly, zs, gpd = y.at["weekly_naive", "blended"], y.at["transfer_zero_shot", "alone"], y.at["gpd", "alone"]
        both = min(weekly, y.at["seasonal_naive", "blended"])
        goals.append(f"| {target} | {fmt(weekly)} | {fmt(naive.min())} | {fmt(zs)} ({zs / weekly:.3f}) | {fmt(gpd)} "
                     f"| {'yes' if gpd < both else 'no'} ({gpd / both:.3f}) | {'yes' if gpd < zs else 'no'} "
                     f"({gpd / zs:.3f}) |")
    print("\n".join(before))
    print()
    print("\n".join(goals))


if __name__ == "__main__":
    main()
