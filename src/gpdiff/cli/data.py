"""`gpdiff data ...`: list, inspect and download cities."""

from __future__ import annotations

from pathlib import Path

import click

_OPTION_HELP = ("Reader option KEY=VALUE for a path in another format (repeatable): e.g. key=speed (the h5 table), "
                "ids_path=PEMS03.txt, time_format='%d/%m/%Y %H:%M', tz=Europe/Paris, interval_minutes=5, "
                "allow_gaps=true. The same keys may stand in a city.yaml beside the data.")


def _options(pairs: tuple[str, ...]) -> dict:
    from gpdiff.data.options import parse_cli

    return parse_cli(pairs)


@click.group()
def data() -> None:
    """List, inspect and download cities."""


@data.command("list")
def list_cities() -> None:
    """Table of the bundled and downloaded cities."""
    from gpdiff.data.catalog import bundled_names, cached_names, resolve
    from gpdiff.data.city import City
    from gpdiff.experiment.report import table
    from gpdiff.utils.errors import GpdiffError

    rows, broken = [], []
    bundled = set(bundled_names())
    for name in sorted(bundled | set(cached_names())):
        try:
            s = City.load(resolve(name)).summary()
        except GpdiffError as exc:  # one damaged file must not hide the others
            broken.append(f"broken: {name}: {exc}")
            continue
        rows.append({"name": name, "where": "bundled" if name in bundled else "cache", "kind": s["kind"],
                     "nodes": s["nodes"], "steps": s["steps"], "interval": s["interval"], "span": s["span"],
                     "days": s["days"], "edges": s["edges"]})
    click.echo(table(rows))
    for line in broken:
        click.echo(line)
    for name in sorted(bundled & set(cached_names())):
        click.echo(f"note: the cached {name}.city is not used: the bundled {name} has the same name (rename the "
                   "cached file to use it).")


@data.command("show")
@click.argument("name_or_path")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the PNG (default: ./NAME.png).")
@click.option("--option", "option_pairs", multiple=True, metavar="KEY=VALUE", help=_OPTION_HELP)
def show(name_or_path: str, plot_path: Path | None, option_pairs: tuple[str, ...]) -> None:
    """Statistics of a city and a PNG with a few nodes' series and the graph."""
    from gpdiff.data import load_city
    from gpdiff.data.show import city_stats, plot_city
    from gpdiff.experiment.report import table

    city = load_city(name_or_path, **_options(option_pairs))
    click.echo(f"# {city.name}")
    click.echo(table(city_stats(city)))
    out = plot_city(city, plot_path or Path(f"{city.name}.png"))
    click.echo(f"plot: {out}")


@data.command("convert")
@click.argument("path")
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--option", "option_pairs", multiple=True, metavar="KEY=VALUE", help=_OPTION_HELP)
@click.option("--force", is_flag=True, help="Replace an existing OUT.city file, or the city files of a non-empty OUT "
                                         "folder.")
def convert(path: str, out: Path, option_pairs: tuple[str, ...], force: bool) -> None:
    """Read PATH (any supported format) and write it as OUT: a NAME.city file, or else a city folder."""
    from gpdiff.data import load_city
    from gpdiff.data.formats.city_folder import write_city_folder
    from gpdiff.utils.errors import GpdiffError

    source = Path(path).resolve() if Path(path).exists() else None
    if source is not None and (out.resolve() == source or out.resolve() in source.parents):
        raise GpdiffError(f"{out} is the input or holds it; converting there would replace your files. Write to "
                          "another folder or a NAME.city file.")
    if out.suffix == ".city" and out.is_dir():
        raise GpdiffError(f"{out} is a folder; a NAME.city output is a file. Give another name.")
    if out.suffix != ".city" and out.is_file():
        raise GpdiffError(f"{out} is an existing file; give a folder for a city folder, or a NAME.city path.")
    if out.suffix == ".city" and out.is_file() and not force:
        raise GpdiffError(f"{out} already exists; give a new name, or --force to replace it.")
    if out.suffix != ".city" and out.is_dir() and any(out.iterdir()) and not force:
        names = sorted(p.name for p in out.iterdir())
        shown = ", ".join(names[:4]) + (", ..." if len(names) > 4 else "")
        raise GpdiffError(f"{out} already holds files ({shown}); converting writes a city folder there. Give a new "
                          "folder, or --force to replace its city files.")
    city = load_city(path, **_options(option_pairs))
    written = city.save(out) if out.suffix == ".city" else write_city_folder(city, out)
    click.echo(f"{city.name}: {city.n_nodes} nodes, {city.n_steps} steps of {city.interval_minutes} min -> {written}")


@data.command("download")
@click.argument("name", type=click.Choice(["metr-la", "pems-bay"]))
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the raw files (default: the gpdiff cache, $GPDIFF_CACHE or ~/.cache/gpdiff).")
def download_cmd(name: str, dest: Path | None) -> None:
    """Fetch METR-LA or PEMS-BAY from a public mirror, verify checksums and convert it."""
    from gpdiff.data.download import download

    path = download(name, dest=dest)
    click.echo(f"{name}: ready at {path}; use it as `--target {name}` or `gpdiff data show {name}`.")
