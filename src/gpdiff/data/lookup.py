"""A city by name, from a data folder (``--data-dir``) or the bundled and downloaded ones."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gpdiff.data.catalog import load_city
from gpdiff.data.city import City
from gpdiff.utils.errors import GpdiffError


def _find_in_dir(data_dir: Path, name: str) -> Path | None:
    for p in sorted(data_dir.iterdir()):
        if p.name == name or p.stem == name or p.name == f"Data_{name}":
            return p
    return None


def load_named(name: str, data_dir: str | None) -> City:
    """A city by name: from ``data_dir`` when given (subfolder or file named so), else bundled/cached."""
    if data_dir:
        d = Path(data_dir)
        if not d.is_dir():
            raise GpdiffError(f"--data-dir {d} is not a folder; pass the folder that holds your cities.")
        p = _find_in_dir(d, name)
        if p is not None:
            city = load_city(p)
            return dataclasses.replace(city, name=name) if city.name != name else city
        from gpdiff.data.catalog import known_names

        if name not in known_names() and Path(name).suffix == "" and not Path(name).exists():
            here = ", ".join(data_dir_cities(d)) or "empty"
            raise GpdiffError(f"unknown city {name!r}: not in --data-dir {d} ({here}) and not bundled or downloaded "
                              f"({', '.join(known_names())}).")
    return load_city(name)


def data_dir_cities(data_dir: str | Path) -> list[str]:
    """The city names in a data folder: every folder and every city file; other files (a README, an
    .npz's .csv) are not cities."""
    from gpdiff.data.formats import CITY_FILE_SUFFIXES

    names = [p.stem if p.is_file() else p.name.removeprefix("Data_") for p in sorted(Path(data_dir).iterdir())
             if not p.name.startswith(".") and (p.is_dir() or p.suffix.lower() in CITY_FILE_SUFFIXES)]
    return list(dict.fromkeys(names))
