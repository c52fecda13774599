"""pandas in and out, for notebook users: ``City.from_pandas(df, ...)`` and ``City.to_pandas()``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gpdiff.data.graph import gaussian_knn_adjacency
from gpdiff.data.timeaxis import parse_times, place_on_grid, regular_grid
from gpdiff.utils.errors import GpdiffError

if TYPE_CHECKING:
    from gpdiff.data.city import City


def city_from_pandas(df: pd.DataFrame, adjacency: Any = None, coords: Any = None, kind: str = "flow",
                     units: str | None = None, name: str = "city", coord_kind: str = "latlon",
                     interval_minutes: int | None = None, allow_gaps: bool = False,
                     allow_negative: bool = False) -> City:
    """A :class:`City` from a DataFrame indexed by time with one column per node (see ``City.from_pandas``)."""
    from gpdiff.data.city import City

    where = f"DataFrame for city {name!r}"
    if not isinstance(df, pd.DataFrame) or df.shape[1] == 0:
        raise GpdiffError(f"{where}: give a DataFrame indexed by time with one column per node.")
    ids = [str(c) for c in df.columns]
    try:
        raw = df.apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GpdiffError(f"{where}: every column must be numeric ({exc}).") from None
    times, _ = parse_times(df.index, where, first_line=None)  # type: ignore[arg-type]
    grid = regular_grid(times, where, interval_minutes, allow_gaps=allow_gaps)  # type: ignore[arg-type]
    mask = np.isfinite(raw) & ((raw != 0) if kind == "speed" else True)
    values, mask = place_on_grid(np.where(mask, raw, 0.0)[:, :, None], mask, grid)
    xy = _by_node(coords, ids, "coords", where, columns=False) if coords is not None else None
    if adjacency is not None:
        adj = _by_node(adjacency, ids, "adjacency", where, columns=True)
    elif xy is not None:
        adj = gaussian_knn_adjacency(xy, k=8, latlon=coord_kind == "latlon")
    else:
        raise GpdiffError(f"{where}: give adjacency= (an N x N matrix or a DataFrame of node ids) or coords= to "
                          "build a k-nearest-neighbour graph from.")
    return City(name=name, values=values, mask=mask, start=grid.start, interval_minutes=grid.interval_minutes,
                adjacency=adj, kind=kind, units=units or ("count" if kind == "flow" else "unknown"), node_ids=ids,
                channels=[kind], coords=xy, coord_kind=coord_kind, source="pandas DataFrame",
                allow_negative=allow_negative)


def _by_node(obj: Any, ids: list[str], what: str, where: str, columns: bool) -> np.ndarray:
    """``obj`` as an array in node order: a DataFrame is reordered by its node-id index (and columns)."""
    if isinstance(obj, pd.DataFrame):
        frame = obj.copy()
        frame.index = frame.index.map(str)
        missing = [i for i in ids if i not in frame.index]
        if missing:
            raise GpdiffError(f"{where}: {what} has no row for node(s) {missing[:3]}; index it by the df's column names.")
        frame = frame.loc[ids]
        if columns:
            frame.columns = frame.columns.map(str)
            frame = frame[ids] if set(ids) <= set(frame.columns) else frame
        return frame.to_numpy(dtype=np.float64)
    arr = np.asarray(obj, dtype=np.float64)
    if arr.shape[0] != len(ids):
        raise GpdiffError(f"{where}: {what} has {arr.shape[0]} rows for {len(ids)} node columns; give one row per "
                          "node in column order.")
    return arr


def city_to_pandas(city: City, channel: int = 0) -> pd.DataFrame:
    """``[T, N]`` DataFrame of one channel: index the city's timestamps (``time``), columns its node ids;
    NaN where the target (channel 0) is missing."""
    if not 0 <= channel < city.n_channels:
        raise GpdiffError(f"city {city.name!r} has channels 0..{city.n_channels - 1}, not {channel}.")
    layer = city.target() if channel == 0 else city.values[:, :, channel]
    return pd.DataFrame(layer, index=pd.Index(city.timestamps, name="time"), columns=list(city.node_ids))
