"""Where cities come from: the bundled ones, the download cache, or a path.

``load_city(name_or_path)`` is the one entry point the rest of gpdiff uses.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

from gpdiff.data.city import City
from gpdiff.utils.errors import GpdiffError, unknown_name

BUNDLED_DIR = Path(str(resources.files("gpdiff") / "data" / "bundled"))
FLOW_CITIES = ("nyc-taxi", "montevideo-bus", "melbourne-ped", "hangzhou-metro")


def cache_dir() -> Path:
    """Folder for downloaded/converted cities: ``$GPDIFF_CACHE`` or ``~/.cache/gpdiff``."""
    return Path(os.environ.get("GPDIFF_CACHE", Path.home() / ".cache" / "gpdiff"))


def bundled_names() -> list[str]:
    return sorted(p.name[: -len(".city")] for p in BUNDLED_DIR.glob("*.city"))


def cached_names() -> list[str]:
    d = cache_dir() / "cities"
    return sorted(p.name[: -len(".city")] for p in d.glob("*.city") if p.is_file()) if d.is_dir() else []


def known_names() -> list[str]:
    return sorted(set(bundled_names()) | set(cached_names()))


def resolve(name: str) -> Path:
    """Path of the ``.city`` file for a bundled or cached city name."""
    for folder in (BUNDLED_DIR, cache_dir() / "cities"):
        p = folder / f"{name}.city"
        if p.is_file():
            return p
    raise unknown_name("city", name, known_names())


def load_city(name_or_path: str | os.PathLike[str], **options: Any) -> City:
    """Load a bundled/cached city by name, a ``.city`` file, or a path in a supported format.

    ``options`` go to the format's reader (:mod:`gpdiff.data.options`)."""
    s = str(name_or_path)
    p = Path(s)
    if p.suffix == ".city" and not options:
        return City.load(p)
    if p.exists() or os.sep in s:
        from gpdiff.data.formats import load_path  # local import: the format readers pull in h5py/pandas IO

        return load_path(p, **options)
    if options:
        raise GpdiffError(f"{s!r} is a bundled or downloaded city; options apply only when reading a path.")
    return City.load(resolve(s))
