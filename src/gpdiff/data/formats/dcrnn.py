"""METR-LA / PEMS-BAY in the DCRNN release layout: a pandas HDF5 store of speeds, the graph pickle
(:mod:`gpdiff.data.formats.graphpickle`) and optional sensor coordinates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpdiff.data import options as opt
from gpdiff.data.city import City, coordinate_fault
from gpdiff.data.formats.common import PathLike, _is_number, _make_city, _read_csv_rows, _require_file
from gpdiff.data.formats.graphpickle import id_str as _id_str
from gpdiff.data.formats.graphpickle import read_graph_pickle
from gpdiff.data.timeaxis import how_to_set, place_on_grid, regular_grid
from gpdiff.utils.errors import GpdiffError

#: the options (keyword arguments, city.yaml keys, --option) the reader takes; see gpdiff.data.options
DCRNN_OPTIONS = ("name", "key", "adj_pkl_path", "locations_path", "allow_gaps")


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
