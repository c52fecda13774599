"""The tables of BENCHMARKS.md's backtest section, from the per-target CSVs `benchmarks/backtest.py` wrote.

    python benchmarks/backtest_table.py runs/bench/backtest            # every OUT/TARGET/backtest.csv

Per target and method, averaged over the start days: MAE in the first week of forecasting (up to 8 days
of data: the value one week earlier is not in the user's data yet for most days) and after it (9 days
and more), the second-week MAE's ratio to weekly naive's, CRPS and the coverage of the 80% and 95%
intervals over all days, on how many forecast days (start days x days) its MAE is below both naive
baselines', the day from which the method beats both naive baselines on every later day
(per start day, :func:`gpdiff.forecaster.backtest.beats_naive_from`), and the median seconds per
forecast day (fit or update, forecast and scoring: the median, because a benchmark paused by SIGSTOP
counts the pause in that day's seconds).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from gpdiff.forecaster.backtest import REFERENCES, beats_naive_from

FIRST_WEEK = 8  # days of data up to which the value one week earlier mostly lies before the user's first day


def table(scores: pd.DataFrame, target: str) -> list[str]:
    first = scores[scores["days_of_data"] <= FIRST_WEEK]
    later = scores[scores["days_of_data"] > FIRST_WEEK]
    by = "method"
    mae1 = first.groupby(by, sort=False)["mae"].mean()
    mae2 = later.groupby(by, sort=False)["mae"].mean()
    crps = scores.groupby(by, sort=False)["crps"].mean()
    cov80 = scores.groupby(by, sort=False)["coverage_80"].mean()
    cov95 = scores.groupby(by, sort=False)["coverage_95"].mean()
    sec = scores.groupby(by, sort=False)["seconds"].median()
    beats = beats_naive_from(scores).pivot(index="method", columns="start_day", values="beats_both_from")
    ref = (scores[scores["method"].isin(REFERENCES)].groupby(["start_day", "days_of_data"])["mae"].min()
           .rename("ref").reset_index())
    day = scores.merge(ref, on=["start_day", "days_of_data"])
    won = day.assign(w=day["mae"] < day["ref"]).groupby(by, sort=False)["w"].agg(["sum", "size"])
    weekly = mae2.get("weekly_naive", np.nan)
    days = f"{scores['days_of_data'].min()}-{scores['days_of_data'].max()}"
    rows = [f"#### {target} (days of data {days}, start days {sorted(scores['start_day'].unique().tolist())})", "",
            "| method | MAE, first week | MAE, after it | after it / weekly naive | CRPS | coverage 80% | coverage 95% "
            "| days it beats both naive | beats both naive from (days of data), per start day | seconds per day (median) |",
            "|---|---|---|---|---|---|---|---|---|---|"]

    def fmt(x: float) -> str:
        return "" if pd.isna(x) else f"{x:.4g}"

    for m in mae1.index.union(mae2.index, sort=False):
        b = beats.loc[m] if m in beats.index else None
        when = "reference" if b is None else ", ".join("never" if pd.isna(v) else str(int(v)) for v in b)
        ratio = mae2.get(m, np.nan) / weekly if weekly == weekly else np.nan
        days_won = "" if m in REFERENCES else f"{won.loc[m, 'sum']} of {won.loc[m, 'size']}"
        rows.append(f"| {m} | {fmt(mae1.get(m, np.nan))} | {fmt(mae2.get(m, np.nan))} | {fmt(ratio)} | "
                    f"{fmt(crps.get(m))} | {cov80.get(m, np.nan):.1%} | {cov95.get(m, np.nan):.1%} | "
                    f"{days_won} | {when} | "
                    f"{sec.get(m, np.nan):.1f} |")
    return [*rows, ""]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="the --out folder of benchmarks/backtest.py")
    args = ap.parse_args()
    found = sorted(args.out.glob("*/backtest.csv"))
    if not found:
        raise SystemExit(f"{args.out}: no TARGET/backtest.csv (run benchmarks/backtest.py --out {args.out} first)")
    lines = []
    for f in found:
        lines += table(pd.read_csv(f), f.parent.name)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
