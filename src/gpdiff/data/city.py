"""The city data model: one object every loader returns and every stage reads.

A :class:`City` is a multivariate series on a graph: ``values[T, N, C]`` (channel 0 is the
forecasting target), ``mask[T, N]`` (True where channel 0 was observed), a regular time axis
(``start`` + ``interval_minutes``), an adjacency ``[N, N]``, and optional node coordinates and
numeric node attributes.

On disk a city is one ``.city`` file: a safetensors payload (tensors + a JSON metadata header),
xz-compressed. Both steps are deterministic, so the same city always gives the same bytes.
Values that are all integers (counts) are stored as integers, which compress far better.
"""

from __future__ import annotations

import json
import lzma
import os
import struct
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import atomic_write_bytes

FORMAT_VERSION = "1"
KINDS = ("speed", "flow")
_XZ_MAGIC = b"\xfd7zXZ\x00"


def feasible(forecast: np.ndarray, kind: str) -> np.ndarray:
    """``forecast`` with the values a city of ``kind`` cannot have replaced by the nearest it can: a
    ``flow`` city counts, so negative forecasts become 0 (with non-negative truth this never raises
    an absolute error); ``speed`` forecasts are left as they are."""
    return np.maximum(forecast, 0.0).astype(forecast.dtype, copy=False) if kind == "flow" else forecast


def coordinate_fault(coords: np.ndarray, coord_kind: str) -> tuple[int, str] | None:
    """The first node whose coordinates cannot be right, as (node index, what is wrong and the fix), or None.

    ``coords`` ``[N, 2]``: (lat, lon) in degrees for ``coord_kind == "latlon"`` (latitude must lie in
    [-90, 90], longitude in [-180, 180]; when every swapped pair would be valid, lat and lon are said
    to look swapped), else (x, y) in metres (only finiteness is checked).
    """
    coords = np.asarray(coords, dtype=np.float64)
    bad = ~np.isfinite(coords).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return i, f"has the coordinates ({coords[i, 0]:g}, {coords[i, 1]:g}); give every node finite coordinates"
    if coord_kind != "latlon":
        return None
    lat, lon = coords[:, 0], coords[:, 1]
    wrong = (np.abs(lat) > 90) | (np.abs(lon) > 180)
    if not wrong.any():
        return None
    i = int(np.flatnonzero(wrong)[0])
    what, rng = (f"latitude {lat[i]:g}", "[-90, 90]") if abs(lat[i]) > 90 else (f"longitude {lon[i]:g}", "[-180, 180]")
    swapped = bool(np.all((np.abs(lon) <= 90) & (np.abs(lat) <= 180)))
    hint = ("lat and lon look swapped (swapped, every pair is valid): put latitude first" if swapped
            else "fix the coordinates (degrees: lat, lon)")
    return i, f"has {what} (lat {lat[i]:g}, lon {lon[i]:g}), outside {rng}; {hint}"


