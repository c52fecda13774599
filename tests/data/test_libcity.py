"""The formats of the libraries our users come from (LibCity, BasicTS, pandas), written here at toy size, read back."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpdiff.data.basicts import load_basicts
from gpdiff.data.city import City
from gpdiff.data.libcity import load_libcity
from gpdiff.data.loaders import load_path
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


# ---------------------------------------------------------------------------- BasicTS
def _adj_pickle(d: Path) -> np.ndarray:
    adj = np.random.default_rng(3).uniform(0, 1, (N, N)).astype(np.float32)
    ids = [f"77{i}" for i in range(N)]
    (d / "adj_mx.pkl").write_bytes(pickle.dumps([ids, {s: i for i, s in enumerate(ids)}, adj], protocol=2))
    return adj


def _with_time_features(vals: np.ndarray) -> np.ndarray:
    tod = np.broadcast_to(((TIMES.hour * 60 + TIMES.minute) / 1440).to_numpy()[:, None], (T, N))
    dow = np.broadcast_to(TIMES.day_of_week.to_numpy()[:, None], (T, N))
    return np.stack([vals, tod, dow], axis=2)


def test_basicts_current_layout(tmp_path: Path) -> None:
    d = tmp_path / "METR-LA"
    d.mkdir()
    vals = _speeds()
    vals[0, 0] = 0.0
    data = _with_time_features(vals).astype(np.float32)
    mm = np.memmap(d / "data.dat", dtype=np.float32, mode="w+", shape=data.shape)
    mm[:] = data
    mm.flush()
    desc = {"name": "METR-LA", "domain": "traffic speed", "shape": list(data.shape), "num_time_steps": T,
            "num_nodes": N, "frequency (minutes)": 5, "has_graph": True,
            "regular_settings": {"null_val": 0.0, "train_val_test_ratio": [0.7, 0.1, 0.2]}}
    (d / "desc.json").write_text(json.dumps(desc))
    adj = _adj_pickle(d)
    city = load_path(d)
    assert (city.kind, city.interval_minutes, city.start) == ("speed", 5, pd.Timestamp("2012-03-01"))
    assert city.node_ids == ["770", "771", "772", "773"] and not city.mask[0, 0] and city.mask.sum() == T * N - 1
    np.testing.assert_allclose(city.values[1:, :, 0], vals[1:], rtol=1e-6)
    np.testing.assert_allclose(city.adjacency, adj)
    with (d / "data.dat").open("r+b") as f:
        f.truncate(100)
    with pytest.raises(GpdiffError, match=r"data\.dat has 100 bytes.*partial"):
        load_basicts(d)


def test_basicts_split_npy_layout(tmp_path: Path) -> None:
    d = tmp_path / "mine"
    d.mkdir()
    vals = _speeds()
    for name, part in zip(("train", "val", "test"), np.split(vals, [24, 28])):
        np.save(d / f"{name}_data.npy", part.astype(np.float32))
    (d / "meta.json").write_text(json.dumps({"name": "mine", "frequency (minutes)": 5, "domain": "traffic flow"}))
    city = load_basicts(d, start="2024-02-05")
    assert city.n_steps == T and city.kind == "flow" and city.start == pd.Timestamp("2024-02-05")
    np.testing.assert_allclose(city.values[:, :, 0], vals, rtol=1e-6)
    assert city.n_edges == 0 and "no adj_mx.pkl" in city.source


@pytest.mark.parametrize("layout", ["processed", "raw+scaler"])
def test_basicts_older_pickle_layouts(tmp_path: Path, layout: str) -> None:
    d = tmp_path / "PEMS-BAY"
    d.mkdir()
    vals = _speeds(1)
    data = _with_time_features(vals)
    if layout == "processed":
        (d / "data_in12_out12.pkl").write_bytes(pickle.dumps({"processed_data": data}))
    else:
        mean, std = float(vals.mean()), float(vals.std())
        norm = data.copy()
        norm[:, :, 0] = (vals - mean) / std
        (d / "data.pkl").write_bytes(pickle.dumps({"raw_data": norm}))
        (d / "scaler.pkl").write_bytes(pickle.dumps({"func": "standard_re_transform", "args": {"mean": mean,
                                                                                             "std": std}}))
    raw = np.random.default_rng(2).uniform(0, 1, (N, N))
    (d / "adj_mx.pkl").write_bytes(pickle.dumps(raw))  # a bare matrix, as several repositories ship
    city = load_path(d)
    assert city.interval_minutes == 5 and city.start == pd.Timestamp("2017-01-01")  # PEMS-BAY's published start
    np.testing.assert_allclose(city.values[:, :, 0], vals, rtol=1e-5)
    np.testing.assert_allclose(city.adjacency, raw, rtol=1e-6)


def test_basicts_unknown_interval(tmp_path: Path) -> None:
    d = tmp_path / "other"
    d.mkdir()
    (d / "data_in12_out12.pkl").write_bytes(pickle.dumps({"processed_data": _speeds()[:, :, None]}))
    with pytest.raises(GpdiffError, match=r"other: the BasicTS files do not give the time step.*interval_minutes"):
        load_path(d)
    (d / "city.yaml").write_text("interval_minutes: 10\n")
    assert load_path(d).interval_minutes == 10


# ----------------------------------------------------------------------------- pandas
def test_from_pandas_and_back() -> None:
    vals = _speeds()
    vals[2, 3] = np.nan
    df = pd.DataFrame(vals, index=TIMES, columns=["s1", "s2", "s3", "s4"])
    adj = pd.DataFrame(np.eye(N)[::-1], index=df.columns[::-1], columns=df.columns[::-1])  # other order
    city = City.from_pandas(df, adjacency=adj, kind="speed", units="mph", name="nb")
    assert (city.n_steps, city.n_nodes, city.interval_minutes, city.units) == (T, N, 5, "mph")
    assert not city.mask[2, 3]
    np.testing.assert_array_equal(city.adjacency, np.eye(N)[::-1])
    back = city.to_pandas()
    pd.testing.assert_frame_equal(back, df.rename_axis("time"), check_dtype=False, check_freq=False, atol=1e-4)


def test_from_pandas_builds_a_graph_from_coords_and_names_errors() -> None:
    df = pd.DataFrame(_speeds(), index=TIMES.strftime("%Y-%m-%d %H:%M"), columns=list("abcd"))
    coords = np.c_[34.0 + np.arange(N) / 100, -118.0 + np.arange(N) / 100]
    city = City.from_pandas(df, coords=coords)
    assert city.n_edges > 0 and city.kind == "flow" and city.start == TIMES[0]
    with pytest.raises(GpdiffError, match="give adjacency="):
        City.from_pandas(df)
    with pytest.raises(GpdiffError, match="adjacency has 3 rows for 4 node columns"):
        City.from_pandas(df, adjacency=np.eye(3))
