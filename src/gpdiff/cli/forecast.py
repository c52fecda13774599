"""`gpdiff fit`, `gpdiff forecast`, `gpdiff update`: a forecaster for your city (:mod:`gpdiff.forecaster`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gpdiff.cli import progress_bars
from gpdiff.utils.errors import GpdiffError

_OPTION = "Reader option KEY=VALUE for the data's format (repeatable), as for gpdiff data show."


def _load(path: str, option_pairs: tuple[str, ...]) -> Any:
    from gpdiff.data.catalog import load_city
    from gpdiff.data.options import parse_cli

    return load_city(path, **(parse_cli(option_pairs) if option_pairs else {}))


@click.command("fit")
@click.argument("city")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Forecaster folder to write (must not exist yet, or pass --force).")
@click.option("--pretrained", type=click.Path(file_okay=False), default=None,
              help="Pretrained GPD folder (gpdiff pretrain --sources ..., or a run's pretrained/). Default: the one "
                   "that ships, pretrained on the five bundled cities.")
@click.option("--method", default="gpd", show_default=True,
              help="gpd, gpd_zero_shot, transfer, transfer_zero_shot, target_only, pooled_linear, seasonal_naive, "
                   "weekly_naive, historical_average; knn_residual, mean_params, retrieval, reptile with a --pretrained "
                   "folder made by gpdiff pretrain --with-zoo.")
@click.option("--blend", default=None, help="Naive forecasts blended with the method, weights fitted on the last day "
                                           "[weekly_naive,seasonal_naive]; none: no blend.")
@click.option("--set", "assignments", multiple=True, metavar="PATH=VALUE",
              help="Override a forecaster setting, e.g. --set finetune.max_epochs=10 (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--option", "option_pairs", multiple=True, metavar="KEY=VALUE", help=_OPTION)
@click.option("--force", is_flag=True, help="Replace an existing forecaster folder.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def fit(city: str, out: Path, pretrained: str | None, method: str, blend: str | None, assignments: tuple[str, ...],
        seed: int, option_pairs: tuple[str, ...], force: bool, quiet: bool) -> None:
    """Fit a forecaster on all of CITY's data (the last day validates), and save it to --out.

    CITY is a bundled name, or a path in any supported format (city folder, .city, DCRNN, LibCity, ...)."""
    import shutil

    from gpdiff.forecaster import Forecaster, ForecasterConfig
    from gpdiff.utils.config import from_mapping, parse_assignment, set_path

    if out.exists() and any(out.iterdir()) and not force:
        raise GpdiffError(f"{out} exists; pass --force to replace it, `gpdiff update {out} --data ...` to add days, "
                          "or choose another --out.")
    settings: dict[str, Any] = {"method": method, "seed": seed}
    if blend is not None:
        settings["blend"] = {"naive": blend}
    for text in assignments:
        keys, value = parse_assignment(text)
        settings = set_path(settings, keys, value)
    config = from_mapping(ForecasterConfig, settings, "forecaster setting")  # checked before the data is read
    data = _load(city, option_pairs)
    f = Forecaster.fit(data, pretrained, config, progress=progress_bars(quiet), log=click.echo)
    if out.exists() and force:
        shutil.rmtree(out)
    f.save(out)
    val = f.meta["validation_mae"]
    click.echo(f"forecaster ({method}) for {data.name}: {len(f.node_ids)} nodes, fitted in {f.meta['fit_seconds']} s; "
               f"validation MAE " + ", ".join(f"{k} {v:.4g}" for k, v in val.items()) + f" -> {out}")


@click.command("forecast")
@click.argument("forecaster", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", "data_path", default=None,
              help="Latest data of the city (any supported format; nodes matched by id). Default: the days the "
                   "forecaster last saw.")
@click.option("--at", default=None, help="Forecast after this time instead of after the data's last step.")
@click.option("--horizon", type=int, default=None, help="Steps to forecast. Default: one day.")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the forecasts to FILE.csv or FILE.parquet (default: print the first rows).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG of the last days and the forecast for a few nodes.")
@click.option("--nodes", default=None, help="Comma-separated node ids to plot (default: the busiest four).")
@click.option("--version", "version", type=int, default=None, help="Forecaster version to use (default: the latest).")
@click.option("--option", "option_pairs", multiple=True, metavar="KEY=VALUE", help=_OPTION)
def forecast(forecaster: Path, data_path: str | None, at: str | None, horizon: int | None, out_file: Path | None,
             plot_path: Path | None, nodes: str | None, version: int | None, option_pairs: tuple[str, ...]) -> None:
    """Forecast the next steps of every node with a saved FORECASTER: a table timestamp, node, step, forecast."""
    from gpdiff.forecaster import Forecaster

    if out_file is not None and out_file.suffix.lower() not in (".csv", ".parquet"):
        raise GpdiffError(f"--out {out_file}: give a .csv or .parquet file name.")
    f = Forecaster.load(forecaster, version)
    data = _load(data_path, option_pairs) if data_path else None
    df = f.predict(data, horizon=horizon, at=at)
    for note in df.attrs.get("notes", []):
        click.echo(f"note: {note}", err=True)
    if out_file is not None:
        from gpdiff.utils.io import atomic_write_bytes

        out_file.parent.mkdir(parents=True, exist_ok=True)
        if out_file.suffix.lower() == ".csv":
            atomic_write_bytes(out_file, df.to_csv(index=False).encode())
        else:
            df.to_parquet(out_file, index=False)
        click.echo(f"{len(df)} forecasts ({df['node'].nunique()} nodes x {df['step'].max()} steps, "
                   f"{df['timestamp'].min()} .. {df['timestamp'].max()}) -> {out_file}")
    else:
        click.echo(df.head(20).to_string(index=False))
    if plot_path is not None:
        from gpdiff.forecaster.plot import plot_forecast

        plot_forecast(data if data is not None else f.history, df, plot_path, nodes.split(",") if nodes else None,
                      method=f.config.method)
        click.echo(f"plot -> {plot_path}")


@click.command("update")
@click.argument("forecaster", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--data", "data_path", required=True,
              help="The city's data including the days after the forecaster's last time (any supported format).")
@click.option("--option", "option_pairs", multiple=True, metavar="KEY=VALUE", help=_OPTION)
@click.option("--quiet", is_flag=True, help="No progress bars.")
def update(forecaster: Path, data_path: str, option_pairs: tuple[str, ...], quiet: bool) -> None:
    """Add the new days of --data to FORECASTER and save them as a new version.

    Fine-tunes from the current parameters, refits the blend on the newest day; the previous
    versions stay loadable (gpdiff forecast --version N)."""
    from gpdiff.forecaster import Forecaster

    f = Forecaster.load(forecaster)
    g = f.update(_load(data_path, option_pairs), progress=progress_bars(quiet), log=click.echo)
    if g is f:
        click.echo(f"{forecaster}: {f.notes[0]}")
        return
    g.save(forecaster)
    for note in g.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"{forecaster}: version {g.version} (from {f.version}), data up to {g.meta['last_timestamp']}; "
               "validation MAE " + ", ".join(f"{k} {v:.4g}" for k, v in g.meta["validation_mae"].items()))