@dataclass
class City:
    """A city's spatio-temporal data. See the module docstring for the conventions."""

    name: str
    values: np.ndarray  # [T, N, C] float32, channel 0 = target; 0 where missing
    mask: np.ndarray  # [T, N] bool, True = channel 0 observed
    start: pd.Timestamp
    interval_minutes: int
    adjacency: np.ndarray  # [N, N] float32, weights >= 0, zero diagonal not required
    kind: str  # "speed" or "flow"
    units: str
    node_ids: list[str] = field(default_factory=list)
    channels: list[str] = field(default_factory=list)
    coords: np.ndarray | None = None  # [N, 2]
    coord_kind: str = "latlon"  # "latlon" (degrees: lat, lon) or "xy" (projected metres)
    attributes: np.ndarray | None = None  # [N, A] numeric node attributes
    attribute_names: list[str] = field(default_factory=list)
    source: str = ""
    allow_negative: bool = False  # flow city: negative target values are a warning, not an error

    def __post_init__(self) -> None:
        self.start = pd.Timestamp(self.start)
        self.interval_minutes = int(self.interval_minutes)
        self.node_ids = [str(n) for n in self.node_ids]
        self._check_float32_range(np.asarray(self.values))
        self.values = np.asarray(self.values, dtype=np.float32)
        if self.values.ndim == 2:
            self.values = self.values[:, :, None]
        self.mask = np.asarray(self.mask, dtype=bool)
        self.adjacency = np.asarray(self.adjacency, dtype=np.float32)
        if not self.node_ids:
            self.node_ids = [str(i) for i in range(self.values.shape[1] if self.values.ndim == 3 else 0)]
        self.node_ids = [str(n) for n in self.node_ids]
        if not self.channels and self.values.ndim == 3:
            self.channels = ["target"] + [f"c{i}" for i in range(1, self.values.shape[2])]
        if self.coords is not None:
            self.coords = np.asarray(self.coords, dtype=np.float64)
        if self.attributes is not None:
            self.attributes = np.asarray(self.attributes, dtype=np.float32)
        self.validate()

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Raise :class:`GpdiffError` naming the first inconsistency found."""
        where = f"city {self.name!r}"
        if self.values.ndim != 3:
            raise GpdiffError(
                f"{where}: values must have shape [T, N, C] (time, nodes, channels), got rank "
                f"{self.values.ndim} with shape {self.values.shape}; reshape your array."
            )
        t, n, c = self.values.shape
        if t < 2 or n < 1 or c < 1:
            raise GpdiffError(f"{where}: values shape {self.values.shape} is empty; need T >= 2, N >= 1.")
        if self.mask.shape != (t, n):
            raise GpdiffError(f"{where}: mask shape {self.mask.shape} does not match values [T, N] = {(t, n)}.")
        if self.adjacency.shape != (n, n):
            raise GpdiffError(
                f"{where}: adjacency is {self.adjacency.shape[0]}x{self.adjacency.shape[-1]} but the "
                f"series has {n} nodes; the graph and the series must list the same nodes in the same order."
            )
        if not np.all(np.isfinite(self.adjacency)) or (self.adjacency < 0).any():
            raise GpdiffError(f"{where}: adjacency has negative or non-finite weights; use weights >= 0.")
        if len(self.node_ids) != n:
            raise GpdiffError(f"{where}: {len(self.node_ids)} node ids for {n} nodes.")
        if len(set(self.node_ids)) != n:
            raise GpdiffError(f"{where}: node ids are not unique; every node needs its own id.")
        if len(self.channels) != c:
            raise GpdiffError(f"{where}: {len(self.channels)} channel names for {c} channels.")
        if self.kind not in KINDS:
            raise GpdiffError(f"{where}: kind {self.kind!r} is not one of {KINDS}.")
        if self.interval_minutes <= 0 or 1440 % self.interval_minutes:
            raise GpdiffError(
                f"{where}: interval {self.interval_minutes} min must be positive and divide a day (1440 min)."
            )
        bad = self.mask & ~np.isfinite(self.values[:, :, 0])
        if bad.any():
            t_at, n_at = (int(v) for v in np.argwhere(bad)[0])
            raise GpdiffError(
                f"{where}: node {self.node_ids[n_at]!r} has the value {self.values[t_at, n_at, 0]} at "
                f"{self._time_at(t_at)} marked observed; leave a missing value empty (NaN), not inf."
            )
        self._check_negative()
        dead = np.flatnonzero(~self.mask.any(axis=0))
        if dead.size:
            ids = ", ".join(self.node_ids[i] for i in dead[:5])
            raise GpdiffError(
                f"{where}: {dead.size} node(s) have no observed value at all (e.g. {ids}); "
                "drop them from the series and the graph."
            )
        if self.coords is not None and self.coords.shape != (n, 2):
            raise GpdiffError(f"{where}: coords shape {self.coords.shape} must be [N, 2] = {(n, 2)}.")
        if self.coord_kind not in ("latlon", "xy"):
            raise GpdiffError(f"{where}: coord_kind must be 'latlon' or 'xy', got {self.coord_kind!r}.")
        if self.coords is not None:
            self._check_coords()
        if self.attributes is not None:
            if self.attributes.ndim != 2 or self.attributes.shape[0] != n:
                raise GpdiffError(f"{where}: attributes shape {self.attributes.shape} must be [N, A].")
            if len(self.attribute_names) != self.attributes.shape[1]:
                raise GpdiffError(f"{where}: {len(self.attribute_names)} attribute names for "
                                  f"{self.attributes.shape[1]} attribute columns.")

    def _time_at(self, step: int) -> str:
        return f"{self.start + pd.Timedelta(minutes=self.interval_minutes * step):%Y-%m-%d %H:%M}"

    def _check_float32_range(self, raw: np.ndarray) -> None:
        """Refuse a finite value beyond float32's range (about +-3.4e38), naming its node and time,
        before the cast to float32 would turn it into inf (and numpy would warn on stderr)."""
        if raw.dtype.kind != "f" or raw.dtype.itemsize <= 4 or raw.ndim not in (2, 3):
            return
        big = np.isfinite(raw) & (np.abs(raw) > np.finfo(np.float32).max)
        if big.any():
            at = tuple(int(v) for v in np.argwhere(big)[0])
            node = self.node_ids[at[1]] if at[1] < len(self.node_ids) else str(at[1])
            channel = f" (channel {at[2]})" if raw.ndim == 3 and at[2] else ""
            raise GpdiffError(
                f"city {self.name!r}: node {node!r} has the value {raw[at]:g} at {self._time_at(at[0])}{channel}, "
                f"beyond the float32 range (+-{np.finfo(np.float32).max:.3g}) gpdiff computes in; fix the value, "
                "or leave the cell empty if it is a missing reading."
            )

    def _check_negative(self) -> None:
        """A ``flow`` city counts: a negative observed target (e.g. the -1 some exporters write for "no
        reading") is an error naming the node, how many cells and the first time, or a warning with
        ``allow_negative``."""
        if self.kind != "flow":
            return
        neg = self.mask & (self.values[:, :, 0] < 0)
        if not neg.any():
            return
        per_node = neg.sum(axis=0)
        first = int(np.flatnonzero(per_node)[0])
        t_at = int(np.flatnonzero(neg[:, first])[0])
        others = int(np.count_nonzero(per_node)) - 1
        msg = (f"city {self.name!r}: a flow city counts, but node {self.node_ids[first]!r} has "
               f"{int(per_node[first])} negative value(s), the first {self.values[t_at, first, 0]:g} at "
               f"{self._time_at(t_at)}" + (f" ({others} more node(s) have some too)" if others else ""))
        if self.allow_negative:
            warnings.warn(msg + "; kept, as allow_negative is true.", UserWarning, stacklevel=5)
            return
        raise GpdiffError(msg + "; if they mean 'no reading', leave those cells empty (NaN) to mark them missing, "
                          "or set allow_negative: true (city.yaml, --option allow_negative=true) to keep them.")

    def _check_coords(self) -> None:
        """Coordinates that cannot be right are an error (:func:`coordinate_fault`); all nodes at one point
        (or all at 0, 0) is a warning: a kNN graph built from them means nothing."""
        assert self.coords is not None
        where = f"city {self.name!r}"
        fault = coordinate_fault(self.coords, self.coord_kind)
        if fault is not None:
            raise GpdiffError(f"{where}: node {self.node_ids[fault[0]]!r} {fault[1]}.")
        if self.n_nodes > 1 and np.all(self.coords == self.coords[0]):
            x, y = self.coords[0]
            what = "all zero" if not np.any(self.coords) else f"all the same point ({x:g}, {y:g})"
            warnings.warn(f"{where}: the coordinates of the {self.n_nodes} nodes are {what}; a graph built from "
                          "them (k nearest neighbours) means nothing: give real coordinates or a graph file.",
                          UserWarning, stacklevel=5)

    # ------------------------------------------------------------- properties
    @property
    def n_steps(self) -> int:
        return int(self.values.shape[0])

    @property
    def n_nodes(self) -> int:
        return int(self.values.shape[1])

    @property
    def n_channels(self) -> int:
        return int(self.values.shape[2])

    @property
    def steps_per_day(self) -> int:
        return 1440 // self.interval_minutes

    @property
    def timestamps(self) -> pd.DatetimeIndex:
        return pd.date_range(self.start, periods=self.n_steps, freq=pd.Timedelta(minutes=self.interval_minutes))

    @property
    def end(self) -> pd.Timestamp:
        return self.start + pd.Timedelta(minutes=self.interval_minutes * (self.n_steps - 1))

    @property
    def n_edges(self) -> int:
        """Number of non-zero off-diagonal adjacency entries."""
        a = self.adjacency.copy()
        np.fill_diagonal(a, 0)
        return int(np.count_nonzero(a))

    def time_of_day(self) -> np.ndarray:
        """Fraction of the day in [0, 1) for every step, ``[T]`` float32."""
        ts = self.timestamps
        return ((ts.hour * 60 + ts.minute) / 1440.0).to_numpy(dtype=np.float32)

    def day_of_week(self) -> np.ndarray:
        """Day of week (Monday = 0) for every step, ``[T]`` int64."""
        return self.timestamps.day_of_week.to_numpy(dtype=np.int64)

    def target(self) -> np.ndarray:
        """Channel 0 with NaN where missing, ``[T, N]`` float32."""
        out = self.values[:, :, 0].copy()
        out[~self.mask] = np.nan
        return out

    def subset_time(self, start: int, stop: int) -> City:
        """A copy restricted to steps ``[start, stop)``."""
        return City(
            name=self.name, values=self.values[start:stop], mask=self.mask[start:stop],
            start=self.start + pd.Timedelta(minutes=self.interval_minutes * start),
            interval_minutes=self.interval_minutes, adjacency=self.adjacency, kind=self.kind,
            units=self.units, node_ids=list(self.node_ids), channels=list(self.channels),
            coords=self.coords, coord_kind=self.coord_kind, attributes=self.attributes,
            attribute_names=list(self.attribute_names), source=self.source, allow_negative=self.allow_negative,
        )

    def fingerprint(self) -> str:
        """Content hash of the city: values, mask, graph, time axis and node ids (stage keys, and a
        pretrained model's record of its sources)."""
        from gpdiff.utils.hashing import hash_arrays

        return hash_arrays(self.values, self.mask, self.adjacency,
                           extra=[str(self.start), self.interval_minutes, list(self.node_ids)])

    def summary(self) -> dict[str, object]:
        return {
            "name": self.name, "kind": self.kind, "nodes": self.n_nodes, "steps": self.n_steps,
            "interval": f"{self.interval_minutes} min",
            "span": f"{self.start:%Y-%m-%d %H:%M} .. {self.end:%Y-%m-%d %H:%M}" + (f" {self.start.tz}" if self.start.tz
                                                                               else ""),
            "days": round(self.n_steps / self.steps_per_day, 1), "edges": self.n_edges,
        }

    # ---------------------------------------------------------------- pandas
    @classmethod
    def from_pandas(cls, df: pd.DataFrame, adjacency: object = None, coords: object = None, kind: str = "flow",
                    units: str | None = None, name: str = "city", coord_kind: str = "latlon",
                    interval_minutes: int | None = None, allow_gaps: bool = False,
                    allow_negative: bool = False) -> City:
        """A city from a DataFrame indexed by time (``[T]`` timestamps, or text read as times), one
        numeric column per node (column names = node ids; NaN = missing; in speed data 0 too).

        ``adjacency``: ``[N, N]`` weights in column order, or a DataFrame indexed (and headed) by node
        id. ``coords``: ``[N, 2]`` (lat, lon) or (x, y) by ``coord_kind``, or a DataFrame indexed by
        node id; with no adjacency an 8-nearest-neighbour Gaussian graph is built from them. The
        interval is the most common time difference unless ``interval_minutes``; ``allow_negative``
        keeps negative values of a ``flow`` city with a warning. Raises
        :class:`GpdiffError` as the file readers do (irregular times, size mismatches ...).
        """
        from gpdiff.data.frames import city_from_pandas

        return city_from_pandas(df, adjacency, coords, kind, units, name, coord_kind, interval_minutes, allow_gaps,
                                allow_negative)

    def to_pandas(self, channel: int = 0) -> pd.DataFrame:
        """Channel ``channel`` as a ``[T, N]`` DataFrame indexed by time (``time``), columns the node ids,
        NaN where the target is missing."""
        from gpdiff.data.frames import city_to_pandas

        return city_to_pandas(self, channel)

    # --------------------------------------------------------------- storage
    def to_bytes(self, compress: bool = True) -> bytes:
        values = np.where(self.mask[:, :, None] | (np.arange(self.n_channels) > 0), self.values, 0)
        values = np.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)
        tensors: dict[str, np.ndarray] = {
            "values": _compact(values),
            "mask": np.ascontiguousarray(self.mask),
            "adjacency": np.ascontiguousarray(self.adjacency, dtype=np.float32),
        }
        if self.coords is not None:
            tensors["coords"] = np.ascontiguousarray(self.coords, dtype=np.float64)
        if self.attributes is not None:
            tensors["attributes"] = np.ascontiguousarray(self.attributes, dtype=np.float32)
        meta = {
            "format": "gpdiff.city", "format_version": FORMAT_VERSION, "name": self.name,
            "kind": self.kind, "units": self.units, "start": self.start.isoformat(),
            "interval_minutes": self.interval_minutes, "node_ids": self.node_ids,
            "channels": self.channels, "coord_kind": self.coord_kind,
            "attribute_names": self.attribute_names, "source": self.source,
        }
        if self.allow_negative:
            meta["allow_negative"] = True
        if self.start.tz is not None:  # the zone's name: an ISO offset alone would lose daylight-saving rules
            meta["timezone"] = str(self.start.tz)
        raw = st_save(tensors, metadata={"gpdiff": json.dumps(meta, sort_keys=True)})
        return lzma.compress(raw, format=lzma.FORMAT_XZ, preset=9) if compress else raw

    def save(self, path: str | os.PathLike[str], compress: bool = True) -> Path:
        """Write the city atomically to ``path`` (a ``.city`` file)."""
        path = Path(path)
        atomic_write_bytes(path, self.to_bytes(compress=compress))
        return path

    @classmethod
    def from_bytes(cls, data: bytes, origin: str = "<bytes>") -> City:
        """A city from the bytes of a ``.city`` file; :class:`GpdiffError` naming ``origin`` if they are
        truncated or not a city (nothing partial is trusted)."""
        if data[:6] == _XZ_MAGIC:
            try:
                data = lzma.decompress(data)
            except (lzma.LZMAError, EOFError) as exc:
                raise GpdiffError(f"{origin} is damaged or incomplete ({exc}); delete it and download or convert "
                                  "it again.") from None
        try:
            (header_len,) = struct.unpack("<Q", data[:8])
            header = json.loads(data[8 : 8 + header_len])
            meta = json.loads(header["__metadata__"]["gpdiff"])
            tensors = st_load(data)
        except Exception:  # noqa: BLE001 - any parse failure means "not a city file"
            raise GpdiffError(f"{origin} is not a gpdiff city file (or a damaged one); delete it and download or "
                              "convert it again (`gpdiff data convert`, `City.save`).") from None
        values = tensors["values"].astype(np.float32)
        start = pd.Timestamp(meta["start"])
        if meta.get("timezone"):
            start = start.tz_convert(meta["timezone"])
        return cls(
            name=meta["name"], values=values, mask=tensors["mask"].astype(bool),
            start=start, interval_minutes=meta["interval_minutes"],
            adjacency=tensors["adjacency"], kind=meta["kind"], units=meta["units"],
            node_ids=meta["node_ids"], channels=meta["channels"], coords=tensors.get("coords"),
            coord_kind=meta.get("coord_kind", "latlon"), attributes=tensors.get("attributes"),
            attribute_names=meta.get("attribute_names", []), source=meta.get("source", ""),
            allow_negative=bool(meta.get("allow_negative", False)),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> City:
        path = Path(path)
        if not path.is_file():
            raise GpdiffError(f"city file {path} does not exist; check the path or run `gpdiff data list`.")
        return cls.from_bytes(path.read_bytes(), origin=str(path))


def _compact(values: np.ndarray) -> np.ndarray:
    """Store integer-valued data in the smallest exact integer type (better compression)."""
    if values.size and np.all(np.mod(values, 1) == 0):
        lo, hi = float(values.min()), float(values.max())
        for dtype in (np.uint8, np.int16, np.uint16, np.int32):
            info = np.iinfo(dtype)
            if info.min <= lo and hi <= info.max:
                return np.ascontiguousarray(values.astype(dtype))
    return np.ascontiguousarray(values.astype(np.float32))

