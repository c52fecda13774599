"""The time axis of a loaded series: timestamp text -> instants -> a regular grid.

:func:`parse_times` reads the first column of a table. It never guesses silently: a date that
reads both day-first and month-first is read the way that gives the regular, densest series
(and says so), or is an error that says how to state the order. Timestamps with UTC offsets
(``2024-11-03 01:00-04:00``) become instants in UTC, or in the zone the user names, so a clock
change neither duplicates nor drops an hour.

:func:`regular_grid` places instants on a fixed interval: the most common difference between
timestamps (not the smallest), with the first timestamp off that grid named by value and line.
A grid that would be mostly gap (misread dates, a wrong interval) is an error unless the user
says the gaps are real (``allow_gaps``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pandas.tseries.api import guess_datetime_format

from gpdiff.utils.errors import GpdiffError

NS_PER_MIN = 60 * 10**9
#: how to state loader options, quoted in error messages
HOW_TO_SET = ("add '{key}: {value}' to city.yaml beside the data, or pass --option {key}={value} to "
              "`gpdiff data show`/`gpdiff data convert`")


_EXAMPLE_FORMAT = '"%d/%m/%Y %H:%M"'


def _quoted(fmt: str) -> str:
    return f'"{fmt}"'


def how_to_set(key: str, value: str) -> str:
    """The sentence that tells the user where a loader option goes (city.yaml or ``--option``)."""
    return HOW_TO_SET.format(key=key, value=value)


@dataclass(frozen=True)
class Grid:
    """Rows placed on a regular time axis."""

    start: pd.Timestamp  # first step (time-zone aware when the file gave zones)
    interval_minutes: int
    pos: np.ndarray  # [rows] int64 step of every row
    n_steps: int

    @property
    def filled(self) -> int:
        """Steps with no row (gaps), filled as missing."""
        return self.n_steps - len(self.pos)


def _line(i: int, first_line: int | None) -> str:
    return f"line {i + first_line}" if first_line is not None else f"row {i + 1}"


# -------------------------------------------------------------------------- parsing
def parse_times(index: pd.Index | np.ndarray | list, path: Path, time_format: str | None = None,
                tz: str | None = None, first_line: int | None = 2) -> tuple[pd.DatetimeIndex, str]:
    """Timestamps ``[T]`` of a table's time column, and a note for ``City.source`` ('' when none).

    ``time_format``: a strptime format (``%d/%m/%Y %H:%M``) that every value must match; without
    it the format is inferred, trying month-first and day-first readings of the first value.
    ``tz``: a zone name (``America/New_York``): times with offsets are converted to it, naive
    times are taken as local times there. Times with offsets and no ``tz`` become UTC.
    ``first_line``: file line of value 0 (for messages); ``None`` says "row".

    Raises :class:`GpdiffError` for a value that is not a time (with its line), for an ambiguous
    day/month order, and for an unknown zone.
    """
    idx = pd.Index(index)
    if idx.dtype.kind in "iufb":
        raise GpdiffError(f"{path}: the first column holds numbers ({idx[0]}, ...), not timestamps; "
                          "write times like 2012-03-01 00:05.")
    if isinstance(idx, pd.DatetimeIndex):
        return _to_zone(idx, tz, path), ""
    raw = pd.Series(idx.astype(str), dtype=object).str.strip()
    if time_format is not None:
        times = _parse_with(raw, time_format)
        if times is None:
            raise GpdiffError(f"{path}: time_format {time_format!r} is not a valid strptime format; write it like "
                              "'%d/%m/%Y %H:%M'.")
        if times.isna().any():
            at = int(np.flatnonzero(times.isna())[0])
            raise GpdiffError(f"{path}: {raw.iloc[at]!r} ({_line(at, first_line)}) does not match time_format "
                              f"{time_format!r}; fix the value or the format.")
        return _to_zone(times, tz, path), f"times read as {time_format}"
    times, note = _infer(raw, path, first_line)
    return _to_zone(times, tz, path), note


def _parse_with(raw: pd.Series, fmt: str) -> pd.DatetimeIndex | None:
    """``raw`` parsed with one format (NaT where a value does not match); None if the format fails."""
    zoned = "%z" in fmt or "%Z" in fmt
    try:
        return pd.DatetimeIndex(pd.to_datetime(raw, format=fmt, errors="coerce", utc=zoned))
    except (ValueError, TypeError):
        return None


def _infer(raw: pd.Series, path: Path, first_line: int | None) -> tuple[pd.DatetimeIndex, str]:
    first = next((v for v in raw if v), "")
    with warnings.catch_warnings():  # pandas warns that an ISO string ignores dayfirst: that is the answer wanted
        warnings.simplefilter("ignore", UserWarning)
        guesses = (guess_datetime_format(first), guess_datetime_format(first, dayfirst=True))
    formats = list(dict.fromkeys(f for f in guesses if f and not _year_day_month(f)))
    parsed = {f: t for f in formats if (t := _parse_with(raw, f)) is not None and not t.isna().any()}
    if not parsed:  # no one format fits every row: let pandas read each value on its own
        offset = raw.str.contains(r"(?:[+-]\d\d:?\d\d|Z)$", regex=True) & raw.str.contains(r"\d[ T]\d", regex=True)
        zoned = bool(offset.any())
        if zoned and not offset[raw != ""].all():
            i = int(np.flatnonzero(~offset.to_numpy() & (raw != "").to_numpy())[0])
            raise GpdiffError(f"{path}: {raw.iloc[i]!r} ({_line(i, first_line)}) has no UTC offset while other times "
                              "have one, so its time zone is unknown; write every time with its offset (e.g. "
                              "+01:00), or none and give the zone as tz.")
        times = pd.DatetimeIndex(pd.to_datetime(raw, errors="coerce", format="mixed", utc=bool(zoned)))
        bad = np.flatnonzero(times.isna())
        if bad.size:
            i = int(bad[0])
            raise GpdiffError(f"{path}: {raw.iloc[i]!r} ({_line(i, first_line)}) is not a timestamp; write times "
                              "like 2012-03-01 00:05 and give every row one.")
        return times, ""
    if len(parsed) == 1:
        fmt, times = next(iter(parsed.items()))
        return times, (f"dates read day-first ({fmt})" if _dayfirst(fmt) else "")
    # both readings fit every row: keep the increasing one that needs the fewest grid steps
    size = {f: _grid_size(t) for f, t in parsed.items()}
    ok = sorted((s, f) for f, s in size.items() if s is not None)
    if len(ok) == 1 or (len(ok) > 1 and ok[0][0] < ok[1][0]):
        fmt = ok[0][1]
        other = next(f for f in parsed if f != fmt)
        note = (f"dates read as {fmt}, not {other}: the other reading spans {size[other]} steps for {len(raw)} rows"
                if size[other] is not None else f"dates read as {fmt} (the only reading in increasing order)")
        return parsed[fmt], note
    if not ok:  # neither reading is increasing: the grid check names the first row out of order
        return parsed[formats[0]], ""
    day, month = (f for f in sorted(parsed, key=_dayfirst, reverse=True))
    raise GpdiffError(f"{path}: dates like {first!r} read day-first ({day}) and month-first ({month}) equally well; "
                      f"state the order: {how_to_set('time_format', _quoted(day))} (or {_quoted(month)}).")


def _year_day_month(fmt: str) -> bool:
    """``%Y-%d-%m``: a reading nobody writes (pandas offers it for ISO dates with ``dayfirst``)."""
    return "%Y" in fmt and "%d" in fmt and "%m" in fmt and fmt.index("%Y") < fmt.index("%d") < fmt.index("%m")


def _dayfirst(fmt: str) -> bool:
    return "%d" in fmt and "%m" in fmt and fmt.index("%d") < fmt.index("%m")


def _grid_size(times: pd.DatetimeIndex) -> int | None:
    """Steps of the regular grid through ``times`` at their most common difference; None if not increasing."""
    ns = times.as_unit("ns").asi8
    diff = np.diff(ns)
    if diff.size == 0 or (diff <= 0).any():
        return None
    return int((ns[-1] - ns[0]) // _mode(diff)) + 1


def _to_zone(times: pd.DatetimeIndex, tz: str | None, path: Path) -> pd.DatetimeIndex:
    if tz is None:
        return times
    try:
        if times.tz is None:
            return times.tz_localize(tz, ambiguous="infer", nonexistent="raise")
        return times.tz_convert(tz)
    except Exception as exc:  # noqa: BLE001 - unknown zone, or local times that a clock change makes ambiguous
        raise GpdiffError(f"{path}: cannot place the times in zone {tz!r} ({type(exc).__name__}: {exc}); give an "
                          "IANA zone name such as Europe/Paris, or write the times with UTC offsets.") from None


# ----------------------------------------------------------------------------- grid
def _mode(diff: np.ndarray) -> int:
    values, counts = np.unique(diff, return_counts=True)
    return int(values[np.argmax(counts)])  # the smallest among equally common differences


def regular_grid(times: pd.DatetimeIndex, path: Path, interval_minutes: int | None = None,
                 first_line: int | None = None, allow_gaps: bool = False) -> Grid:
    """Place ``times`` ``[T]`` on a regular grid (see the module docstring).

    ``interval_minutes``: the step; default the most common difference between timestamps.
    ``allow_gaps``: accept a grid whose steps are mostly missing rows (else an error).
    Raises :class:`GpdiffError` naming the first duplicated, out-of-order or off-grid timestamp
    and its line, or a step that is not a whole number of minutes.
    """
    times = pd.DatetimeIndex(times)
    if len(times) < 2:
        raise GpdiffError(f"{path}: {len(times)} timestamp(s); need at least 2.")
    if times.hasnans:
        raise GpdiffError(f"{path}: {_line(int(np.flatnonzero(times.isna())[0]), first_line)} has no timestamp; "
                          "give every row a time.")
    ns = times.as_unit("ns").asi8  # instants (UTC) when zone-aware: a clock change is no gap or repeat
    diff = np.diff(ns)
    bad = np.flatnonzero(diff <= 0)
    if bad.size:
        i = int(bad[0])
        if diff[i] == 0:
            raise GpdiffError(f"{path}: timestamp {times[i + 1]} appears more than once (first repeat at "
                              f"{_line(i + 1, first_line)}); keep one row per timestamp (e.g. drop duplicated rows).")
        raise GpdiffError(f"{path}: timestamps are not in increasing order: {times[i + 1]} "
                          f"({_line(i + 1, first_line)}) comes after {times[i]}; sort the rows by time.")
    step = int(interval_minutes) * NS_PER_MIN if interval_minutes else _mode(diff)
    if step % NS_PER_MIN:
        raise GpdiffError(f"{path}: the usual time step is {pd.Timedelta(step)}, not a whole number of minutes; "
                          "resample the series to a whole-minute interval.")
    minutes = step // NS_PER_MIN
    phase = (ns - ns[0]) % step
    usual = _mode(phase)
    off = np.flatnonzero(phase != usual)
    if off.size:
        i = int(off[0])
        raise GpdiffError(f"{path}: timestamp {times[i]} ({_line(i, first_line)}) is off the regular {minutes}-minute "
                          f"grid of the other rows ({times[i - 1] if i else times[1]} ...); fix or drop that row, "
                          "or resample the series to one fixed interval.")
    pos = (ns - ns[0]) // step
    grid = Grid(pd.Timestamp(times[0]), int(minutes), pos, int(pos[-1]) + 1)
    if grid.filled > len(pos) and not allow_gaps:
        gap = int(np.argmax(diff))
        raise GpdiffError(
            f"{path}: {len(pos)} rows on a {minutes}-minute grid of {grid.n_steps} steps from {times[0]} to "
            f"{times[-1]}: {grid.filled / grid.n_steps:.0%} of the city would be missing (largest gap: "
            f"{times[gap]} to {times[gap + 1]}, {_line(gap + 1, first_line)}). If the dates are misread, state their "
            f"format: {how_to_set('time_format', _EXAMPLE_FORMAT)}; if the gaps are real, set allow_gaps: true "
            "the same way."
        )
    return grid


def place_on_grid(values: np.ndarray, mask: np.ndarray, grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """``values [rows, ...]`` and ``mask [rows, ...]`` spread onto ``grid`` (0 / False in the gaps)."""
    if grid.n_steps == len(grid.pos):
        return values, mask
    full_v = np.zeros((grid.n_steps,) + values.shape[1:], dtype=values.dtype)
    full_m = np.zeros((grid.n_steps,) + mask.shape[1:], dtype=bool)
    full_v[grid.pos], full_m[grid.pos] = values, mask
    return full_v, full_m
