"""`gpdiff backtest CITY`: replay a city's first days with every method (:mod:`gpdiff.forecaster.backtest`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gpdiff.cli import progress_bars

_METHODS = ("seasonal_naive, weekly_naive, historical_average, gpd_zero_shot, gpd, transfer_zero_shot, transfer, "
            "target_only, auto_ets (statsforecast, optional)")


@click.command("backtest")
@click.argument("city")
@click.option("--pretrained", type=click.Path(file_okay=False), default=None,
              help="Pretrained GPD folder whose sources exclude CITY (gpdiff pretrain --sources ...). Default: the one "
                   "that ships (its sources are the five bundled cities).")
@click.option("--methods", default=None, help=f"Comma-separated methods [all: {_METHODS}]; seasonal_naive and "
                                              "weekly_naive always run.")
@click.option("--start-days", type=int, default=2, show_default=True,
              help="Days of data before the first forecast day (the last of them validates).")
@click.option("--days", type=int, default=14, show_default=True, help="Days to forecast, one after the other.")
@click.option("--start-day", "start_day", type=int, multiple=True,
              help="The data's day (0-based) that is the user's first; repeat for several backtests [0].")
@click.option("--set", "assignments", multiple=True, metavar="PATH=VALUE",
              help="Override a forecaster setting for every method, e.g. --set finetune.max_epochs=10 (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("backtest"),
              show_default=True, help="Folder for backtest.csv, backtest.md and backtest.png.")
@click.option("--option", "option_pairs", multiple=True, metavar="KEY=VALUE",
              help="Reader option KEY=VALUE for the data's format (repeatable), as for gpdiff data show.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def backtest(city: str, pretrained: str | None, methods: str | None, start_days: int, days: int,
             start_day: tuple[int, ...], assignments: tuple[str, ...], seed: int, out_dir: Path,
             option_pairs: tuple[str, ...], quiet: bool) -> None:
    """Replay CITY's first days: fit every method on --start-days days, forecast the next day, score it, update.

    Writes the per-day scores (MAE, CRPS, interval coverage) per method to --out/backtest.csv, a table
    to backtest.md and a plot against days of data to backtest.png. Until then every finished method and
    start day is kept in --out/partial/: run the same command again after an interruption and it goes on
    from there (the folder is removed once the outputs are written)."""
    from gpdiff.data.catalog import load_city
    from gpdiff.data.options import parse_cli
    from gpdiff.forecaster import backtest_report
    from gpdiff.forecaster.backtest import BacktestConfig
    from gpdiff.forecaster.backtest import backtest as run_backtest
    from gpdiff.forecaster.backtest_checkpoint import PARTIAL, clear
    from gpdiff.utils.config import from_mapping, parse_assignment, set_path

    settings: dict[str, Any] = {"start_days": start_days, "days": days, "seed": seed,
                                "start_day": list(start_day) or [0]}
    if methods is not None:
        settings["methods"] = methods
    for text in assignments:
        keys, value = parse_assignment(text)
        settings = set_path(settings, keys, value)
    config = from_mapping(BacktestConfig, settings, "backtest setting")  # names checked before the data is read
    data = load_city(city, **(parse_cli(option_pairs) if option_pairs else {}))
    partial = out_dir / PARTIAL
    result = run_backtest(data, pretrained, config, log=click.echo, progress=progress_bars(quiet), checkpoint=partial)
    paths = backtest_report.write(result, out_dir, data.name)
    clear(partial)
    click.echo(backtest_report.markdown(result, data.name))
    click.echo(f"backtest of {data.name}: {len(result.scores)} rows -> {paths['csv']}, {paths['md']}, {paths['png']}")
