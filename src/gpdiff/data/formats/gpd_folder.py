"""GPD / ST-GFSL data folders: ``dataset.npy`` ``[T, N, C]`` + ``matrix.npy`` ``[N, N]``, the time axis
from the folder name (:data:`GPD_DEFAULTS`) or ``city.yaml``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from gpdiff.data import options as opt
from gpdiff.data.city import City
from gpdiff.data.formats.common import (
    UNKNOWN_START,
    PathLike,
    _check_adjacency,
    _load_npy,
    _make_city,
    _require_dir,
    _require_file,
)
from gpdiff.data.timeaxis import how_to_set
from gpdiff.utils.errors import GpdiffError

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

#: the options (keyword arguments, city.yaml keys, --option) the reader takes; see gpdiff.data.options
GPD_OPTIONS = ("name", "kind", "units", "source", "interval_minutes", "start", "allow_negative")


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
    t0 = pd.Timestamp(start_given) if start_given is not None else UNKNOWN_START
    note = "" if start_given is not None else f"; true start unknown, {t0:%Y-%m-%d} assumed"
    return _make_city(
        data_path, name=str(meta.get("name") or d.name), values=values, mask=mask, start=t0,
        interval_minutes=int(interval), adjacency=adj, kind=kind, units=units,
        allow_negative=bool(meta.get("allow_negative")),
        source=str(meta.get("source") or f"GPD folder {d.name}") + note,
    )
