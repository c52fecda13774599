"""Readers of the data formats gpdiff understands, one module per format. Every reader returns a :class:`City`.

=========================  ===============================================================
format                     reader
=========================  ===============================================================
``*.city``                 :meth:`City.load`
city folder (series.csv)   :func:`.city_folder.load_city_folder` (gpdiff's own, human-editable format)
GPD / ST-GFSL folder       :func:`.gpd_folder.load_gpd_folder` (``dataset.npy`` + ``matrix.npy``)
DCRNN ``.h5`` (+ pickle)   :func:`.dcrnn.load_dcrnn` (METR-LA, PEMS-BAY)
ASTGCN ``PEMS0X.npz``      :func:`.astgcn.load_astgcn` (PEMS03/04/07/08)
LibCity atomic files       :func:`.libcity.load_libcity` (``.geo/.rel/.dyna``)
BasicTS folder             :func:`.basicts.load_basicts`
pandas DataFrame           :meth:`City.from_pandas`
=========================  ===============================================================

Every reader takes the options of :mod:`gpdiff.data.options` as keyword arguments, and from a
``city.yaml`` beside the data. :mod:`.widecsv` (time tables in CSV) and :mod:`.graphpickle` (the
DCRNN-family graph pickles) are read by several formats; :mod:`.common` holds the helpers every
reader shares.

:func:`load_path` picks the reader from what a path looks like.
:func:`.city_folder.write_city_folder` exports any city to the city-folder format. Bad input raises
:class:`GpdiffError` with one line that names the file, the offending value and the fix.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpdiff.data.city import City
from gpdiff.data.formats.astgcn import load_astgcn
from gpdiff.data.formats.basicts import is_basicts_folder, load_basicts
from gpdiff.data.formats.city_folder import load_city_folder
from gpdiff.data.formats.common import PathLike
from gpdiff.data.formats.dcrnn import load_dcrnn
from gpdiff.data.formats.gpd_folder import load_gpd_folder
from gpdiff.data.formats.libcity import is_libcity_folder, load_libcity
from gpdiff.utils.errors import GpdiffError

SUPPORTED_FORMATS = (
    "a .city file; "
    "a city folder with series.csv (+ adjacency.csv, edges.csv or nodes.csv with lat/lon); "
    "a GPD/ST-GFSL folder with dataset.npy + matrix.npy; "
    "a DCRNN .h5 file (METR-LA/PEMS-BAY) with adj_mx.pkl beside it, or a folder holding one; "
    "an ASTGCN PEMS0X.npz with PEMS0X.csv beside it; "
    "a LibCity folder (.geo, .rel, .dyna); "
    "a BasicTS folder (data.dat + desc.json, train/val/test_data.npy, or data.pkl)"
)
CITY_FILE_SUFFIXES = (".city", ".h5", ".hdf5", ".hdf", ".npz")  # a file that is a whole city (load_path)


def load_path(path: PathLike, **options: Any) -> City:
    """Load a city from ``path``, choosing the reader from its layout (see the module table).

    ``options`` go to the reader (see :mod:`gpdiff.data.options`; ``city.yaml`` beside the data
    gives them too). Raises :class:`GpdiffError` for an unknown layout or an option the format
    does not take.
    """
    p = Path(path)
    if not p.exists():
        raise GpdiffError(f"{p} does not exist; check the path.")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".city":
            if options:
                raise GpdiffError(f"{p} is a saved city; options ({', '.join(options)}) apply only when reading "
                                  "other formats.")
            return City.load(p)
        if suffix in (".h5", ".hdf5", ".hdf"):
            return load_dcrnn(p, **options)
        if suffix == ".npz":
            return load_astgcn(p, **options)
        if p.name in ("series.csv", "dataset.npy", "matrix.npy") or suffix in (".geo", ".rel", ".dyna"):
            return load_path(p.parent, **options)
        raise GpdiffError(f"{p}: unsupported file type {suffix or p.name!r}; give one of: {SUPPORTED_FORMATS}.")
    if (p / "series.csv").is_file():
        return load_city_folder(p, **options)
    if (p / "dataset.npy").is_file() and (p / "matrix.npy").is_file():
        return load_gpd_folder(p, **options)
    if is_libcity_folder(p):
        return load_libcity(p, **options)
    if is_basicts_folder(p):
        return load_basicts(p, **options)
    for pattern, loader in (("*.h5", load_dcrnn), ("*.npz", load_astgcn), ("*.city", load_path)):
        found = sorted(p.glob(pattern))
        if len(found) == 1:
            return loader(found[0], **options)
        if len(found) > 1:
            names = ", ".join(f.name for f in found[:5])
            raise GpdiffError(f"{p} holds {len(found)} {pattern} files ({names}); give the path of the one to load.")
    raise GpdiffError(f"{p} is not in a format gpdiff reads; give one of: {SUPPORTED_FORMATS}.")
