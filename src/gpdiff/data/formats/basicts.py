"""BasicTS dataset folders (https://github.com/GestaltCogTeam/BasicTS), in the layouts it has used.

- current: ``data.dat`` (``numpy.memmap`` float32 ``[L, N, C]``) + ``desc.json`` (``shape``,
  ``frequency (minutes)``, ``domain``, ``regular_settings.null_val`` ...);
- split: ``train_data.npy``, ``val_data.npy``, ``test_data.npy`` (``[L, N]`` or ``[L, N, C]``,
  concatenated in that order) + ``meta.json`` or ``desc.json``;
- older: ``data_in{H}_out{F}.pkl`` (``{"processed_data": [L, N, C]}``) or ``data.pkl``
  (``{"raw_data": ...}`` standardised, undone with ``scaler.pkl``'s ``args.mean``/``args.std``).

Channel 0 is the target; the other channels are BasicTS's time features (time of day, day of
week ...), which gpdiff derives from the time axis itself, so they are dropped. The graph is
``adj_mx.pkl`` when present (:mod:`gpdiff.data.formats.graphpickle`; the older layouts need unpickling:
**only load pickles you trust**). BasicTS stores no start date: ``start`` (option or ``city.yaml``)
gives it, else the published start of METR-LA / PEMS-BAY / PEMS0X, else 2000-01-03 (recorded as
unknown).
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
from gpdiff.data.formats.graphpickle import load_pickle, read_graph_pickle_by_order
from gpdiff.data.timeaxis import how_to_set
from gpdiff.utils.errors import GpdiffError

BASICTS_OPTIONS = ("name", "kind", "units", "source", "interval_minutes", "start", "allow_negative")
#: published (interval minutes, start) of the datasets BasicTS ships under these names
KNOWN: dict[str, tuple[int, str]] = {
    "metr-la": (5, "2012-03-01"), "pems-bay": (5, "2017-01-01"), "pems03": (5, "2018-09-01"),
    "pems04": (5, "2018-01-01"), "pems07": (5, "2017-05-01"), "pems08": (5, "2016-07-01"),
}
_UNKNOWN_START = "2000-01-03"  # a Monday
_SPLITS = ("train_data.npy", "val_data.npy", "test_data.npy")


def is_basicts_folder(folder: Path) -> bool:
    return ((folder / "data.dat").is_file() or (folder / "train_data.npy").is_file() or (folder / "data.pkl").is_file()
            or any(folder.glob("data_in*_out*.pkl")))


def load_basicts(folder: str | os.PathLike[str], **options: Any) -> City:
    """Read a BasicTS dataset folder (see the module docstring) into a :class:`City`.

    ``options`` (or ``city.yaml`` in the folder): ``name``, ``kind``, ``units``, ``source``,
    ``interval_minutes``, ``start``. Raises :class:`GpdiffError` naming the file for a size that
    does not match ``desc.json``, an unknown interval, or an unreadable file.
    """
    d = Path(folder)
    o = opt.resolve(d, options, BASICTS_OPTIONS, "BasicTS")
    desc = _desc(d)
    data, layout = _series(d, desc)
    name = str(o.get("name") or desc.get("name") or d.name)
    known = KNOWN.get(name.lower()) or KNOWN.get(d.name.lower())
    freq = desc.get("frequency (minutes)", desc.get("frequency"))
    interval = o.get("interval_minutes") or (int(freq) if isinstance(freq, (int, float)) and freq else None) \
        or (known[0] if known else None)
    if interval is None:
        raise GpdiffError(f"{d}: the BasicTS files do not give the time step; state it: "
                          f"{how_to_set('interval_minutes', 'N')}.")
    domain = str(desc.get("domain", "")).lower()
    kind = str(o.get("kind") or ("speed" if "speed" in domain else "flow"))
    null_val = (desc.get("regular_settings") or {}).get("null_val", 0.0 if kind == "speed" else None)
    target = data[:, :, 0].astype(np.float64)
    mask = np.isfinite(target)
    if isinstance(null_val, (int, float)) and np.isfinite(null_val):
        mask &= ~np.isclose(target, null_val, rtol=0.0, atol=1e-6)
    start_given = o.get("start")
    start = pd.Timestamp(start_given if start_given is not None else (known[1] if known else _UNKNOWN_START))
    notes = [layout] + ([] if start_given is not None or known else [f"true start unknown, {start:%Y-%m-%d} assumed"])
    n = data.shape[1]
    adjacency, ids = np.zeros((n, n)), None
    if (d / "adj_mx.pkl").is_file():
        adjacency, ids = read_graph_pickle_by_order(d / "adj_mx.pkl", n)
        notes.append("graph adj_mx.pkl")
    else:
        notes.append("no adj_mx.pkl: a graph without edges")
    try:
        return City(name=name, values=np.where(mask, target, 0.0)[:, :, None], mask=mask, start=start,
                    interval_minutes=int(interval), adjacency=adjacency, kind=kind,
                    units=str(o.get("units") or ("count" if kind == "flow" else "unknown")), node_ids=ids or [],
                    channels=[kind], allow_negative=bool(o.get("allow_negative")), source=str(o.get("source") or f"BasicTS folder {d.name}") + "; " + "; ".join(notes))
    except GpdiffError as exc:
        raise GpdiffError(f"{d}: {exc}") from None


def _desc(d: Path) -> dict[str, Any]:
    for fname in ("desc.json", "meta.json"):
        path = d / fname
        if path.is_file():
            try:
                desc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise GpdiffError(f"{path} is not valid JSON ({exc}); fix or remove it.") from None
            if isinstance(desc, dict):
                return desc
    return {}


def _series(d: Path, desc: dict[str, Any]) -> tuple[np.ndarray, str]:
    """(data ``[L, N, C]``, which layout it came from)."""
    if (d / "data.dat").is_file():
        shape = desc.get("shape")
        path = d / "data.dat"
        if not isinstance(shape, list) or len(shape) not in (2, 3) or not all(isinstance(x, int) for x in shape):
            raise GpdiffError(f"{path}: desc.json beside it must give 'shape': [L, N, C]; it has {shape!r}.")
        expected = int(np.prod(shape)) * 4
        if path.stat().st_size != expected:
            raise GpdiffError(f"{path} has {path.stat().st_size} bytes, not the {expected} of float32 {shape} in "
                              "desc.json; the file is damaged or partial, download it again.")
        data = np.array(np.memmap(path, dtype=np.float32, mode="r", shape=tuple(shape)))
        return _rank3(data, path), "data.dat + desc.json"
    if (d / "train_data.npy").is_file():
        parts = []
        for fname in _SPLITS:
            if not (d / fname).is_file():
                raise GpdiffError(f"{d} has train_data.npy but no {fname}; BasicTS splits need all three.")
            try:
                parts.append(_rank3(np.load(d / fname, allow_pickle=False), d / fname))
            except (OSError, ValueError) as exc:
                raise GpdiffError(f"{d / fname} is not a readable .npy array ({exc}).") from None
        if len({p.shape[1:] for p in parts}) != 1:
            raise GpdiffError(f"{d}: the train/val/test arrays have different node or channel counts "
                              f"{[p.shape for p in parts]}; use the files of one dataset.")
        return np.concatenate(parts, axis=0), "train/val/test_data.npy"
    found = sorted(d.glob("data_in*_out*.pkl"))
    if found:
        obj = load_pickle(found[0], "the data pickle BasicTS wrote")
        if not isinstance(obj, dict) or "processed_data" not in obj:
            raise GpdiffError(f"{found[0]} has no 'processed_data'; use the data file BasicTS wrote.")
        return _rank3(np.asarray(obj["processed_data"], dtype=np.float64), found[0]), found[0].name
    path = d / "data.pkl"
    obj = load_pickle(path, "the data.pkl BasicTS wrote")
    if not isinstance(obj, dict) or not ({"raw_data", "processed_data"} & set(obj)):
        raise GpdiffError(f"{path} has neither 'raw_data' nor 'processed_data'; use the data.pkl BasicTS wrote.")
    if "processed_data" in obj:
        return _rank3(np.asarray(obj["processed_data"], dtype=np.float64), path), "data.pkl"
    data = _rank3(np.asarray(obj["raw_data"], dtype=np.float64), path)
    scaler = d / "scaler.pkl"
    if not scaler.is_file():
        raise GpdiffError(f"{path} holds standardised values but {scaler.name} is missing beside it; add the "
                          "scaler.pkl BasicTS wrote with it.")
    args = (load_pickle(scaler, "the scaler.pkl BasicTS wrote") or {}).get("args", {})
    if not {"mean", "std"} <= set(args):
        raise GpdiffError(f"{scaler} has no args.mean / args.std; use the scaler.pkl BasicTS wrote.")
    data[:, :, 0] = data[:, :, 0] * float(args["std"]) + float(args["mean"])
    return data, "data.pkl + scaler.pkl"


def _rank3(data: np.ndarray, path: Path) -> np.ndarray:
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3 or data.dtype.kind not in "fiub":
        raise GpdiffError(f"{path}: expected a numeric [L, N] or [L, N, C] array, got shape {data.shape}.")
    return data
