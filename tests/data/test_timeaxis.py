"""Reading a time axis: day-first dates, an ambiguous day-month order, a mostly missing axis, UTC offsets across a
clock change, one irregular timestamp (input faults of public bug reports, issue 14)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from gpdiff.data.city import City
from gpdiff.data.formats.city_folder import load_city_folder
from gpdiff.utils.errors import GpdiffError
from tests.conftest import run_cli, series_folder


# ------------------------------------------------------------------- day-first dates (issue 14, fault 1)
@pytest.mark.parametrize("days", [12, 14])
def test_day_first_dates_are_read_day_first(tmp_path: Path, days: int) -> None:
    times = pd.date_range("2024-01-01", periods=days * 24, freq="h")
    city = load_city_folder(series_folder(tmp_path / "c", list(times.strftime("%d/%m/%Y %H:%M"))))
    assert city.n_steps == days * 24 and city.mask.all()
    assert city.start == pd.Timestamp("2024-01-01 00:00") and city.end == times[-1]
    assert "%d/%m/%Y %H:%M" in city.source


def test_ambiguous_day_month_order_says_how_to_state_it(tmp_path: Path) -> None:
    times = pd.date_range("2024-03-05", periods=24, freq="h")  # one day: 05/03 reads as 5 March or 3 May
    d = series_folder(tmp_path / "c", list(times.strftime("%d/%m/%Y %H:%M")))
    with pytest.raises(GpdiffError, match=r"series\.csv: dates like '05/03/2024 00:00' read day-first .*time_format"):
        load_city_folder(d)
    (d / "city.yaml").write_text('time_format: "%d/%m/%Y %H:%M"\n')
    assert load_city_folder(d).start == pd.Timestamp("2024-03-05")
    (d / "city.yaml").unlink()
    r = run_cli("data", "show", str(d), "--option", "time_format=%m/%d/%Y %H:%M", "--plot", str(tmp_path / "p.png"))
    assert r.exit_code == 0, r.output
    assert "2024-05-03 00:00" in r.output


def test_a_mostly_missing_time_axis_is_an_error_unless_allowed(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=12 * 24, freq="h")
    d = series_folder(tmp_path / "c", list(times.strftime("%d/%m/%Y %H:%M")))
    with pytest.raises(GpdiffError, match=r"288 rows on a 60-minute grid of 8064 steps.*96% .*missing.*allow_gaps"):
        load_city_folder(d, time_format="%m/%d/%Y %H:%M")
    city = load_city_folder(d, time_format="%m/%d/%Y %H:%M", allow_gaps=True)
    assert city.n_steps == 8064 and city.mask.mean() == pytest.approx(288 / 8064)


# ------------------------------------------------------------- UTC offsets, clock change (issue 14, fault 2)
def test_utc_offsets_across_a_clock_change(tmp_path: Path) -> None:
    local = pd.date_range("2024-11-02 00:00", periods=96, freq="h", tz="America/New_York")
    stamps = [t.isoformat() for t in local]
    assert stamps[24].endswith("-04:00") and stamps[-1].endswith("-05:00")
    d = series_folder(tmp_path / "c", stamps)
    city = load_city_folder(d)
    assert city.n_steps == 96 and city.mask.all() and city.interval_minutes == 60
    assert city.start == pd.Timestamp("2024-11-02 04:00", tz="UTC") and str(city.start.tz) == "UTC"
    assert city.summary()["span"].endswith("UTC")
    ny = load_city_folder(d, tz="America/New_York")
    assert ny.n_steps == 96 and ny.timestamps.is_unique and str(ny.start.tz) == "America/New_York"
    assert ny.timestamps[0].hour == 0 and ny.timestamps[-1] == local[-1]
    back = City.load(ny.save(tmp_path / "ny.city"))
    assert back.start == ny.start and str(back.start.tz) == "America/New_York"
    stamps[5] = f"{local[5]:%Y-%m-%d %H:%M}"  # one local time without its offset among times with one
    with pytest.raises(GpdiffError, match=r"series\.csv: '2024-11-02 05:00' \(line 7\) has no UTC offset while "
                                          r"other times have one"):
        load_city_folder(series_folder(tmp_path / "mixed", stamps))


# --------------------------------------------------------------- one irregular timestamp (issue 14, fault 3)
@pytest.mark.parametrize("fault", ["shifted", "stray"])
def test_one_irregular_timestamp_is_named(tmp_path: Path, fault: str) -> None:
    times = pd.date_range("2024-01-01", periods=200, freq="5min").tolist()
    if fault == "shifted":
        times[100] = times[100] + pd.Timedelta(minutes=2)  # 08:20 -> 08:22
    else:
        times.insert(101, times[100] + pd.Timedelta(minutes=2))  # an extra row at 08:22
    d = series_folder(tmp_path / "c", [f"{t:%Y-%m-%d %H:%M}" for t in times])
    with pytest.raises(GpdiffError) as err:
        load_city_folder(d)
    msg = str(err.value)
    line = 102 if fault == "shifted" else 103
    assert "2024-01-01 08:22:00" in msg and f"line {line}" in msg and "5-minute grid" in msg, msg
