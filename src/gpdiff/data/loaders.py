"""Readers for the data formats gpdiff understands. Every reader returns a :class:`City`.

=========================  ===============================================================
format                     reader
=========================  ===============================================================
``*.city``                 :meth:`City.load`
city folder (series.csv)   :func:`load_city_folder` (gpdiff's own, human-editable format)
GPD / ST-GFSL folder       :func:`load_gpd_folder` (``dataset.npy`` + ``matrix.npy``)
DCRNN ``.h5`` (+ pickle)   :func:`load_dcrnn` (METR-LA, PEMS-BAY)
ASTGCN ``PEMS0X.npz``      :func:`load_astgcn` (PEMS03/04/07/08)
LibCity atomic files       :func:`gpdiff.data.formats.libcity.load_libcity` (``.geo/.rel/.dyna``)
BasicTS folder             :func:`gpdiff.data.formats.basicts.load_basicts`
pandas DataFrame           :meth:`City.from_pandas`
=========================  ===============================================================

Every reader takes the options of :mod:`gpdiff.data.options` as keyword arguments, and from a
``city.yaml`` beside the data.

:func:`load_path` picks the reader from what a path looks like. :func:`write_city_folder`
exports any city to the city-folder format. Bad input raises :class:`GpdiffError` with one line
that names the file, the offending value and the fix.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpdiff.data import options as opt
from gpdiff.data.city import KINDS, City, coordinate_fault
from gpdiff.data.formats.graphpickle import id_str as _id_str
from gpdiff.data.formats.graphpickle import read_graph_pickle
from gpdiff.data.formats.widecsv import read_wide_csv
from gpdiff.data.graph import gaussian_knn_adjacency
from gpdiff.data.timeaxis import how_to_set, place_on_grid, regular_grid
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import atomic_write_text, write_yaml

PathLike = str | os.PathLike[str]

SUPPORTED_FORMATS = (
    "a .city file; "
    "a city folder with series.csv (+ adjacency.csv, edges.csv or nodes.csv with lat/lon); "
    "a GPD/ST-GFSL folder with dataset.npy + matrix.npy; "
    "a DCRNN .h5 file (METR-LA/PEMS-BAY) with adj_mx.pkl beside it, or a folder holding one; "
    "an ASTGCN PEMS0X.npz with PEMS0X.csv beside it; "
    "a LibCity folder (.geo, .rel, .dyna); "
    "a BasicTS folder (data.dat + desc.json, train/val/test_data.npy, or data.pkl)"
)

#: GPD / ST-GFSL folder name -> (interval minutes, kind, units); in speed data 0 = missing.
GPD_DEFAULTS: dict[str, tuple[int, str, str]] = {
    "metr-la": (5, "speed", "mph"),
    "pems-bay": (5, "speed", "mph"),
    "chengdu_m": (10, "speed", "km/h"),
    "shenzhen": (10, "speed", "km/h"),
    "dc": (60, "flow", "people/h"),
    "bm": (60, "flow", "people/h"),
    "man": (60, "flow", "people/h"),
    "bj": (60, "flow", "people/h"),
}
CITY_FILE_SUFFIXES = (".city", ".h5", ".hdf5", ".hdf", ".npz")  # a file that is a whole city (load_path)
GPD_DEFAULT_START = pd.Timestamp("2000-01-03")  # a Monday

#: Published start dates of the ASTGCN/STSGCN PEMS files (5-minute flow).
ASTGCN_STARTS: dict[str, str] = {
    "pems03": "2018-09-01", "pems04": "2018-01-01", "pems07": "2017-05-01", "pems08": "2016-07-01",
}

#: the options (keyword arguments, city.yaml keys, --option) each reader takes; see gpdiff.data.options
CITY_FOLDER_OPTIONS = ("name", "kind", "units", "source", "channels", "interval_minutes", "time_format", "tz", "sep",
                       "decimal", "allow_gaps", "allow_negative")
GPD_OPTIONS = ("name", "kind", "units", "source", "interval_minutes", "start", "allow_negative")
DCRNN_OPTIONS = ("name", "key", "adj_pkl_path", "locations_path", "allow_gaps")
ASTGCN_OPTIONS = ("name", "csv_path", "ids_path", "interval_minutes", "start", "allow_negative")


# ---------------------------------------------------------------------------- dispatch
def load_path(path: PathLike, **options: Any) -> City:
    """Load a city from ``path``, choosing the reader from its layout (see the module table).

    ``options`` go to the reader (see :mod:`gpdiff.data.options`; ``city.yaml`` beside the data
    gives them too). Raises :class:`GpdiffError` for an unknown layout or an option the format
    does not take.
    """
    from gpdiff.data.formats.basicts import is_basicts_folder, load_basicts
    from gpdiff.data.formats.libcity import is_libcity_folder, load_libcity

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


# ------------------------------------------------------------------------------ DCRNN
def load_dcrnn(h5_path: PathLike, adj_pkl_path: PathLike | None = None, name: str | None = None,
               key: str | None = None, locations_path: PathLike | None = None, allow_gaps: bool | None = None
               ) -> City:
    """Load METR-LA / PEMS-BAY in the DCRNN release layout.

    ``h5_path``: a pandas HDFStore holding a DataFrame with a DatetimeIndex at a fixed interval
    (5 min), one column per sensor id, float64 speeds in mph, 0 = missing. The table is ``key``,
    else ``df`` (METR-LA), else the only time-indexed table (``speed`` in PEMS-BAY, even beside a
    ``meta`` table). Gaps in the index are filled with missing steps; duplicated or unsorted
    timestamps are an error.

    ``adj_pkl_path``: the graph pickle, default ``adj_mx.pkl`` / ``adj_mx_bay.pkl`` beside the h5;
    see :func:`gpdiff.data.formats.graphpickle.read_graph_pickle` (the DCRNN 3-sequence, or a bare
    ``[N, N]`` matrix in the column order of the h5). **The format requires unpickling, which can
    run code: only load pickles you trust** (e.g. the ones from the DCRNN repository). The
    fixed-format h5 is read without unpickling anything; a table-format h5 is read by pandas,
    which unpickles its metadata too.

    ``locations_path``: optional sensor coordinates (``graph_sensor_locations*.csv``, columns
    ``[index,] sensor_id, latitude, longitude``, header optional); found beside the h5 by default.
    Every option may also come from ``city.yaml`` beside the h5 (:mod:`gpdiff.data.options`).
    """
    h5 = _require_file(h5_path, "DCRNN speed file")
    o = opt.resolve(h5.parent, {"name": name, "key": key, "adj_pkl_path": adj_pkl_path,
                                "locations_path": locations_path, "allow_gaps": allow_gaps}, DCRNN_OPTIONS, "DCRNN")
    times, columns, raw = _read_hdf_frame(h5, o.get("key"))
    if raw.shape[1] == 0 or raw.shape[0] < 2:
        raise GpdiffError(f"{h5}: the table has shape {raw.shape}; need at least 2 timestamps and 1 sensor.")
    pkl = (_find_dcrnn_pickle(h5) if o.get("adj_pkl_path") is None
           else _require_file(o["adj_pkl_path"], "DCRNN graph pickle"))
    adjacency, graph_note = read_graph_pickle(pkl, columns)
    grid = regular_grid(times, h5, allow_gaps=bool(o.get("allow_gaps")))
    mask = np.isfinite(raw) & (raw != 0)
    values, mask = place_on_grid(np.where(mask, raw, 0.0)[:, :, None], mask, grid)
    coords = None
    loc = Path(o["locations_path"]) if o.get("locations_path") is not None else _find_locations(h5)
    if loc is not None:
        coords = _read_sensor_locations(_require_file(loc, "sensor locations file"), columns)
    notes = [graph_note] if graph_note else []
    if grid.filled:
        notes.append(f"{grid.filled} missing timestamps filled as missing")
    note = "".join(f"; {n}" for n in notes)
    return _make_city(
        h5, name=o.get("name") or h5.stem, values=values, mask=mask, start=grid.start,
        interval_minutes=grid.interval_minutes, adjacency=adjacency, kind="speed", units="mph", node_ids=columns,
        channels=["speed"], coords=coords,
        source=f"DCRNN format: {h5.name} + {pkl.name}{' + ' + loc.name if loc is not None else ''}{note}",
    )


def _find_dcrnn_pickle(h5: Path) -> Path:
    names = ["adj_mx_bay.pkl", "adj_mx.pkl"] if "bay" in h5.stem.lower() else ["adj_mx.pkl", "adj_mx_bay.pkl"]
    for n in names:
        if (h5.parent / n).is_file():
            return h5.parent / n
    raise GpdiffError(
        f"no graph pickle beside {h5} (looked for {' and '.join(names)}); put the DCRNN adj_mx.pkl there, or "
        f"{how_to_set('adj_pkl_path', 'GRAPH.pkl')}."
    )


def _find_locations(h5: Path) -> Path | None:
    names = ("graph_sensor_locations_bay.csv", "graph_sensor_locations.csv")
    if "bay" not in h5.stem.lower():
        names = names[::-1]
    return next((h5.parent / n for n in names if (h5.parent / n).is_file()), None)


def _read_sensor_locations(path: Path, ids: list[str]) -> np.ndarray:
    rows = _read_csv_rows(path)
    if rows and not _is_number(rows[0][-1]):
        rows = rows[1:]
    if not rows or len(rows[0]) not in (3, 4):
        raise GpdiffError(f"{path}: expected columns [index,] sensor_id, latitude, longitude; "
                          "fix the file or remove it.")
    table: dict[str, tuple[float, float]] = {}
    for r in rows:
        try:
            table[_id_str(r[-3])] = (float(r[-2]), float(r[-1]))
        except (ValueError, IndexError):
            raise GpdiffError(f"{path}: bad row {r!r}; each row needs sensor_id, latitude, longitude.") from None
    missing = [i for i in ids if i not in table]
    if missing:
        raise GpdiffError(f"{path}: no coordinates for {len(missing)} sensors (e.g. {missing[:3]}); "
                          "use the locations file of this dataset or remove it.")
    coords = np.array([table[i] for i in ids], dtype=np.float64)
    fault = coordinate_fault(coords, "latlon")
    if fault is not None:
        raise GpdiffError(f"{path}: sensor {ids[fault[0]]!r} {fault[1]}.")
    return coords


def _read_hdf_frame(path: Path, key: str | None) -> tuple[pd.DatetimeIndex, list[str], np.ndarray]:
    """(timestamps, column ids, values [T, N] float64) of a pandas DataFrame stored in HDF5.

    The fixed format (what DCRNN shipped) is read with h5py directly: no pickled attribute is
    ever loaded, and old py2-era files that current pandas cannot open still work. The table
    format falls back to ``pandas.read_hdf`` (needs PyTables).
    """
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise GpdiffError(f"{path} is not a readable HDF5 file ({exc}); check the file "
                          "(a partial download?).") from None
    with f:
        groups = [k for k in f.keys() if isinstance(f[k], h5py.Group)]
        if not groups:
            raise GpdiffError(f"{path} holds no pandas DataFrame (top-level entries: {', '.join(list(f.keys())[:5])}); "
                              "DCRNN-format files are written by DataFrame.to_hdf.")
        if key is None:
            timed = [g for g in groups if _is_time_indexed(f[g])]
            if "df" in groups:
                key = "df"
            elif len(groups) == 1 or len(timed) == 1:
                key = groups[0] if len(groups) == 1 else timed[0]
            else:
                raise GpdiffError(f"{path} holds {len(groups)} tables ({', '.join(groups)}), "
                                  f"{len(timed)} of them indexed by time, and none is named 'df'; state the table to "
                                  f"read: {how_to_set('key', (timed or groups)[0])}.")
        elif key not in groups:
            raise GpdiffError(f"{path} has no table {key!r} (it has: {', '.join(groups) or 'none'}); "
                              "set key to one of those.")
        group = f[key]
        ptype = _attr_str(group, "pandas_type")
        if ptype == "frame":
            return _read_fixed_frame(path, group)
    if ptype != "frame_table":
        raise GpdiffError(f"{path}: table {key!r} is not a pandas DataFrame (pandas_type={ptype!r}); "
                          "write it with DataFrame.to_hdf.")
    try:
        df = pd.read_hdf(path, key)
    except ImportError:
        raise GpdiffError(f"{path} is a table-format HDF5 store, which needs PyTables: pip install tables.") from None
    if not isinstance(df, pd.DataFrame) or not isinstance(df.index, pd.DatetimeIndex):
        raise GpdiffError(f"{path}: table {key!r} must be a DataFrame with a DatetimeIndex (one row per time).")
    try:
        values = df.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise GpdiffError(f"{path}: table {key!r} has non-numeric columns; keep one numeric column per sensor.") \
            from None
    return df.index, [_id_str(c) for c in df.columns], values


def _is_time_indexed(group: Any) -> bool:
    """Whether an HDF5 group is a pandas frame whose row index holds timestamps (fixed or table format)."""
    try:
        if _attr_str(group, "pandas_type") == "frame":
            return _attr_str(group["axis1"], "kind").startswith("datetime64")
        table = group["table"]
        return any(_attr_str(table, f"{n}_kind").startswith("datetime64") or
                   "datetime64" in str(table.attrs.get(f"{n}_kind", "")) for n in ("index",))
    except (KeyError, TypeError, AttributeError):
        return False


def _read_fixed_frame(path: Path, group: Any) -> tuple[pd.DatetimeIndex, list[str], np.ndarray]:
    try:
        columns = _decode_labels(group["axis0"])
        index = group["axis1"]
        kind = _attr_str(index, "kind")
        if not kind.startswith("datetime64"):
            raise GpdiffError(f"{path}: the row index is {kind or 'not a time index'}, not timestamps; "
                              "DCRNN-format files are indexed by a DatetimeIndex.")
        unit = kind[len("datetime64["):-1] if "[" in kind else "ns"
        times = pd.DatetimeIndex(np.asarray(index[()], dtype=np.int64).astype(f"datetime64[{unit}]"))
        tz = _attr_str(index, "tz")
        if tz:
            times = times.tz_localize("UTC").tz_convert(tz)
        t, n = len(times), len(columns)
        values = np.full((t, n), np.nan)
        col = {c: i for i, c in enumerate(columns)}
        for b in range(int(group.attrs.get("nblocks", 0))):
            items = _decode_labels(group[f"block{b}_items"])
            ds = group[f"block{b}_values"]
            if ds.dtype.kind not in "fiub":
                raise GpdiffError(f"{path}: columns {items[:3]} are not numeric; keep one numeric column per sensor.")
            arr = np.asarray(ds[()], dtype=np.float64)
            if arr.shape == (len(items), t) and (arr.shape != (t, len(items)) or not ds.attrs.get("transposed", 1)):
                arr = arr.T
            if arr.shape != (t, len(items)):
                raise GpdiffError(f"{path}: block {b} has shape {arr.shape}, expected {(t, len(items))}; "
                                  "the file is damaged.")
            values[:, [col[i] for i in items]] = arr
    except KeyError as exc:
        raise GpdiffError(f"{path}: not a pandas fixed-format DataFrame (missing {exc}); "
                          "write it with DataFrame.to_hdf.") from None
    return times, columns, values


def _attr_str(obj: Any, name: str) -> str:
    v = obj.attrs.get(name)
    if v is None:
        return ""
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8", "replace")
    return str(v) if isinstance(v, str) else ""


def _decode_labels(ds: Any) -> list[str]:
    return [_id_str(v) for v in np.asarray(ds[()]).tolist()]


# -------------------------------------------------------------------------------- GPD
def load_gpd_folder(folder: PathLike, interval_minutes: int | None = None,
                    start: str | pd.Timestamp | None = None, **options: Any) -> City:
    """Load a GPD / ST-GFSL data folder.

    Layout: ``dataset.npy`` float ``[T, N, C]`` (channel 0 is the forecasting target; the released
    files have C = 2) and ``matrix.npy`` float32 ``[N, N]`` adjacency. The files carry no time
    axis, so the folder name gives the defaults: ``metr-la``/``pems-bay`` 5 min speed (mph),
    ``chengdu_m``/``shenzhen`` 10 min speed (km/h), ``DC``/``BM``/``man``/``bj`` (also
    ``Data_DC`` ...) 60 min crowd flow. In speed data 0 means missing. Any other folder needs
    ``interval_minutes`` (or a ``city.yaml`` in the folder with ``interval_minutes:``; it may also
    set ``name``, ``kind``, ``units``, ``start``). ``start`` defaults to 2000-01-03 (a Monday),
    recorded in ``City.source`` as unknown. ``options``: ``name``, ``kind``, ``units``, ``source``
    (also from ``city.yaml``).
    """
    d = _require_dir(folder, "GPD data folder")
    data_path = _require_file(d / "dataset.npy", "GPD series file")
    adj_path = _require_file(d / "matrix.npy", "GPD adjacency file")
    meta = opt.resolve(d, {"interval_minutes": interval_minutes, "start": start, **options}, GPD_OPTIONS, "GPD")
    key = d.name.lower()
    key = key[len("data_"):] if key.startswith("data_") else key
    key = "chengdu_m" if key == "chengdu" else key
    default = GPD_DEFAULTS.get(key)
    interval = meta.get("interval_minutes") or (default[0] if default else None)
    if interval is None:
        raise GpdiffError(
            f"{d}: unknown GPD folder name {d.name!r}, so the time step is unknown; state it: "
            f"{how_to_set('interval_minutes', 'N')} (Python: interval_minutes=; known names: "
            f"{', '.join(sorted(GPD_DEFAULTS))})."
        )
    kind = str(meta.get("kind") or (default[1] if default else "flow"))
    units = str(meta.get("units") or (default[2] if default else ("count" if kind == "flow" else "unknown")))
    data = _load_npy(data_path)
    if data.ndim != 3:
        raise GpdiffError(
            f"{data_path}: array of rank {data.ndim} with shape {data.shape}; expected [T, N, C] (time, nodes, "
            "features), e.g. save x[:, :, None] for a [T, N] array."
        )
    adj = _load_npy(adj_path).astype(np.float64)
    _check_adjacency(adj, data.shape[1], adj_path, data_path.name)
    raw = data.astype(np.float64)
    target = raw[:, :, 0]
    mask = np.isfinite(target) & ((target != 0) if kind == "speed" else True)
    values = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0)
    values[:, :, 0] = np.where(mask, values[:, :, 0], 0.0)
    start_given = meta.get("start")
    t0 = pd.Timestamp(start_given) if start_given is not None else GPD_DEFAULT_START
    note = "" if start_given is not None else f"; true start unknown, {t0:%Y-%m-%d} assumed"
    return _make_city(
        data_path, name=str(meta.get("name") or d.name), values=values, mask=mask, start=t0,
        interval_minutes=int(interval), adjacency=adj, kind=kind, units=units,
        allow_negative=bool(meta.get("allow_negative")),
        source=str(meta.get("source") or f"GPD folder {d.name}") + note,
    )


# ----------------------------------------------------------------------------- ASTGCN
def load_astgcn(npz_path: PathLike, csv_path: PathLike | None = None, interval_minutes: int | None = None,
                ids_path: PathLike | None = None, start: str | pd.Timestamp | None = None,
                name: str | None = None, allow_negative: bool | None = None) -> City:
    """Load a PEMS03/04/07/08 file in the ASTGCN/STSGCN layout.

    ``PEMS0X.npz``: key ``data`` float ``[T, N, C]`` (channel 0 = flow; PEMS04/08 add occupancy and
    speed). ``PEMS0X.csv`` (default: beside the npz): road distances ``from,to,cost`` with an
    optional header row. ``from``/``to`` are node indices 0..N-1, unless an id file is given or
    found beside (``PEMS0X.txt``, one sensor id per line, line i = node i; PEMS03 needs it).
    The adjacency is a symmetric Gaussian kernel ``exp(-(cost / sigma)^2)`` over the listed
    pairs, sigma = standard deviation of the costs. ``start`` defaults to the published start of
    PEMS03/04/07/08, else 2000-01-03 (recorded as unknown); ``interval_minutes`` defaults to 5.
    Every option may also come from ``city.yaml`` beside the npz (:mod:`gpdiff.data.options`).
    """
    npz = _require_file(npz_path, "ASTGCN data file")
    o = opt.resolve(npz.parent, {"csv_path": csv_path, "interval_minutes": interval_minutes, "ids_path": ids_path,
                                 "start": start, "name": name, "allow_negative": allow_negative},
                    ASTGCN_OPTIONS, "ASTGCN")
    csv_path, ids_path, start, name = o.get("csv_path"), o.get("ids_path"), o.get("start"), o.get("name")
    interval_minutes = int(o.get("interval_minutes") or 5)
    csv_file = Path(csv_path) if csv_path is not None else npz.with_suffix(".csv")
    csv_file = _require_file(csv_file, "ASTGCN distance file (from,to,cost)")
    try:
        with np.load(npz, allow_pickle=False) as z:
            if "data" not in z.files:
                raise GpdiffError(f"{npz} has no array 'data' (it has: {', '.join(z.files)}); "
                                  "ASTGCN files store the series under the key 'data'.")
            data = np.asarray(z["data"], dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise GpdiffError(f"{npz} is not a readable .npz file ({exc}); check the file.") from None
    if data.ndim != 3:
        raise GpdiffError(f"{npz}: 'data' has rank {data.ndim} with shape {data.shape}; expected [T, N, C] "
                          "(time, nodes, features).")
    n = data.shape[1]
    id_file = Path(ids_path) if ids_path is not None else npz.with_suffix(".txt")
    ids: list[str] | None = None
    if ids_path is not None or id_file.is_file():
        ids = [ln.strip() for ln in _require_file(id_file, "sensor id file").read_text().splitlines() if ln.strip()]
        if len(ids) != n:
            raise GpdiffError(f"{id_file}: {len(ids)} sensor ids for {n} nodes in {npz.name}; "
                              "use the id file of this dataset (one id per line).")
    adj = _distance_csv_to_adjacency(csv_file, n, ids)
    mask = np.isfinite(data[:, :, 0])
    values = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    c = data.shape[2]
    channels = ["flow", "occupancy", "speed"][:c] if c <= 3 else []
    stem = npz.stem.lower()
    t0 = pd.Timestamp(start) if start is not None else pd.Timestamp(ASTGCN_STARTS.get(stem, GPD_DEFAULT_START))
    note = "" if start is not None or stem in ASTGCN_STARTS else f"; true start unknown, {t0:%Y-%m-%d} assumed"
    return _make_city(
        npz, name=name or npz.stem, values=values, mask=mask, start=t0, interval_minutes=interval_minutes,
        adjacency=adj, kind="flow", units=f"vehicles/{interval_minutes}min", node_ids=ids or [],
        channels=channels, allow_negative=bool(o.get("allow_negative")),
        source=f"ASTGCN format: {npz.name} + {csv_file.name}{note}",
    )


def _distance_csv_to_adjacency(path: Path, n: int, ids: list[str] | None) -> np.ndarray:
    rows = [r for r in _read_csv_rows(path) if r]
    if rows and not all(_is_number(x) for x in rows[0][:3]):
        rows = rows[1:]
    index = {s: i for i, s in enumerate(ids)} if ids is not None else None
    src, dst, cost = [], [], []
    for r in rows:
        if len(r) < 3:
            raise GpdiffError(f"{path}: row {r!r} has {len(r)} fields; each row needs from,to,cost.")
        try:
            c = float(r[2])
        except ValueError:
            raise GpdiffError(f"{path}: cost {r[2]!r} in row {r!r} is not a number; fix the row.") from None
        if not np.isfinite(c) or c < 0:
            raise GpdiffError(f"{path}: cost {r[2]!r} in row {r!r} must be a finite distance >= 0.")
        ij = []
        for v in r[:2]:
            key = _id_str(v)
            if index is not None:
                if key not in index:
                    raise GpdiffError(f"{path}: node id {key!r} is not in the sensor id file; "
                                      "use the id file of this dataset.")
                ij.append(index[key])
            else:
                try:
                    k = int(float(key))
                except ValueError:
                    k = -1
                if not 0 <= k < n:
                    raise GpdiffError(f"{path}: node {key!r} is not an index in 0..{n - 1}; if the file uses "
                                      "sensor ids, give the id file (one id per line, line i = node i): "
                                      f"{how_to_set('ids_path', 'IDS.txt')} (Python: ids_path=).")
                ij.append(k)
        src.append(ij[0])
        dst.append(ij[1])
        cost.append(c)
    if not cost:
        raise GpdiffError(f"{path} lists no edges; it needs rows from,to,cost.")
    d = np.asarray(cost)
    sigma = float(d.std()) or float(d.mean()) or 1.0
    w = np.exp(-((d / sigma) ** 2))
    adj = np.zeros((n, n))
    np.maximum.at(adj, (np.asarray(src), np.asarray(dst)), w)
    return np.maximum(adj, adj.T)


# ------------------------------------------------------------------------ city folder
def load_city_folder(folder: PathLike, **options: Any) -> City:
    """Load gpdiff's own folder format.

    - ``series.csv`` (required): first column timestamps (e.g. ``2012-03-01 00:05``), then one
      column per node; the header row holds the node ids. An empty cell is a missing value. The
      separator (``,`` ``;`` tab), a decimal comma and a leading unnamed index column are detected
      (:mod:`gpdiff.data.formats.widecsv`). Day-first dates and UTC offsets are read as described in
      :mod:`gpdiff.data.timeaxis`. The interval is the most common time difference; missing rows
      are filled as missing; duplicated, unsorted or off-grid timestamps are an error.
    - graph, one of: ``adjacency.csv`` (N x N weights, optionally with a header row of node ids,
      then reordered to the series columns, and optionally an index column); ``edges.csv``
      (columns ``from,to[,weight]``, weight 1 if absent; made symmetric); or neither, when
      ``nodes.csv`` has coordinates (a Gaussian-kernel 8-nearest-neighbour graph is built). With
      none of these the city has no edges, which STID accepts and the graph models refuse
      (:func:`gpdiff.models.require_graph`).
    - ``nodes.csv`` (optional): columns ``id``, ``lat``, ``lon`` (or ``x``, ``y`` in metres), then
      any numeric attribute columns (kept as node attributes). Rows of unknown ids are ignored.
    - ``city.yaml`` (optional) and ``options``: ``name``, ``kind`` (``flow`` default, or ``speed``:
      then 0 is missing too), ``units``, ``source``, ``channels`` (names; channel k >= 1 is read
      from ``channel<k>.csv``, laid out like series.csv), ``interval_minutes``, ``time_format``,
      ``tz``, ``sep``, ``decimal``, ``allow_gaps`` (see :mod:`gpdiff.data.options`).
    """
    d = _require_dir(folder, "city folder")
    series_path = _require_file(d / "series.csv", "series file")
    meta = opt.resolve(d, options, CITY_FOLDER_OPTIONS, "city folder")
    kind = str(meta.get("kind", "flow"))
    if kind not in KINDS:
        raise GpdiffError(f"{d / 'city.yaml'}: kind {kind!r} is not one of {KINDS}; fix the kind line.")
    read = {k: meta.get(k) for k in ("time_format", "tz", "sep", "decimal")}
    table = read_wide_csv(series_path, **read)
    times, ids, target = table.times, table.ids, table.values
    mask = np.isfinite(target) & ((target != 0) if kind == "speed" else True)
    channel_names = [str(c) for c in meta.get("channels", [])] or ["target"]
    layers = [np.where(mask, target, 0.0)]
    for k in range(1, len(channel_names)):
        cpath = _require_file(d / f"channel{k}.csv", f"file of channel {channel_names[k]!r} (listed in city.yaml)")
        ctable = read_wide_csv(cpath, **read)
        layers.append(np.nan_to_num(_align_channel(cpath, ctable, times, ids), nan=0.0))
    interval = meta.get("interval_minutes")
    grid = regular_grid(times, series_path, int(interval) if interval else None, first_line=2,
                        allow_gaps=bool(meta.get("allow_gaps")))
    values, mask = place_on_grid(np.stack(layers, axis=2), mask, grid)

    coords, coord_kind, attributes, attr_names = None, "latlon", None, []
    nodes_path = d / "nodes.csv"
    if nodes_path.is_file():
        coords, coord_kind, attributes, attr_names = _read_nodes_csv(nodes_path, ids)
    adj_path, edges_path = d / "adjacency.csv", d / "edges.csv"
    if adj_path.is_file() and edges_path.is_file():
        raise GpdiffError(f"{d} has both adjacency.csv and edges.csv; keep only one graph file.")
    if adj_path.is_file():
        adjacency, graph_note = _read_adjacency_csv(adj_path, ids), adj_path.name
    elif edges_path.is_file():
        adjacency, graph_note = _read_edges_csv(edges_path, ids), edges_path.name
    elif coords is not None:
        adjacency = gaussian_knn_adjacency(coords, k=8, latlon=coord_kind == "latlon")
        graph_note = "8-NN Gaussian graph from nodes.csv"
    else:  # no graph: a model that needs one refuses the city (gpdiff.models.require_graph); STID runs without
        adjacency = np.zeros((len(ids), len(ids)), dtype=np.float32)
        graph_note = ("none: no adjacency.csv, edges.csv or nodes.csv with coordinates, so base models that "
                      "need a graph refuse this city")
    notes = list(table.notes) + ([f"{grid.filled} missing timestamps filled as missing"] if grid.filled else [])
    default_units = "count" if kind == "flow" else "unknown"
    return _make_city(
        series_path, name=str(meta.get("name") or d.name), values=values, mask=mask, start=grid.start,
        interval_minutes=grid.interval_minutes, adjacency=adjacency, kind=kind,
        units=str(meta.get("units") or default_units), node_ids=ids, channels=channel_names, coords=coords,
        coord_kind=coord_kind, attributes=attributes, attribute_names=attr_names,
        allow_negative=bool(meta.get("allow_negative")),
        source=str(meta.get("source") or f"city folder {d.name} (graph: {graph_note})") + "".join(f"; {n}" for n in notes),
    )


def _align_channel(path: Path, table: Any, times: pd.DatetimeIndex, ids: list[str]) -> np.ndarray:
    """``table``'s values ``[T, N]`` in the node order of series.csv; :class:`GpdiffError` saying whether the
    timestamps or the node columns differ. Columns that hold the same ids in another order are reordered."""
    if not table.times.equals(times):
        if len(table.times) != len(times):
            diff = f"{len(table.times)} timestamps, series.csv has {len(times)}"
        else:
            at = int(np.flatnonzero(table.times != times)[0])
            diff = f"line {at + 2} has the time {table.times[at]}, series.csv {times[at]}"
        raise GpdiffError(f"{path}: its timestamps differ from series.csv ({diff}); give every channel file "
                          "the same time rows as series.csv.")
    if table.ids != ids:
        missing = [i for i in ids if i not in table.ids]
        extra = [i for i in table.ids if i not in ids]
        if missing or extra:
            raise GpdiffError(f"{path}: its node columns differ from series.csv (missing {missing[:3]}, unknown "
                              f"{extra[:3]}); head its columns with the node ids of series.csv.")
        pos = {c: j for j, c in enumerate(table.ids)}
        return table.values[:, [pos[i] for i in ids]]
    return table.values


def _read_nodes_csv(path: Path, ids: list[str]) -> tuple[np.ndarray | None, str, np.ndarray | None, list[str]]:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        raise GpdiffError(f"{path} is not a valid CSV table ({exc}); fix the file.".splitlines()[0]) from None
    cols = {c.strip().lower(): c for c in df.columns}
    if "id" not in cols:
        raise GpdiffError(f"{path}: needs an 'id' column naming each node as in the series.csv header.")
    node_col = df[cols["id"]].str.strip()
    dup = node_col[node_col.duplicated()]
    if len(dup):
        raise GpdiffError(f"{path}: node id {dup.iloc[0]!r} appears in more than one row; keep one row per node.")
    missing = [i for i in ids if i not in set(node_col)]
    if missing:
        raise GpdiffError(f"{path}: no row for {len(missing)} node(s) of series.csv (e.g. {missing[:3]}); "
                          "add a row for every node.")
    df = df.set_index(node_col).loc[ids]
    used = {cols["id"]}
    coords, coord_kind = None, "latlon"
    # coords are stored as (lat, lon) for "latlon" and as (x, y) for "xy"
    for first_names, second_names, kind in ((("lat", "latitude"), ("lon", "lng", "longitude"), "latlon"),
                                            (("x",), ("y",), "xy")):
        first = next((cols[n] for n in first_names if n in cols), None)
        second = next((cols[n] for n in second_names if n in cols), None)
        if first is not None and second is not None:
            coords = np.stack([_numeric_column(df, first, path), _numeric_column(df, second, path)], axis=1)
            coord_kind = kind
            fault = coordinate_fault(coords, kind)
            if fault is not None:
                node = ids[fault[0]]
                line = int(np.flatnonzero((node_col == node).to_numpy())[0]) + 2
                raise GpdiffError(f"{path}: node {node!r} (line {line}) {fault[1]}.")
            used |= {first, second}
            break
    attr_cols = [c for c in df.columns if c not in used]
    attributes = np.stack([_numeric_column(df, c, path) for c in attr_cols], axis=1) if attr_cols else None
    return coords, coord_kind, attributes, [str(c).strip() for c in attr_cols]


def _numeric_column(df: pd.DataFrame, col: str, path: Path) -> np.ndarray:
    s = df[col].str.strip()
    conv = pd.to_numeric(s.replace("", np.nan), errors="coerce")
    if conv.isna().any():
        at = int(np.flatnonzero(conv.isna().to_numpy())[0])
        val, node = s.iloc[at], df.index[at]
        if val == "":
            raise GpdiffError(f"{path}: column {col!r} is empty for node {node!r}; fill every cell.")
        raise GpdiffError(f"{path}: column {col!r} is not numeric (value {val!r} for node {node!r}); node "
                          "attributes must be numbers: encode categories as 0/1 columns or remove the column.")
    return conv.to_numpy(dtype=np.float64)


def _read_adjacency_csv(path: Path, ids: list[str]) -> np.ndarray:
    rows = [r for r in _read_csv_rows(path) if any(x.strip() for x in r)]
    n = len(ids)
    if not rows:
        raise GpdiffError(f"{path} is empty; it needs {n} rows of {n} weights.")
    header: list[str] | None = None
    if not all(_is_number(x) for x in rows[0]) or len(rows) == len(rows[0]) + 1:
        header, rows = [h.strip() for h in rows[0]], rows[1:]
    if rows and all(len(r) == len(rows) + 1 for r in rows):  # an index column of node ids
        rows = [r[1:] for r in rows]
        if header is not None and len(header) == len(rows) + 1:
            header = header[1:]
    if any(len(r) != len(rows[0]) for r in rows) or len(rows) != len(rows[0]):
        raise GpdiffError(f"{path}: not a square table ({len(rows)} rows, row lengths "
                          f"{sorted({len(r) for r in rows})}); write {n} rows of {n} weights.")
    try:
        adj = np.array([[float(x) if x.strip() else np.nan for x in r] for r in rows], dtype=np.float64)
    except ValueError as exc:
        raise GpdiffError(f"{path}: {exc}; every weight must be a number.") from None
    if header is not None:
        if len(header) != len(adj):
            raise GpdiffError(f"{path}: {len(header)} ids in the header for a {len(adj)}x{len(adj)} table.")
        if sorted(header) != sorted(ids):
            miss = [i for i in ids if i not in header][:3]
            extra = [h for h in header if h not in ids][:3]
            raise GpdiffError(f"{path}: header ids do not match series.csv (missing {miss}, unknown {extra}); "
                              "use the same node ids in both files.")
        pos = {h: i for i, h in enumerate(header)}
        order = [pos[i] for i in ids]
        adj = adj[np.ix_(order, order)]
    _check_adjacency(adj, n, path, "series.csv")
    return adj


def _read_edges_csv(path: Path, ids: list[str]) -> np.ndarray:
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        raise GpdiffError(f"{path} is not a valid CSV table ({exc}); fix the file.".splitlines()[0]) from None
    cols = {c.strip().lower(): c for c in df.columns}
    if "from" not in cols or "to" not in cols:
        raise GpdiffError(f"{path}: needs columns from,to (and optionally weight); found {list(df.columns)}.")
    pos = {s: i for i, s in enumerate(ids)}
    src, dst = df[cols["from"]].str.strip(), df[cols["to"]].str.strip()
    for s in (src, dst):
        unknown = s[~s.isin(pos)]
        if len(unknown):
            raise GpdiffError(f"{path}: node id {unknown.iloc[0]!r} is not a column of series.csv; "
                              "use the node ids of series.csv.")
    if "weight" in cols:
        w = pd.to_numeric(df[cols["weight"]].str.strip().replace("", "1"), errors="coerce")
        if w.isna().any() or (w < 0).any():
            at = int(np.flatnonzero((w.isna() | (w < 0)).to_numpy())[0])
            raise GpdiffError(f"{path}: weight {df[cols['weight']].iloc[at]!r} (line {at + 2}) must be a number "
                              ">= 0.")
        weights = w.to_numpy(dtype=np.float64)
    else:
        weights = np.ones(len(df))
    adj = np.zeros((len(ids), len(ids)))
    i, j = src.map(pos).to_numpy(dtype=np.int64), dst.map(pos).to_numpy(dtype=np.int64)
    np.maximum.at(adj, (i, j), weights)
    return np.maximum(adj, adj.T)


# ------------------------------------------------------------------------------ export
def write_city_folder(city: City, folder: PathLike) -> Path:
    """Write ``city`` in the city-folder format (see :func:`load_city_folder`); returns the folder.

    Reading it back gives the same city up to float32 rounding. In a speed city a value of
    exactly 0 reads back as missing (the speed convention). Existing files of the format in
    ``folder`` are replaced (an old ``edges.csv`` / ``nodes.csv`` / ``channel<k>.csv`` is removed).
    """
    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    stamps = city.timestamps.strftime("%Y-%m-%d %H:%M:%S")

    def table(layer: np.ndarray) -> str:
        df = pd.DataFrame(layer, index=pd.Index(stamps, name="timestamp"), columns=city.node_ids)
        return df.to_csv(float_format="%.9g", na_rep="")

    atomic_write_text(d / "series.csv", table(city.target()))
    for k in range(1, city.n_channels):
        atomic_write_text(d / f"channel{k}.csv", table(city.values[:, :, k]))
    for stale in ("adjacency.csv", "edges.csv", "nodes.csv"):
        (d / stale).unlink(missing_ok=True)
    if np.any(city.adjacency) or city.coords is not None:  # else no graph file (coordinates would build one)
        adj = pd.DataFrame(city.adjacency, columns=city.node_ids)
        atomic_write_text(d / "adjacency.csv", adj.to_csv(index=False, float_format="%.9g"))
    for extra in d.glob("channel*.csv"):  # channels of a city written here before, beyond this one's
        if extra.stem[len("channel"):].isdigit() and int(extra.stem[len("channel"):]) >= city.n_channels:
            extra.unlink()
    if city.coords is not None or city.attributes is not None:
        nodes = pd.DataFrame({"id": city.node_ids})
        if city.coords is not None:
            if city.coord_kind == "latlon":
                nodes["lat"], nodes["lon"] = city.coords[:, 0], city.coords[:, 1]
            else:
                nodes["x"], nodes["y"] = city.coords[:, 0], city.coords[:, 1]
        if city.attributes is not None:
            for j, a in enumerate(city.attribute_names):
                nodes[a] = city.attributes[:, j].astype(np.float64)
        atomic_write_text(d / "nodes.csv", nodes.to_csv(index=False, float_format="%.17g"))
    write_yaml(d / "city.yaml", {"name": city.name, "kind": city.kind, "units": city.units,
                                 "source": city.source, "channels": list(city.channels)})
    return d


# ---------------------------------------------------------------------- graph helpers
def _check_adjacency(adj: np.ndarray, n: int, path: Path, series_name: str) -> None:
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise GpdiffError(f"{path}: adjacency shape {adj.shape} is not square; write an N x N matrix.")
    if adj.shape[0] != n:
        raise GpdiffError(f"{path}: adjacency is {adj.shape[0]}x{adj.shape[1]} but {series_name} has {n} nodes; "
                          "the graph and the series must list the same nodes in the same order.")
    if not np.all(np.isfinite(adj)):
        i, j = (int(v) for v in np.argwhere(~np.isfinite(adj))[0])
        raise GpdiffError(f"{path}: adjacency has a missing/NaN/inf weight at row {i}, column {j}; "
                          "write 0 where two nodes are not linked.")
    if (adj < 0).any():
        i, j = (int(v) for v in np.argwhere(adj < 0)[0])
        raise GpdiffError(f"{path}: negative weight {adj[i, j]:g} at row {i}, column {j}; weights must be >= 0.")


# ----------------------------------------------------------------------- file helpers
def _make_city(origin: Path, **kwargs: Any) -> City:
    """Build a City; its validation errors name the file they came from."""
    try:
        return City(**kwargs)
    except GpdiffError as exc:
        raise GpdiffError(f"{origin}: {exc}") from None


def _require_file(path: PathLike, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise GpdiffError(f"{what} {p} does not exist; check the path or add the file.")
    return p


def _require_dir(path: PathLike, what: str) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise GpdiffError(f"{what} {p} does not exist or is not a folder; check the path.")
    return p


def _load_npy(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise GpdiffError(f"{path} is not a readable numeric .npy array ({exc}); save it with numpy.save.") \
            from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiub":
        raise GpdiffError(f"{path} does not hold a numeric array; save a float array with numpy.save.")
    return arr


def _read_csv_rows(path: Path) -> list[list[str]]:
    try:
        with path.open(newline="") as f:
            return [r for r in csv.reader(f)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GpdiffError(f"{path} is not a readable CSV file ({exc}); check the file.") from None


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True
