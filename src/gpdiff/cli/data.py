"""`gpdiff data ...`: list, inspect and download cities."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def data() -> None:
    """List, inspect and download cities."""


@data.command("list")
def list_cities() -> None:
    """Table of the bundled and downloaded cities."""
    from gpdiff.data.catalog import bundled_names, cached_names, resolve
    from gpdiff.data.city import City
    from gpdiff.report import table

    rows = []
    bundled = set(bundled_names())
    for name in sorted(bundled | set(cached_names())):
        s = City.load(resolve(name)).summary()
        rows.append({"name": name, "where": "bundled" if name in bundled else "cache", "kind": s["kind"],
                     "nodes": s["nodes"], "steps": s["steps"], "interval": s["interval"], "span": s["span"],
                     "days": s["days"], "edges": s["edges"]})
    click.echo(table(rows))


@data.command("show")
@click.argument("name_or_path")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the PNG (default: ./NAME.png).")
def show(name_or_path: str, plot_path: Path | None) -> None:
    """Statistics of a city and a PNG with a few nodes' series and the graph."""
    from gpdiff.data import load_city
    from gpdiff.report import city_stats, plot_city, table

    city = load_city(name_or_path)
    click.echo(f"# {city.name}")
    click.echo(table(city_stats(city)))
    out = plot_city(city, plot_path or Path(f"{city.name}.png"))
    click.echo(f"plot: {out}")


@data.command("download")
@click.argument("name", type=click.Choice(["metr-la", "pems-bay"]))
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the raw files (default: the gpdiff cache, $GPDIFF_CACHE or ~/.cache/gpdiff).")
def download_cmd(name: str, dest: Path | None) -> None:
    """Fetch METR-LA or PEMS-BAY from a public mirror, verify checksums and convert it."""
    from gpdiff.data.download import download

    path = download(name, dest=dest)
    click.echo(f"{name}: ready at {path}; use it as `--target {name}` or `gpdiff data show {name}`.")
