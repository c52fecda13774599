"""The `backtest` benchmark (issue 27): `gpdiff backtest` on the five bundled cities, leave one city out.

    python benchmarks/backtest.py --out runs/bench/backtest                 # seed 0, every target
    python benchmarks/backtest.py --out runs/bench/backtest-s1 --seed 1     # the second suite: seed 1, then
    python benchmarks/backtest.py --out runs/bench/backtest-s2 --seed 2     # seed 2 (about an hour each)
    python benchmarks/backtest.py --out runs/bench/backtest --targets melbourne-ped \\
        --pretrained melbourne-ped=runs/gpd-no-mel --starts 0 --days 3      # one target, one start day
    python benchmarks/backtest.py --out runs/bench/backtest_lags --set window.context=lags   # lag-aware models

For each target: a pretrained GPD whose sources are the other four bundled cities (built with
``gpdiff pretrain --sources ...``'s defaults into ``OUT/pretrained/no-TARGET`` unless ``--pretrained
TARGET=DIR`` names one; a folder there is reused), then the backtest from every start day of
``--starts`` (default days 0 and 3 of the data: different weekdays, so one odd day does not decide)
with ``--start-days`` days of data and ``--days`` forecast days (fewer where the city is shorter:
la-loop has 7 days; the script says so). Writes ``OUT/TARGET/backtest.{csv,md,png}``, all rows in
``OUT/backtest.csv`` and ``OUT/summary.md`` (per target, the day from which each method beats both
naive baselines, and the seconds each method spent per day). Every finished start day and method of a
target is kept in ``OUT/TARGET/partial/`` until the target's outputs are written, so a rerun of an
interrupted suite goes on from there (with the same code: the key includes it).

Why a script and not a suite of ``configs/bench/``: a bench suite is a list of ``gpdiff run``
experiments (a ``RunConfig`` each, scored by :mod:`gpdiff.experiment.scoreboard` on the fixed few-shot split); a
backtest is another command with another output (per-day rows, no test split), which the suite
machinery cannot express without a second kind of experiment.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from gpdiff.data.catalog import load_city
from gpdiff.forecaster import GPD, backtest_report
from gpdiff.forecaster.backtest import BacktestConfig, backtest, beats_naive_from
from gpdiff.forecaster.backtest_checkpoint import PARTIAL, clear

TARGETS = ("melbourne-ped", "nyc-taxi", "montevideo-bus", "hangzhou-metro", "la-loop")


def _pretrained(target: str, out: Path, given: dict[str, str], seed: int, settings: list[str]) -> GPD:
    if target in given:
        return GPD.from_pretrained(given[target])
    folder = out / "pretrained" / f"no-{target}"
    if (folder / "gpd.yaml").is_file():
        return GPD.from_pretrained(folder)
    from gpdiff.experiment.pipeline import pretrain_sources
    from gpdiff.experiment.runconfig import RunConfig

    sources = [t for t in TARGETS if t != target]
    cfg = RunConfig.from_yaml(None, {"target": target, "sources": ",".join(sources), "seed": seed, "device": "cpu"},
                              settings)
    t = time.perf_counter()
    gpd = pretrain_sources(cfg, folder, progress=False, log=print)
    print(f"[bench] pretrained without {target} in {time.perf_counter() - t:.0f} s -> {folder}")
    return gpd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--pretrained", action="append", default=[], metavar="TARGET=DIR",
                    help="a pretrained GPD without TARGET among its sources (repeatable)")
    ap.add_argument("--starts", default="0,3", help="start days (0-based days of the data), comma-separated")
    ap.add_argument("--start-days", type=int, default=2)
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--methods", default=None, help="comma-separated (default: every backtest method)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", action="append", default=[], metavar="PATH=VALUE", dest="settings",
                    help="a run-config setting of the pretraining (repeatable), e.g. window.context=lags")
    args = ap.parse_args()
    given = dict(p.split("=", 1) for p in args.pretrained)
    starts = [int(s) for s in args.starts.split(",")]
    head = (f"Leave one city out; start days {starts}, {args.start_days} days of data first; seed {args.seed}"
            + (f"; pretrained with {', '.join(args.settings)}." if args.settings else "."))
    rows, summary = [], ["# Backtest benchmark", "", head, ""]
    for target in args.targets.split(","):
        city = load_city(target)
        have = city.n_steps // city.steps_per_day
        days = min(args.days, have - max(starts) - args.start_days)
        if days < args.days:
            print(f"[bench] {target}: {have} days of data, so {days} forecast days instead of {args.days}")
        settings = {"start_day": starts, "start_days": args.start_days, "days": days, "seed": args.seed}
        if args.methods:
            settings["methods"] = args.methods
        config = BacktestConfig(**settings)
        gpd = _pretrained(target, args.out, given, args.seed, args.settings)
        t = time.perf_counter()
        result = backtest(city, gpd, config, log=print, checkpoint=args.out / target / PARTIAL)
        wall = time.perf_counter() - t
        backtest_report.write(result, args.out / target, target)
        clear(args.out / target / PARTIAL)
        rows.append(result.scores.assign(target=target))
        cost = result.scores.groupby("method", sort=False)["seconds"].mean()
        beats = beats_naive_from(result.scores).pivot(index="method", columns="start_day", values="beats_both_from")
        summary += [f"## {target}", "", f"{len(starts)} start day(s) x {days} day(s) in {wall:.0f} s.", "",
                    "| method | seconds per day | beats both naive from (days of data), per start day |",
                    "|---|---|---|"]
        for method, sec in cost.items():
            b = beats.loc[method] if method in beats.index else None
            when = "reference" if b is None else ", ".join("never" if pd.isna(v) else str(int(v)) for v in b)
            summary.append(f"| {method} | {sec:.1f} | {when} |")
        summary.append("")
        pd.concat(rows).to_csv(args.out / "backtest.csv", index=False, float_format="%.6g")
        (args.out / "summary.md").write_text("\n".join(summary) + "\n")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
