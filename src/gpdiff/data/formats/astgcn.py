"""PEMS03/04/07/08 in the ASTGCN/STSGCN layout: ``PEMS0X.npz`` (flow ``[T, N, C]``) + the road-distance
CSV ``PEMS0X.csv`` (``from,to,cost``), turned into a Gaussian-kernel graph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gpdiff.data import options as opt
from gpdiff.data.city import City
from gpdiff.data.formats.common import UNKNOWN_START, PathLike, _is_number, _make_city, _read_csv_rows, _require_file
from gpdiff.data.formats.graphpickle import id_str as _id_str
from gpdiff.data.timeaxis import how_to_set
from gpdiff.utils.errors import GpdiffError

#: Published start dates of the ASTGCN/STSGCN PEMS files (5-minute flow).
ASTGCN_STARTS: dict[str, str] = {
    "pems03": "2018-09-01", "pems04": "2018-01-01", "pems07": "2017-05-01", "pems08": "2016-07-01",
}

#: the options (keyword arguments, city.yaml keys, --option) the reader takes; see gpdiff.data.options
ASTGCN_OPTIONS = ("name", "csv_path", "ids_path", "interval_minutes", "start", "allow_negative")


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
    t0 = pd.Timestamp(start) if start is not None else pd.Timestamp(ASTGCN_STARTS.get(stem, UNKNOWN_START))
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
