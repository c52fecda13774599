"""BasicTS's layouts (current, split .npy, older pickles), written here at toy size and read back."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpdiff.data.formats import load_path
from gpdiff.data.formats.basicts import load_basicts
from gpdiff.utils.errors import GpdiffError

T, N = 36, 4
TIMES = pd.date_range("2012-03-01", periods=T, freq="5min")


def _speeds(seed: int = 0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).uniform(20, 70, (T, N)), 3)


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
