"""LibCity atomic files: a folder with ``NAME.geo``, ``NAME.rel``, ``NAME.dyna`` and ``config.json``.

LibCity (https://github.com/LibCity/Bigscity-LibCity) ships dozens of traffic datasets this way.
Only point-based traffic-state data (``.dyna``) is read; grid (``.grid``) and OD (``.od``) files
are not cities of nodes and are refused.

- ``.geo``: ``geo_id, type, coordinates[, properties...]``; the node order, and coordinates
  (GeoJSON ``[lon, lat]`` of ``Point`` entities) when given.
- ``.rel``: ``rel_id, type, origin_id, destination_id[, cost...]``: directed edges.
- ``.dyna``: ``dyna_id, type, time, entity_id, <data columns>``, one row per entity and time
  (ISO-8601 times, e.g. ``2012-03-01T00:00:00Z``).
- ``config.json`` (optional): its ``info`` gives ``data_col`` (the first is the target, the
  others become channels), ``weight_col``, ``time_intervals`` (seconds), and how LibCity weighs
  edges: ``set_weight_link_or_dist`` (``link``: 1 per edge; ``dist``: the weight column),
  ``calculate_weight_adj`` (``exp(-(d / std)^2)``, below ``weight_adj_epsilon`` set to 0).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpdiff.data import options as opt
from gpdiff.data.city import City
from gpdiff.data.timeaxis import parse_times, place_on_grid, regular_grid
from gpdiff.utils.errors import GpdiffError

LIBCITY_OPTIONS = ("name", "kind", "units", "source", "interval_minutes", "tz", "allow_gaps", "allow_negative")
_DYNA_KEYS = ("dyna_id", "type", "time", "entity_id")


def is_libcity_folder(folder: Path) -> bool:
    """Whether ``folder`` holds LibCity atomic files (a ``.dyna`` file, or ``.grid``/``.od`` ones)."""
    return any(folder.glob("*.dyna")) or any(folder.glob("*.grid")) or any(folder.glob("*.od"))


def load_libcity(folder: str | os.PathLike[str], **options: Any) -> City:
    """Read a LibCity dataset folder (see the module docstring) into a :class:`City`.

    ``options`` (or ``city.yaml`` in the folder): ``name``, ``kind``, ``units``, ``source``,
    ``interval_minutes`` (else ``time_intervals`` of config.json, else inferred), ``tz``,
    ``allow_gaps``. Raises :class:`GpdiffError` naming the file for a missing column, an
    unknown entity, a repeated (entity, time) row or an unreadable file.
    """
    d = Path(folder)
    o = opt.resolve(d, options, LIBCITY_OPTIONS, "LibCity")
    info = _config(d).get("info", {})
    dyna_path = _pick(d, "dyna", info.get("data_files"))
    geo_path = _pick(d, "geo", info.get("geo_file"))
    rel_path = _pick(d, "rel", info.get("rel_file"), required=False)

    geo = _read(geo_path, ("geo_id",))
    ids = [str(g) for g in geo["geo_id"]]
    dyna = _read(dyna_path, ("time", "entity_id"))
    cols = [str(c) for c in (info.get("data_col") or [c for c in dyna.columns if c not in _DYNA_KEYS])]
    missing = [c for c in cols if c not in dyna.columns]
    if not cols or missing:
        raise GpdiffError(f"{dyna_path}: data column(s) {missing or cols} not found (it has {list(dyna.columns)}); "
                          "fix data_col in config.json.")
    dyna["entity_id"] = dyna["entity_id"].astype(str)
    unknown = sorted(set(dyna["entity_id"]) - set(ids))
    if unknown:
        raise GpdiffError(f"{dyna_path}: entity id {unknown[0]!r} is not a geo_id of {geo_path.name}; "
                          "use the .geo file of this dataset.")
    stamps = pd.unique(dyna["time"].astype(str))
    instants, note = parse_times(pd.Index(stamps), dyna_path, tz=o.get("tz"), first_line=None)
    dyna["_t"] = dyna["time"].astype(str).map(dict(zip(stamps, instants)))
    dup = dyna.duplicated(["_t", "entity_id"])
    if dup.any():
        at = int(np.flatnonzero(dup.to_numpy())[0])
        raise GpdiffError(f"{dyna_path}: entity {dyna['entity_id'].iloc[at]} has two rows at "
                          f"{dyna['time'].iloc[at]} (line {at + 2}); keep one row per entity and time.")
    layers = [dyna.pivot(index="_t", columns="entity_id", values=c).reindex(columns=ids) for c in cols]
    times = pd.DatetimeIndex(layers[0].index)
    seconds = info.get("time_intervals")
    interval = o.get("interval_minutes") or (int(seconds) // 60 if seconds and int(seconds) % 60 == 0 else None)
    grid = regular_grid(times, dyna_path, interval, allow_gaps=bool(o.get("allow_gaps")))
    raw = np.stack([layer.to_numpy(dtype=np.float64) for layer in layers], axis=2)
    kind = str(o.get("kind") or ("speed" if "speed" in cols[0].lower() else "flow"))
    target = raw[:, :, 0]
    mask = np.isfinite(target) & ((target != 0) if kind == "speed" else True)
    values, mask = place_on_grid(np.nan_to_num(np.where(mask[:, :, None] | (np.arange(len(cols)) > 0), raw, 0.0)),
                                 mask, grid)
    adjacency = _adjacency(rel_path, ids, info) if rel_path is not None else np.zeros((len(ids), len(ids)))
    notes = [n for n in (note, f"{grid.filled} missing timestamps filled as missing" if grid.filled else "") if n]
    try:
        return City(
            name=str(o.get("name") or d.name), values=values, mask=mask, start=grid.start,
            interval_minutes=grid.interval_minutes, adjacency=adjacency, kind=kind,
            units=str(o.get("units") or ("count" if kind == "flow" else "unknown")), node_ids=ids, channels=cols,
            coords=_coords(geo), allow_negative=bool(o.get("allow_negative")), source=str(o.get("source") or f"LibCity atomic files {dyna_path.stem}")
            + "".join(f"; {n}" for n in notes),
        )
    except GpdiffError as exc:
        raise GpdiffError(f"{dyna_path}: {exc}") from None


def _config(d: Path) -> dict[str, Any]:
    path = d / "config.json"
    if not path.is_file():
        return {}
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GpdiffError(f"{path} is not valid JSON ({exc}); fix or remove it.") from None
    if not isinstance(cfg, dict):
        raise GpdiffError(f"{path} must hold a JSON object; fix or remove it.")
    return cfg


def _pick(d: Path, ext: str, named: Any, required: bool = True) -> Path | None:
    if isinstance(named, list):
        named = named[0] if named else None
    if named and (d / f"{named}.{ext}").is_file():
        return d / f"{named}.{ext}"
    found = sorted(d.glob(f"*.{ext}"))
    if len(found) == 1:
        return found[0]
    if ext == "dyna" and not found and (any(d.glob("*.grid")) or any(d.glob("*.od"))):
        raise GpdiffError(f"{d} holds LibCity grid/OD files; gpdiff reads point-based .dyna data only.")
    if found or required:
        what = f"{len(found)} .{ext} files" if found else f"no .{ext} file"
        raise GpdiffError(f"{d} has {what}; a LibCity dataset needs exactly one (or name it in config.json).")
    return None


def _read(path: Path, needed: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_csv(path, low_memory=False)
    except (OSError, pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        raise GpdiffError(f"{path} is not a readable CSV table ({exc}); check the file.".splitlines()[0]) from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise GpdiffError(f"{path}: needs column(s) {', '.join(missing)} (it has {', '.join(df.columns)}).")
    return df


def _coords(geo: pd.DataFrame) -> np.ndarray | None:
    if "coordinates" not in geo.columns or ("type" in geo.columns and (geo["type"] != "Point").any()):
        return None
    try:
        lonlat = np.array([json.loads(str(c)) for c in geo["coordinates"]], dtype=np.float64)
    except (ValueError, TypeError):
        return None
    if lonlat.ndim != 2 or lonlat.shape[1] != 2 or not np.isfinite(lonlat).all():
        return None
    return lonlat[:, ::-1].copy()  # GeoJSON is [lon, lat]; City coords are (lat, lon)


def _adjacency(path: Path, ids: list[str], info: dict[str, Any]) -> np.ndarray:
    rel = _read(path, ("origin_id", "destination_id"))
    pos = {s: i for i, s in enumerate(ids)}
    src, dst = rel["origin_id"].astype(str), rel["destination_id"].astype(str)
    for s in (src, dst):
        bad = s[~s.isin(pos)]
        if len(bad):
            raise GpdiffError(f"{path}: id {bad.iloc[0]!r} is not a geo_id; use the .geo file of this dataset.")
    col = info.get("weight_col") or next((c for c in ("cost", "weight", "distance") if c in rel.columns), None)
    link = info.get("set_weight_link_or_dist", "dist" if col else "link") == "link" or col not in rel.columns
    w = np.ones(len(rel)) if link else pd.to_numeric(rel[col], errors="coerce").to_numpy(dtype=np.float64)
    if not link and info.get("calculate_weight_adj", False):
        finite = w[np.isfinite(w)]
        std = float(finite.std()) or 1.0
        w = np.exp(-np.square(w / std))
        w[w < float(info.get("weight_adj_epsilon", 0.1))] = 0.0
    w = np.nan_to_num(w, nan=0.0, posinf=0.0, neginf=0.0)
    if (w < 0).any():
        raise GpdiffError(f"{path}: negative edge weight in column {col!r}; weights must be >= 0.")
    adj = np.zeros((len(ids), len(ids)))
    np.maximum.at(adj, (src.map(pos).to_numpy(dtype=np.int64), dst.map(pos).to_numpy(dtype=np.int64)), w)
    return adj
