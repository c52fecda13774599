"""Loader options: what a file cannot say about itself (which h5 table, the sensor-id file, the
date format, the interval ...).

One name per option everywhere: the keyword argument of the Python reader, a ``key: value`` line
of ``city.yaml`` beside the data (in the dataset's folder, or in the folder of the file), and
``--option key=value`` of ``gpdiff data show`` / ``gpdiff data convert``. Given options win over
``city.yaml``; a relative path in ``city.yaml`` is relative to its folder. So a ``--data-dir``
run, which only names cities, reads every option from each city's ``city.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import read_yaml

META_FILE = "city.yaml"

#: every option, with what it means (shown in errors and in ``gpdiff data show --help``)
OPTIONS: dict[str, str] = {
    "name": "city name",
    "kind": "flow or speed (in speed data a 0 is missing)",
    "units": "units of the target",
    "source": "where the data came from",
    "channels": "channel names; channel k >= 1 of a city folder is read from channel<k>.csv",
    "interval_minutes": "time step in minutes",
    "start": "time of the first step (formats without timestamps)",
    "time_format": "strptime format of the timestamps, e.g. '%d/%m/%Y %H:%M'",
    "tz": "time zone of the timestamps, e.g. America/New_York",
    "sep": "CSV separator",
    "decimal": "CSV decimal mark ('.' or ',')",
    "allow_gaps": "true: accept a time axis that is mostly gaps",
    "allow_negative": "true: keep negative values of a flow city (with a warning) instead of refusing them",
    "key": "table of an HDF5 file to read",
    "adj_pkl_path": "graph pickle (DCRNN adj_mx.pkl)",
    "locations_path": "sensor locations CSV",
    "csv_path": "distance file from,to,cost (ASTGCN)",
    "ids_path": "sensor id file, one id per line, line i = node i",
}
_PATHS = tuple(k for k in OPTIONS if k.endswith("_path"))


def parse_cli(pairs: Sequence[str]) -> dict[str, Any]:
    """``["key=speed", "interval_minutes=5"]`` -> ``{"key": "speed", "interval_minutes": 5}`` (values read as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key = key.strip()
        if not eq or not key:
            raise GpdiffError(f"--option {pair!r} must look like KEY=VALUE, e.g. --option key=speed.")
        if key not in OPTIONS:
            raise GpdiffError(f"unknown option {key!r}; known: {', '.join(OPTIONS)}.")
        try:
            out[key] = value if key in ("time_format", "sep", "decimal") else yaml.safe_load(value)
        except yaml.YAMLError:
            out[key] = value
    return out


def resolve(folder: Path, given: Mapping[str, Any], allowed: Sequence[str], fmt: str) -> dict[str, Any]:
    """Options of a dataset in ``folder``: ``folder/city.yaml`` overridden by ``given`` (None = not given).

    Raises :class:`GpdiffError` for a key ``fmt`` (the format's name) does not take, naming where
    it came from and the allowed keys, and for values of the wrong type.
    """
    given = {k: v for k, v in given.items() if v is not None}
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise GpdiffError(f"option(s) {', '.join(unknown)} do not apply to the {fmt} format; it takes: "
                          f"{', '.join(allowed)}.")
    meta_path = folder / META_FILE
    meta: dict[str, Any] = {}
    if meta_path.is_file():
        meta = read_yaml(meta_path) or {}
        if not isinstance(meta, dict):
            raise GpdiffError(f"{meta_path} must be a YAML mapping (key: value lines), e.g. 'kind: speed'.")
        bad = sorted(set(map(str, meta)) - set(allowed))
        if bad:
            raise GpdiffError(f"{meta_path}: unknown key(s) {', '.join(bad)} for the {fmt} format; allowed: "
                              f"{', '.join(allowed)}.")
        meta = {k: (str(folder / str(v)) if k in _PATHS and v is not None else v) for k, v in meta.items()}
    opts = {**meta, **given}
    where = meta_path if meta_path.is_file() else "options"
    interval = opts.get("interval_minutes")
    if interval is not None and (isinstance(interval, bool) or not isinstance(interval, int) or interval <= 0):
        raise GpdiffError(f"{where}: interval_minutes must be a positive whole number, got {interval!r}.")
    if "channels" in opts and not isinstance(opts["channels"], list):
        raise GpdiffError(f"{where}: channels must be a list of names, e.g. [speed, occupancy].")
    for flag in ("allow_gaps", "allow_negative"):
        if flag in opts and not isinstance(opts[flag], bool):
            raise GpdiffError(f"{where}: {flag} must be true or false, got {opts[flag]!r}.")
    for k in ("time_format", "tz", "sep", "decimal", "key", "name", "kind", "units", "source"):
        if k in opts and not isinstance(opts[k], str):
            opts[k] = str(opts[k])
    return opts
