"""LibCity's atomic files, written here at toy size and read back."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpdiff.data.formats import load_path
from gpdiff.data.formats.libcity import load_libcity
from gpdiff.utils.errors import GpdiffError

T, N = 36, 4
TIMES = pd.date_range("2012-03-01", periods=T, freq="5min")


def _speeds(seed: int = 0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).uniform(20, 70, (T, N)), 3)


# ---------------------------------------------------------------------------- LibCity
def _libcity(d: Path, vals: np.ndarray, config: dict | None = None) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    geo = pd.DataFrame({"geo_id": [10, 11, 12, 13], "type": "Point",
                        "coordinates": [f"[{-118.2 + i / 100}, {34.0 + i / 100}]" for i in range(N)]})
    geo.to_csv(d / "METR_LA.geo", index=False)
    rel = pd.DataFrame({"rel_id": [0, 1, 2], "type": "geo", "origin_id": [10, 11, 12], "destination_id": [11, 12, 13],
                        "cost": [100.0, 200.0, 400.0]})
    rel.to_csv(d / "METR_LA.rel", index=False)
    rows = [(len(TIMES) * j + t, "state", f"{TIMES[t]:%Y-%m-%dT%H:%M:%SZ}", 10 + j, vals[t, j])
            for j in range(N) for t in range(T)]  # entity-major, as LibCity writes it
    pd.DataFrame(rows, columns=["dyna_id", "type", "time", "entity_id", "traffic_speed"]).to_csv(
        d / "METR_LA.dyna", index=False)
    info = {"data_col": ["traffic_speed"], "weight_col": "cost", "data_files": ["METR_LA"], "geo_file": "METR_LA",
            "rel_file": "METR_LA", "output_dim": 1, "time_intervals": 300, "init_weight_inf_or_zero": "inf",
            "set_weight_link_or_dist": "dist", "calculate_weight_adj": True, "weight_adj_epsilon": 0.1}
    (d / "config.json").write_text(json.dumps(config if config is not None else {"info": info}))
    return d


def test_libcity_atomic_files(tmp_path: Path) -> None:
    vals = _speeds()
    vals[3, 1] = 0.0  # speed 0 = missing
    city = load_path(_libcity(tmp_path / "METR_LA", vals))
    assert city.node_ids == ["10", "11", "12", "13"] and city.kind == "speed" and city.interval_minutes == 5
    assert city.n_steps == T and city.start == pd.Timestamp("2012-03-01", tz="UTC")
    np.testing.assert_allclose(city.values[:, :, 0][city.mask], vals[vals != 0], rtol=1e-6)
    assert not city.mask[3, 1] and city.mask.sum() == T * N - 1
    d = np.array([100.0, 200.0, 400.0])
    w = np.exp(-np.square(d / d.std()))
    expected = np.zeros((N, N))
    expected[[0, 1, 2], [1, 2, 3]] = np.where(w < 0.1, 0, w)
    np.testing.assert_allclose(city.adjacency, expected, rtol=1e-6)
    np.testing.assert_allclose(city.coords[0], [34.0, -118.2])


def test_libcity_link_weights_and_errors(tmp_path: Path) -> None:
    d = _libcity(tmp_path / "x", _speeds(), config={"info": {"set_weight_link_or_dist": "link"}})
    city = load_libcity(d, name="la")
    assert city.name == "la" and city.adjacency.sum() == 3
    dyna = pd.read_csv(d / "METR_LA.dyna")
    pd.concat([dyna, dyna.iloc[[5]]]).to_csv(d / "METR_LA.dyna", index=False)
    with pytest.raises(GpdiffError, match=r"METR_LA\.dyna: entity 10 has two rows at 2012-03-01T00:25:00Z"):
        load_libcity(d)
