"""Wide time tables in CSV (a time column, then one column per node), in the dialects people write.

The separator (``,`` ``;`` tab ``|``) and a decimal comma are detected from the file's first
lines; a leading unnamed column of row numbers (what ``DataFrame.to_csv`` writes by default) is
recognised and dropped. Both can be stated instead (``sep``, ``decimal``).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from gpdiff.data.timeaxis import parse_times
from gpdiff.utils.errors import GpdiffError

SEPARATORS = ("\t", ";", "|", ",")  # a ';' or tab file with decimal commas also has commas: ',' last
_DECIMAL_COMMA = re.compile(r"^\s*[+-]?\d+,\d+\s*$")
_INDEX_HEADERS = ("", "unnamed: 0", "index")
_SAMPLE_LINES = 50


@dataclass
class WideTable:
    times: pd.DatetimeIndex  # [T]
    ids: list[str]  # [N] column headers
    values: np.ndarray  # [T, N] float64, NaN where empty
    notes: list[str]  # what was detected, for City.source


def sniff(path: Path) -> tuple[str, str]:
    """(separator, decimal mark) of a CSV file from its first lines."""
    try:
        with path.open(encoding="utf-8-sig", newline="") as f:
            lines = [ln.rstrip("\r\n") for _, ln in zip(range(_SAMPLE_LINES), f)]
    except (OSError, UnicodeDecodeError) as exc:
        raise GpdiffError(f"{path} is not a readable UTF-8 text file ({exc}); save it as UTF-8 CSV.") from None
    lines = [ln for ln in lines if ln.strip()]
    sep = ","
    for cand in SEPARATORS:
        counts = {ln.count(cand) for ln in lines}
        if len(counts) == 1 and counts.pop() >= 1:
            sep = cand
            break
    decimal = "."
    if sep != "," and any(_DECIMAL_COMMA.match(cell) for ln in lines[1:] for cell in ln.split(sep)[1:]):
        decimal = ","
    return sep, decimal


def read_wide_csv(path: Path, time_format: str | None = None, tz: str | None = None, sep: str | None = None,
                  decimal: str | None = None) -> WideTable:
    """Read ``path`` (see the module docstring); times via :func:`gpdiff.data.timeaxis.parse_times`.

    Raises :class:`GpdiffError` naming the file for a missing header, an unnamed or repeated node
    id, a non-numeric value or one beyond float32's range (with its line), or a bad timestamp.
    """
    found_sep, found_dec = sniff(path)
    sep, decimal = sep or found_sep, decimal or found_dec
    named = {"\t": "tab", ",": "','", ";": "';'", "|": "'|'"}.get(sep, repr(sep))
    with path.open(encoding="utf-8-sig", newline="") as f:
        header = next(csv.reader(f, delimiter=sep), None)
    if not header or len(header) < 2:
        raise GpdiffError(f"{path}: needs a header row: a time column, then one column per node id (read with "
                          f"separator {named}; if the file uses another, pass sep=, e.g. --option sep=';').")
    try:
        df = pd.read_csv(path, sep=sep, decimal=decimal, header=0, low_memory=False, skipinitialspace=True,
                         encoding="utf-8-sig")
    except (pd.errors.ParserError, ValueError, UnicodeDecodeError) as exc:
        msg = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise GpdiffError(f"{path} is not a valid CSV table ({msg}); every row needs a timestamp and "
                          f"{len(header) - 1} values separated by {named}.") from None
    notes = [] if sep == "," else [f"separator {named}"]
    if decimal == ",":
        notes.append("decimal comma")
    df.columns = range(df.shape[1])
    if (len(header) >= 3 and header[0].strip().lower() in _INDEX_HEADERS and df[0].dtype.kind in "iu"
            and df[1].dtype.kind not in "iufb"):
        df = df.drop(columns=0)  # the row numbers DataFrame.to_csv writes by default
        df.columns = range(df.shape[1])
        header = header[1:]
        notes.append("leading index column dropped")
    if len(df) < 2:
        raise GpdiffError(f"{path}: {len(df)} data row(s); need at least 2 timestamps.")
    ids = _node_ids(path, header)
    values = np.empty((len(df), len(ids)))
    for j, c in enumerate(ids):
        values[:, j] = _numeric_column(path, df, j + 1, c, named, decimal)
    times, note = parse_times(pd.Index(df[0]), path, time_format=time_format, tz=tz, first_line=2)
    return WideTable(times, ids, values, notes + ([note] if note else []))


def _node_ids(path: Path, header: list[str]) -> list[str]:
    """The node ids of the header (after the time column); :class:`GpdiffError` for an empty or repeated one."""
    ids = [h.strip() for h in header[1:]]
    if any(not i for i in ids):
        raise GpdiffError(f"{path}: column {ids.index('') + 2} of the header has no node id; name every column.")
    dup = next((i for i in ids if ids.count(i) > 1), None)
    if dup is not None:
        raise GpdiffError(f"{path}: node id {dup!r} heads more than one column; node ids must be unique.")
    return ids


def _numeric_column(path: Path, df: pd.DataFrame, j: int, node: str, named: str, decimal: str) -> np.ndarray:
    """Column ``j`` of ``df`` (node ``node``) as float64 ``[T]``, NaN where empty. Raises
    :class:`GpdiffError` naming the cell (node, time, line) for a non-numeric value or one beyond float32's
    range, with the separator hint when the value holds a separator."""
    col = df[j]
    conv = col if col.dtype.kind in "fiub" else pd.to_numeric(col, errors="coerce")
    bad = conv.isna() & col.notna()
    if bad.any():
        at = int(np.flatnonzero(bad.to_numpy())[0])
        v = col.iloc[at]
        hint = (f" (read with separator {named} and decimal {decimal!r}; state them with --option sep=... "
                "decimal=...)") if any(ch in str(v) for ch in ",;\t|") else ""
        raise GpdiffError(f"{path}: column {node!r} has the non-numeric value {v!r} at {df[0].iloc[at]} "
                          f"(line {at + 2}){hint}; use numbers, and leave missing cells empty.")
    values = conv.to_numpy(dtype=np.float64)
    big = np.flatnonzero(np.isfinite(values) & (np.abs(values) > np.finfo(np.float32).max))
    if big.size:
        at = int(big[0])
        raise GpdiffError(f"{path}: column {node!r} has the value {values[at]:g} at {df[0].iloc[at]} (line {at + 2}), "
                          f"beyond the float32 range (+-{np.finfo(np.float32).max:.3g}) gpdiff computes in; fix "
                          "the value, or leave the cell empty if it is a missing reading.")
    return values
