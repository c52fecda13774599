"""Wide CSV series: a semicolon separator with decimal commas, pandas' default index column."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gpdiff.data.formats.city_folder import load_city_folder
from tests.conftest import SERIES_IDS, series_folder


# ------------------------------------------------------------------------ CSV dialects (issue 14, fault 4)
def test_semicolon_separator_and_decimal_comma(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=48, freq="h")
    vals = np.round(np.random.default_rng(0).uniform(0, 100, (48, 3)), 2)
    d = series_folder(tmp_path / "c", [f"{t:%Y-%m-%d %H:%M}" for t in times], vals, sep=";", decimal=",")
    city = load_city_folder(d)
    np.testing.assert_allclose(city.values[:, :, 0], vals, rtol=1e-6)
    assert city.node_ids == SERIES_IDS and "decimal comma" in city.source


def test_pandas_default_index_column_is_dropped(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=48, freq="h")
    df = pd.DataFrame(np.arange(144, dtype=float).reshape(48, 3) + 1, columns=SERIES_IDS)
    df.insert(0, "timestamp", times.strftime("%Y-%m-%d %H:%M"))
    d = series_folder(tmp_path / "c", ["x", "y"])
    df.to_csv(d / "series.csv")  # index=True: a leading unnamed column 0, 1, 2 ...
    city = load_city_folder(d)
    assert city.node_ids == SERIES_IDS and city.n_steps == 48
    np.testing.assert_array_equal(city.values[:, :, 0], df[SERIES_IDS].to_numpy())
