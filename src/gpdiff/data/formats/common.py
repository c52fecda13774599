"""What the format readers share: building a :class:`City` whose errors name the file, checking the paths
they are given, reading ``.npy`` and CSV files, and checking an adjacency matrix against the series."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpdiff.data.city import City
from gpdiff.utils.errors import GpdiffError

PathLike = str | os.PathLike[str]

#: the start assumed, and recorded in ``City.source`` as unknown, when a format stores none (a Monday)
UNKNOWN_START = pd.Timestamp("2000-01-03")


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
