"""gpdiff's own city-folder format (``series.csv``, a graph file, ``nodes.csv``, ``city.yaml``): read by
:func:`load_city_folder`, written by :func:`write_city_folder`. Human-editable; every city exports to it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpdiff.data import options as opt
from gpdiff.data.city import KINDS, City, coordinate_fault
from gpdiff.data.formats.common import (
    PathLike,
    _check_adjacency,
    _is_number,
    _make_city,
    _read_csv_rows,
    _require_dir,
    _require_file,
)
from gpdiff.data.formats.widecsv import read_wide_csv
from gpdiff.data.graph import gaussian_knn_adjacency
from gpdiff.data.timeaxis import Grid, place_on_grid, regular_grid
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import atomic_write_text, write_yaml

#: the options (keyword arguments, city.yaml keys, --option) the reader takes; see gpdiff.data.options
CITY_FOLDER_OPTIONS = ("name", "kind", "units", "source", "channels", "interval_minutes", "time_format", "tz", "sep",
                       "decimal", "allow_gaps", "allow_negative")


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
    series = _read_series(d, series_path, meta, kind)
    coords, coord_kind, attributes, attr_names = None, "latlon", None, []
    nodes_path = d / "nodes.csv"
    if nodes_path.is_file():
        coords, coord_kind, attributes, attr_names = _read_nodes_csv(nodes_path, series.ids)
    adjacency, graph_note = _read_graph(d, series.ids, coords, coord_kind)
    default_units = "count" if kind == "flow" else "unknown"
    return _make_city(
        series_path, name=str(meta.get("name") or d.name), values=series.values, mask=series.mask,
        start=series.grid.start, interval_minutes=series.grid.interval_minutes, adjacency=adjacency, kind=kind,
        units=str(meta.get("units") or default_units), node_ids=series.ids, channels=series.channels,
        coords=coords, coord_kind=coord_kind, attributes=attributes, attribute_names=attr_names,
        allow_negative=bool(meta.get("allow_negative")),
        source=str(meta.get("source") or f"city folder {d.name} (graph: {graph_note})")
        + "".join(f"; {n}" for n in series.notes),
    )


@dataclass
class _Series:
    """series.csv and its channel files on the regular time grid."""

    values: np.ndarray  # [T, N, C] float, 0 where missing
    mask: np.ndarray  # [T, N] bool, True where observed
    ids: list[str]  # [N] node ids, the series.csv header
    channels: list[str]  # [C] channel names
    grid: Grid  # the regular time grid (start, interval, filled rows)
    notes: list[str]  # what reading fixed or filled, for the city's source line


def _read_series(d: Path, series_path: Path, meta: dict[str, Any], kind: str) -> _Series:
    """series.csv (and ``channel<k>.csv`` for the channels city.yaml lists) placed on the regular time
    grid; a ``speed`` city's zeros are missing. Raises :class:`GpdiffError` for a missing channel file,
    one that does not line up with series.csv, or an irregular time axis."""
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
    notes = list(table.notes) + ([f"{grid.filled} missing timestamps filled as missing"] if grid.filled else [])
    return _Series(values, mask, ids, channel_names, grid, notes)


def _read_graph(d: Path, ids: list[str], coords: np.ndarray | None, coord_kind: str) -> tuple[np.ndarray, str]:
    """The city's adjacency ``[N, N]`` and a note saying where it came from: adjacency.csv, edges.csv,
    an 8-nearest-neighbour Gaussian graph from the coordinates, or no edges. Raises
    :class:`GpdiffError` when both graph files exist."""
    adj_path, edges_path = d / "adjacency.csv", d / "edges.csv"
    if adj_path.is_file() and edges_path.is_file():
        raise GpdiffError(f"{d} has both adjacency.csv and edges.csv; keep only one graph file.")
    if adj_path.is_file():
        return _read_adjacency_csv(adj_path, ids), adj_path.name
    if edges_path.is_file():
        return _read_edges_csv(edges_path, ids), edges_path.name
    if coords is not None:
        return gaussian_knn_adjacency(coords, k=8, latlon=coord_kind == "latlon"), "8-NN Gaussian graph from nodes.csv"
    # no graph: a model that needs one refuses the city (gpdiff.models.require_graph); STID runs without
    return (np.zeros((len(ids), len(ids)), dtype=np.float32),
            "none: no adjacency.csv, edges.csv or nodes.csv with coordinates, so base models that need a graph "
            "refuse this city")


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
    # Python's float() parses a decimal string to the nearest double, as the writer's repr() printed it;
    # pandas 2's to_numeric may land one ulp off, so a written city would not read back exactly
    conv = pd.Series([_float_or_nan(v) for v in s], index=s.index, dtype=np.float64)
    if conv.isna().any():
        at = int(np.flatnonzero(conv.isna().to_numpy())[0])
        val, node = s.iloc[at], df.index[at]
        if val == "":
            raise GpdiffError(f"{path}: column {col!r} is empty for node {node!r}; fill every cell.")
        raise GpdiffError(f"{path}: column {col!r} is not numeric (value {val!r} for node {node!r}); node "
                          "attributes must be numbers: encode categories as 0/1 columns or remove the column.")
    return conv.to_numpy(dtype=np.float64)


def _float_or_nan(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


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
