"""Every supported format, written here in its published layout at toy size, read back; and the input faults
of public bug reports that reach the loaders (h5 tables, ids files, coordinates, negative flows, huge values,
channel files that do not line up)."""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpdiff.data.catalog import load_city
from gpdiff.data.city import City
from gpdiff.data.formats import load_path
from gpdiff.data.formats.astgcn import load_astgcn
from gpdiff.data.formats.city_folder import load_city_folder, write_city_folder
from gpdiff.data.formats.dcrnn import load_dcrnn
from gpdiff.data.formats.gpd_folder import load_gpd_folder
from gpdiff.data.graph import gaussian_knn_adjacency
from gpdiff.data.lookup import load_named
from gpdiff.utils.errors import GpdiffError
from tests.conftest import SERIES_IDS, STAMPS, dcrnn_h5, run_cli, series_folder

IDS = ["773869", "767541", "767542", "717447", "717446"]


def _speeds(t: int, n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.round(rng.uniform(20, 70, size=(t, n)), 3)


def _adj(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, size=(n, n)).astype(np.float32)
    a[a < 0.4] = 0
    return a


# ------------------------------------------------------------------------------ DCRNN
def _write_dcrnn(folder: Path, values: np.ndarray, times: pd.DatetimeIndex, ids: list[str] | list[int] = IDS,
                 key: str = "df", fmt: str = "fixed", h5_name: str = "metr-la.h5",
                 pkl_name: str | None = "adj_mx.pkl", pkl_ids: list[str] | None = None,
                 adj: np.ndarray | None = None) -> tuple[Path, np.ndarray]:
    """Write the DCRNN pair; the pickle lists ``pkl_ids`` (default: reversed) with ``adj`` in that order."""
    folder.mkdir(parents=True, exist_ok=True)
    h5 = folder / h5_name
    pd.DataFrame(values, index=times, columns=ids).to_hdf(h5, key=key, format=fmt)
    pkl_ids = pkl_ids if pkl_ids is not None else [str(i) for i in ids][::-1]
    adj = adj if adj is not None else _adj(len(pkl_ids))
    if pkl_name:
        with (folder / pkl_name).open("wb") as f:
            pickle.dump([pkl_ids, {s: i for i, s in enumerate(pkl_ids)}, adj], f, protocol=2)
    return h5, adj


def test_dcrnn_values_mask_and_graph_order(tmp_path: Path) -> None:
    t = 120
    times = pd.date_range("2012-03-01", periods=t, freq="5min")
    vals = _speeds(t, 5)
    vals[3, 1] = 0.0  # 0 = missing
    vals[7, 2] = np.nan
    h5, adj = _write_dcrnn(tmp_path, vals, times)
    city = load_dcrnn(h5)  # the pickle is found beside the h5
    assert city.node_ids == IDS and city.name == "metr-la"
    assert city.interval_minutes == 5 and city.start == pd.Timestamp("2012-03-01")
    assert (city.kind, city.units, city.n_steps) == ("speed", "mph", t)
    assert not city.mask[3, 1] and not city.mask[7, 2] and city.mask.sum() == t * 5 - 2
    np.testing.assert_array_equal(city.values[:, :, 0][city.mask], vals.astype(np.float32)[city.mask])
    assert city.values[3, 1, 0] == 0 and city.values[7, 2, 0] == 0
    # pickle lists the sensors reversed: the loader must reorder to the h5 columns
    np.testing.assert_array_equal(city.adjacency, adj[::-1, ::-1])


def test_dcrnn_pems_bay_layout_key_speed_int_columns(tmp_path: Path) -> None:
    ids = [400001, 400017, 400030, 400040]
    times = pd.date_range("2017-01-01", periods=60, freq="5min")
    vals = _speeds(60, 4)
    h5, adj = _write_dcrnn(tmp_path, vals, times, ids=ids, key="speed", h5_name="pems-bay.h5",
                           pkl_name="adj_mx_bay.pkl", pkl_ids=[str(i) for i in ids])
    locs = tmp_path / "graph_sensor_locations_bay.csv"  # PEMS-BAY style: no header
    locs.write_text("".join(f"{i},37.{k}1,-121.{k}2\n" for k, i in enumerate(ids)))
    city = load_dcrnn(h5)
    assert city.node_ids == [str(i) for i in ids] and city.name == "pems-bay"
    np.testing.assert_array_equal(city.adjacency, adj)
    assert city.coords is not None and city.coords[2].tolist() == [37.21, -121.22]


def test_dcrnn_table_format_via_pandas(tmp_path: Path) -> None:
    times = pd.date_range("2012-03-01", periods=50, freq="5min")
    vals = _speeds(50, 5)
    h5, _ = _write_dcrnn(tmp_path, vals, times, fmt="table")
    city = load_dcrnn(h5)
    np.testing.assert_allclose(city.values[:, :, 0], vals.astype(np.float32))


def test_dcrnn_old_pandas_layout_is_read_without_unpickling(tmp_path: Path) -> None:
    """py2-era files: index kind 'datetime64' (ns) and pickled attributes current pandas may not load."""
    import h5py

    times = pd.date_range("2012-03-01", periods=40, freq="5min")
    vals = _speeds(40, 5)
    h5, _ = _write_dcrnn(tmp_path, vals, times)
    with h5py.File(h5, "r+") as f:
        ns = times.as_unit("ns").asi8
        del f["df/axis1"]
        axis1 = f["df"].create_dataset("axis1", data=ns)
        axis1.attrs["kind"] = np.bytes_(b"datetime64")
        axis1.attrs["freq"] = np.bytes_(b"cnot_a_module\nNoSuchClass\np0\n.")  # would fail to unpickle
    city = load_dcrnn(h5)
    assert city.timestamps.equals(times)
    np.testing.assert_allclose(city.values[:, :, 0], vals.astype(np.float32))


def test_dcrnn_gap_is_filled_as_missing(tmp_path: Path) -> None:
    times = pd.date_range("2017-03-12", periods=80, freq="5min")
    keep = np.r_[0:20, 32:80]  # one hour missing, like the PEMS-BAY DST gap
    vals = _speeds(80, 5)
    h5, _ = _write_dcrnn(tmp_path, vals[keep], times[keep])
    city = load_dcrnn(h5)
    assert city.n_steps == 80 and city.timestamps.equals(times)
    assert not city.mask[20:32].any() and city.mask[keep].all()
    np.testing.assert_allclose(city.values[keep, :, 0], vals[keep].astype(np.float32))
    assert "12 missing timestamps" in city.source


def test_dcrnn_explicit_pickle_path(tmp_path: Path) -> None:
    times = pd.date_range("2012-03-01", periods=50, freq="5min")
    h5, adj = _write_dcrnn(tmp_path / "a", _speeds(50, 5), times, pkl_name="my_graph.pkl")
    city = load_dcrnn(h5, tmp_path / "a" / "my_graph.pkl", name="la")
    assert city.name == "la"
    np.testing.assert_array_equal(city.adjacency, adj[::-1, ::-1])


@pytest.mark.parametrize("case", ["duplicate", "unsorted"])
def test_dcrnn_bad_timestamps(tmp_path: Path, case: str) -> None:
    times = pd.date_range("2012-03-01", periods=50, freq="5min")
    if case == "duplicate":
        times = times.insert(10, times[10])
    else:
        times = times[[*range(10), 11, 10, *range(12, 50)]]
    h5, _ = _write_dcrnn(tmp_path, _speeds(len(times), 5), times)
    with pytest.raises(GpdiffError) as err:
        load_dcrnn(h5)
    msg = str(err.value)
    assert "metr-la.h5" in msg and str(times[10] if case == "duplicate" else times[11]) in msg
    assert ("more than once" in msg) if case == "duplicate" else ("sort the rows" in msg)
    assert "\n" not in msg


def test_dcrnn_graph_errors(tmp_path: Path) -> None:
    times = pd.date_range("2012-03-01", periods=50, freq="5min")
    h5, _ = _write_dcrnn(tmp_path / "ids", _speeds(50, 5), times, pkl_ids=["1", "2", "3", "4", "5"])
    with pytest.raises(GpdiffError, match=r"adj_mx\.pkl.*sensor ids do not match"):
        load_dcrnn(h5)
    h5, _ = _write_dcrnn(tmp_path / "none", _speeds(50, 5), times, pkl_name=None)
    with pytest.raises(GpdiffError, match=r"no graph pickle beside .*metr-la\.h5"):
        load_dcrnn(h5)
    bad = _adj(5)
    bad[1, 2] = np.nan
    h5, _ = _write_dcrnn(tmp_path / "nan", _speeds(50, 5), times, adj=bad)
    with pytest.raises(GpdiffError, match=r"adj_mx\.pkl.*NaN"):
        load_dcrnn(h5)
    with pytest.raises(GpdiffError, match="does not exist"):
        load_dcrnn(tmp_path / "missing.h5")
    (tmp_path / "junk.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(GpdiffError, match=r"junk\.h5 is not a readable HDF5"):
        load_dcrnn(tmp_path / "junk.h5", tmp_path / "ids" / "adj_mx.pkl")


def test_dcrnn_all_missing_node_names_file(tmp_path: Path) -> None:
    times = pd.date_range("2012-03-01", periods=50, freq="5min")
    vals = _speeds(50, 5)
    vals[:, 4] = 0.0
    h5, _ = _write_dcrnn(tmp_path, vals, times)
    with pytest.raises(GpdiffError, match=r"metr-la\.h5.*no observed value.*717446"):
        load_dcrnn(h5)


# -------------------------------------------------------------------------------- GPD
def _write_gpd(folder: Path, t: int = 100, n: int = 4, c: int = 2) -> tuple[np.ndarray, np.ndarray]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    data = rng.uniform(1, 50, size=(t, n, c))
    adj = _adj(n)
    np.save(folder / "dataset.npy", data)
    np.save(folder / "matrix.npy", adj)
    return data, adj


def test_gpd_speed_folder(tmp_path: Path) -> None:
    data, adj = _write_gpd(tmp_path / "metr-la")
    data[5, 0, 0] = 0.0
    np.save(tmp_path / "metr-la" / "dataset.npy", data)
    city = load_gpd_folder(tmp_path / "metr-la")
    assert (city.interval_minutes, city.kind, city.units) == (5, "speed", "mph")
    assert city.values.shape == (100, 4, 2) and not city.mask[5, 0] and city.mask.sum() == 399
    np.testing.assert_allclose(city.values[:, :, 1], data[:, :, 1].astype(np.float32))
    np.testing.assert_array_equal(city.adjacency, adj)
    assert city.start == pd.Timestamp("2000-01-03") and city.start.day_of_week == 0
    assert "start unknown" in city.source


@pytest.mark.parametrize(("folder", "minutes", "kind"), [("Data_DC", 60, "flow"), ("chengdu_m", 10, "speed"),
                                                         ("man", 60, "flow"), ("shenzhen", 10, "speed")])
def test_gpd_defaults_by_folder_name(tmp_path: Path, folder: str, minutes: int, kind: str) -> None:
    data, _ = _write_gpd(tmp_path / folder)
    city = load_gpd_folder(tmp_path / folder, start="2019-01-01")
    assert (city.interval_minutes, city.kind) == (minutes, kind)
    assert city.start == pd.Timestamp("2019-01-01") and "unknown" not in city.source
    np.testing.assert_allclose(city.values[:, :, 0], data[:, :, 0].astype(np.float32))


def test_gpd_unknown_folder_needs_interval(tmp_path: Path) -> None:
    _write_gpd(tmp_path / "mycity")
    with pytest.raises(GpdiffError, match=r"mycity.*interval_minutes="):
        load_gpd_folder(tmp_path / "mycity")
    assert load_gpd_folder(tmp_path / "mycity", interval_minutes=15).interval_minutes == 15
    (tmp_path / "mycity" / "city.yaml").write_text("interval_minutes: 30\nkind: flow\nstart: 2020-02-03\n")
    city = load_path(tmp_path / "mycity")
    assert city.interval_minutes == 30 and city.start == pd.Timestamp("2020-02-03")


def test_gpd_bad_inputs(tmp_path: Path) -> None:
    d = tmp_path / "metr-la"
    _write_gpd(d)
    np.save(d / "dataset.npy", np.ones((100, 4)))
    with pytest.raises(GpdiffError, match=r"dataset\.npy.*rank 2"):
        load_gpd_folder(d)
    np.save(d / "dataset.npy", np.ones((100, 4, 2)))
    np.save(d / "matrix.npy", np.ones((5, 5), dtype=np.float32))
    with pytest.raises(GpdiffError, match=r"matrix\.npy.*5x5.*4 nodes"):
        load_gpd_folder(d)
    m = np.ones((4, 4), dtype=np.float32)
    m[0, 3] = np.nan
    np.save(d / "matrix.npy", m)
    with pytest.raises(GpdiffError, match=r"matrix\.npy.*NaN"):
        load_gpd_folder(d)
    (d / "matrix.npy").unlink()
    with pytest.raises(GpdiffError, match=r"matrix\.npy does not exist"):
        load_gpd_folder(d)


# ----------------------------------------------------------------------------- ASTGCN
def test_astgcn_index_csv_gaussian_kernel(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    data = rng.integers(0, 400, size=(200, 5, 3)).astype(np.float64)
    np.savez(tmp_path / "PEMS04.npz", data=data)
    edges = [(0, 1, 300.0), (1, 2, 500.0), (3, 4, 1200.0), (2, 0, 800.0)]
    (tmp_path / "PEMS04.csv").write_text("from,to,cost\n" + "".join(f"{a},{b},{c}\n" for a, b, c in edges))
    city = load_astgcn(tmp_path / "PEMS04.npz")
    assert (city.kind, city.interval_minutes, city.units) == ("flow", 5, "vehicles/5min")
    assert city.channels == ["flow", "occupancy", "speed"] and city.start == pd.Timestamp("2018-01-01")
    np.testing.assert_array_equal(city.values, data.astype(np.float32))
    assert city.mask.all()  # zero flow is a real observation
    sigma = np.std([c for *_, c in edges])
    a = city.adjacency
    np.testing.assert_allclose(a, a.T)
    for i, j, c in edges:
        assert a[i, j] == pytest.approx(np.exp(-((c / sigma) ** 2)), rel=1e-6)
    assert a[0, 3] == 0 and city.n_edges == 8


def test_astgcn_pems03_ids_file(tmp_path: Path) -> None:
    ids = ["317842", "318711", "313344", "312134"]
    data = np.random.default_rng(5).uniform(1, 100, size=(60, 4, 1))
    np.savez(tmp_path / "PEMS03.npz", data=data)
    (tmp_path / "PEMS03.txt").write_text("\n".join(ids) + "\n")
    (tmp_path / "PEMS03.csv").write_text("from,to,distance\n317842,313344,1.2\n312134,318711,3.4\n")
    city = load_path(tmp_path / "PEMS03.npz")
    assert city.node_ids == ids and city.channels == ["flow"]
    assert city.adjacency[0, 2] > 0 and city.adjacency[2, 0] > 0 and city.adjacency[3, 1] > 0
    assert city.adjacency[0, 1] == 0


def test_astgcn_bad_inputs(tmp_path: Path) -> None:
    np.savez(tmp_path / "PEMS08.npz", flow=np.ones((50, 3, 1)))
    (tmp_path / "PEMS08.csv").write_text("from,to,cost\n0,1,10\n")
    with pytest.raises(GpdiffError, match=r"PEMS08\.npz has no array 'data'"):
        load_astgcn(tmp_path / "PEMS08.npz")
    np.savez(tmp_path / "PEMS08.npz", data=np.ones((50, 3, 1)))
    (tmp_path / "PEMS08.csv").write_text("from,to,cost\n0,7,10\n")
    with pytest.raises(GpdiffError, match=r"PEMS08\.csv.*'7'.*ids_path"):
        load_astgcn(tmp_path / "PEMS08.npz")
    (tmp_path / "PEMS08.csv").unlink()
    with pytest.raises(GpdiffError, match=r"PEMS08\.csv does not exist"):
        load_astgcn(tmp_path / "PEMS08.npz")
    np.savez(tmp_path / "PEMS08.npz", data=np.ones((50, 3)))
    (tmp_path / "PEMS08.csv").write_text("0,1,10\n")
    with pytest.raises(GpdiffError, match=r"PEMS08\.npz.*rank 2"):
        load_astgcn(tmp_path / "PEMS08.npz")


# ------------------------------------------------------------------------ city folder
def _series_csv(path: Path, times: pd.DatetimeIndex, ids: list[str], vals: np.ndarray) -> None:
    df = pd.DataFrame(vals, index=pd.Index(times.strftime("%Y-%m-%d %H:%M"), name="time"), columns=ids)
    df.to_csv(path, na_rep="")


def _city_folder(d: Path, t: int = 96, ids: list[str] | None = None, freq: str = "1h") -> np.ndarray:
    d.mkdir(parents=True, exist_ok=True)
    ids = ids or ["a", "b", "c", "d"]
    vals = np.random.default_rng(6).integers(0, 30, size=(t, len(ids))).astype(float)
    vals[4, 1] = np.nan
    _series_csv(d / "series.csv", pd.date_range("2021-01-01", periods=t, freq=freq), ids, vals)
    return vals


def test_city_folder_adjacency_with_header_is_reordered(tmp_path: Path) -> None:
    vals = _city_folder(tmp_path / "town")
    adj = np.array([[0, 1, 2, 3], [1, 0, 4, 5], [2, 4, 0, 6], [3, 5, 6, 0]], dtype=float)  # order a, b, c, d
    order = [3, 1, 0, 2]  # written as d, b, a, c
    pd.DataFrame(adj[np.ix_(order, order)], columns=["d", "b", "a", "c"]).to_csv(
        tmp_path / "town" / "adjacency.csv", index=False)
    city = load_city_folder(tmp_path / "town")
    assert city.node_ids == ["a", "b", "c", "d"] and city.name == "town"
    assert (city.interval_minutes, city.kind, city.n_steps) == (60, "flow", 96)
    np.testing.assert_array_equal(city.adjacency, adj)
    assert not city.mask[4, 1] and city.mask.sum() == 96 * 4 - 1  # zeros are observed in flow data
    np.testing.assert_array_equal(city.values[:, :, 0][city.mask], vals[~np.isnan(vals)].astype(np.float32))


@pytest.mark.parametrize("layout", ["plain", "index_column", "index_and_header"])
def test_city_folder_adjacency_layouts(tmp_path: Path, layout: str) -> None:
    _city_folder(tmp_path / "t", ids=["10", "11", "12", "13"])
    adj = _adj(4).astype(np.float64)
    ids = ["10", "11", "12", "13"]
    if layout == "plain":
        text = pd.DataFrame(adj).to_csv(index=False, header=False)
    elif layout == "index_column":
        text = pd.DataFrame(adj, index=ids).to_csv(header=False)
    else:
        text = pd.DataFrame(adj, index=ids, columns=ids).to_csv()
    (tmp_path / "t" / "adjacency.csv").write_text(text)
    np.testing.assert_allclose(load_city_folder(tmp_path / "t").adjacency, adj.astype(np.float32))


def test_city_folder_edges_nodes_and_yaml(tmp_path: Path) -> None:
    d = tmp_path / "x"
    vals = _city_folder(d)
    vals[10, 0] = 0.0
    _series_csv(d / "series.csv", pd.date_range("2021-01-01", periods=96, freq="1h"), ["a", "b", "c", "d"], vals)
    (d / "edges.csv").write_text("from,to,weight\na,b,0.5\nc,d,\nb,c,2\n")
    (d / "nodes.csv").write_text("id,lat,lon,lanes,pop\nd,1.3,103.9,4,10\nc,1.2,103.8,3,20\n"
                                 "b,1.1,103.7,2,30\na,1.0,103.6,1,40\nzz,0,0,0,0\n")
    (d / "city.yaml").write_text("name: Speedy\nkind: speed\nunits: km/h\n")
    city = load_city_folder(d)
    assert (city.name, city.kind, city.units) == ("Speedy", "speed", "km/h")
    assert not city.mask[10, 0]  # zero speed = missing
    expect = np.zeros((4, 4))
    expect[0, 1] = expect[1, 0] = 0.5
    expect[2, 3] = expect[3, 2] = 1.0
    expect[1, 2] = expect[2, 1] = 2.0
    np.testing.assert_array_equal(city.adjacency, expect)
    assert city.coords is not None and city.coords[0].tolist() == [1.0, 103.6] and city.coord_kind == "latlon"
    assert city.attribute_names == ["lanes", "pop"]
    np.testing.assert_array_equal(city.attributes, [[1, 40], [2, 30], [3, 20], [4, 10]])


def test_city_folder_graph_from_coordinates(tmp_path: Path) -> None:
    ids = [f"n{i}" for i in range(6)]
    _city_folder(tmp_path / "g", ids=ids)
    lat = [34.0, 34.01, 34.02, 34.5, 34.51, 34.52]
    (tmp_path / "g" / "nodes.csv").write_text("id,lat,lon\n" + "".join(f"n{i},{la},-118\n" for i, la in
                                                                         enumerate(lat)))
    city = load_city_folder(tmp_path / "g")
    a = city.adjacency
    np.testing.assert_array_equal(a, a.T)
    assert (a[0, 1] > a[0, 3] >= 0) and np.count_nonzero(a) > 0 and "8-NN" in city.source
    np.testing.assert_allclose(gaussian_knn_adjacency(np.array([[0.0, 0], [3, 4], [6, 8]]), k=1, latlon=False),
                               gaussian_knn_adjacency(np.array([[0.0, 0], [3, 4], [6, 8]]), k=1, latlon=False).T)


def test_city_folder_gaps_and_time_errors(tmp_path: Path) -> None:
    d = tmp_path / "c"
    d.mkdir()
    times = pd.date_range("2021-01-01", periods=60, freq="15min")
    keep = np.r_[0:10, 14:60]
    vals = np.arange(60 * 3, dtype=float).reshape(60, 3) + 1
    _series_csv(d / "series.csv", times[keep], ["a", "b", "c"], vals[keep])
    (d / "edges.csv").write_text("from,to\na,b\n")
    city = load_city_folder(d)
    assert city.n_steps == 60 and city.interval_minutes == 15 and not city.mask[10:14].any()
    np.testing.assert_array_equal(city.values[keep, :, 0], vals[keep])
    _series_csv(d / "series.csv", times[[0, 1, 1, 2, 3]], ["a", "b", "c"], vals[:5])
    with pytest.raises(GpdiffError, match=r"series\.csv: timestamp 2021-01-01 00:15:00 appears more than once"):
        load_city_folder(d)
    _series_csv(d / "series.csv", times[[0, 2, 1, 3]], ["a", "b", "c"], vals[:4])
    with pytest.raises(GpdiffError, match=r"series\.csv: .*not in increasing order.*sort the rows"):
        load_city_folder(d)
    (d / "series.csv").write_text("time,a,b,c\n2021-01-01 00:00,1,2,3\nyesterday,1,2,3\n")
    with pytest.raises(GpdiffError, match=r"series\.csv: 'yesterday' \(line 3\) is not a timestamp"):
        load_city_folder(d)
    (d / "series.csv").write_text("time,a,b,c\n2021-01-01 00:00,1,2,3\n2021-01-01 01:00,1,x,3\n")
    with pytest.raises(GpdiffError, match=r"series\.csv: column 'b' has the non-numeric value 'x'"):
        load_city_folder(d)


def test_city_folder_bad_inputs(tmp_path: Path) -> None:
    d = tmp_path / "bad"
    _city_folder(d)
    assert load_city_folder(d).n_edges == 0  # no graph file: a city without edges (graph models refuse it)
    (d / "adjacency.csv").write_text("0,1,0\n1,0,1\n0,1,0\n")
    with pytest.raises(GpdiffError, match=r"adjacency\.csv: adjacency is 3x3 but series\.csv has 4 nodes"):
        load_city_folder(d)
    (d / "adjacency.csv").write_text("0,1,0,0\n1,0,,0\n0,1,0,1\n0,0,1,0\n")
    with pytest.raises(GpdiffError, match=r"adjacency\.csv: .*NaN.*row 1, column 2"):
        load_city_folder(d)
    (d / "adjacency.csv").unlink()
    (d / "nodes.csv").write_text("id,lat,lon,road_type\na,1,2,primary\nb,1,2,x\nc,1,2,y\nd,1,2,z\n")
    with pytest.raises(GpdiffError, match=r"nodes\.csv: column 'road_type' is not numeric .*'primary'"):
        load_city_folder(d)
    (d / "nodes.csv").unlink()
    (d / "edges.csv").write_text("from,to\na,q\n")
    with pytest.raises(GpdiffError, match=r"edges\.csv: node id 'q' is not a column of series\.csv"):
        load_city_folder(d)
    (d / "edges.csv").write_text("from,to\na,b\n")
    (d / "city.yaml").write_text("kind: speeed\n")
    with pytest.raises(GpdiffError, match=r"city\.yaml: kind 'speeed'"):
        load_city_folder(d)
    (d / "city.yaml").unlink()
    vals = np.ones((20, 2))
    vals[:, 1] = np.nan
    _series_csv(d / "series.csv", pd.date_range("2021-01-01", periods=20, freq="1h"), ["a", "b"], vals)
    with pytest.raises(GpdiffError, match=r"series\.csv: city 'bad': 1 node\(s\) have no observed value.*\bb\b"):
        load_city_folder(d)
    with pytest.raises(GpdiffError, match="city folder .* does not exist"):
        load_city_folder(tmp_path / "nope")


# ------------------------------------------------------------------- export and dispatch
def _toy_city(kind: str = "flow") -> City:
    rng = np.random.default_rng(7)
    t, n = 72, 5
    values = rng.uniform(1, 90, size=(t, n, 2)).astype(np.float32)
    mask = rng.uniform(size=(t, n)) > 0.1
    mask[0] = True
    values[:, :, 0][~mask] = 0
    return City(
        name="toy", values=values, mask=mask, start="2020-05-04 06:30", interval_minutes=30,
        adjacency=_adj(n), kind=kind, units="count" if kind == "flow" else "mph",
        node_ids=["s1", "s 2", "s,3", "4", "x5"], channels=["target", "occupancy"],
        coords=rng.uniform(-50, 50, size=(n, 2)), attributes=rng.normal(size=(n, 2)).astype(np.float32),
        attribute_names=["pop", "poi"], source="unit test",
    )


@pytest.mark.parametrize("kind", ["flow", "speed"])
def test_write_city_folder_round_trip(tmp_path: Path, kind: str) -> None:
    city = _toy_city(kind)
    back = load_city_folder(write_city_folder(city, tmp_path / "out"))
    for attr in ("name", "kind", "units", "node_ids", "channels", "start", "interval_minutes", "coord_kind",
                 "attribute_names", "source"):
        assert getattr(back, attr) == getattr(city, attr), attr
    np.testing.assert_array_equal(back.mask, city.mask)
    np.testing.assert_array_equal(back.values, city.values)
    np.testing.assert_array_equal(back.adjacency, city.adjacency)
    np.testing.assert_array_equal(back.coords, city.coords)
    np.testing.assert_array_equal(back.attributes, city.attributes)


def test_load_path_dispatch(tmp_path: Path) -> None:
    city = _toy_city()
    city.save(tmp_path / "toy.city")
    assert load_path(tmp_path / "toy.city").node_ids == city.node_ids
    write_city_folder(city, tmp_path / "folder")
    assert load_path(tmp_path / "folder").name == "toy"
    assert load_city(str(tmp_path / "folder")).n_nodes == 5
    _write_gpd(tmp_path / "DC")
    assert load_path(tmp_path / "DC").interval_minutes == 60
    times = pd.date_range("2012-03-01", periods=30, freq="5min")
    h5, _ = _write_dcrnn(tmp_path / "dcrnn", _speeds(30, 5), times)
    assert load_path(tmp_path / "dcrnn").kind == "speed" and load_path(h5).n_nodes == 5
    with pytest.raises(GpdiffError, match=r"nowhere.* does not exist"):
        load_path(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GpdiffError, match=r"empty is not in a format gpdiff reads.*series\.csv.*dataset\.npy"):
        load_path(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(GpdiffError, match=r"notes\.txt: unsupported file type"):
        load_path(tmp_path / "notes.txt")


# ------------------------------------------------------- the real DCRNN graph files, if present
SHARED = Path("/work/shared/data")


@pytest.mark.parametrize(("folder", "pkl", "locs", "h5_name"), [
    ("metr-la_graph", "adj_mx.pkl", "graph_sensor_locations.csv", "metr-la.h5"),
    ("pems-bay_graph", "adj_mx_bay.pkl", "graph_sensor_locations_bay.csv", "pems-bay.h5"),
])
def test_dcrnn_with_published_graph_files(tmp_path: Path, folder: str, pkl: str, locs: str, h5_name: str) -> None:
    src = SHARED / folder
    if not (src / pkl).is_file():
        pytest.skip(f"{src / pkl} not available")
    with (src / pkl).open("rb") as f:
        ids, _, adj = pickle.load(f, encoding="latin1")
    ids = [str(i) for i in ids]
    cols = ids[::-1]  # a speed file whose columns are in another order than the graph
    times = pd.date_range("2012-03-01", periods=24, freq="5min")
    h5 = tmp_path / h5_name
    pd.DataFrame(_speeds(24, len(ids)), index=times, columns=cols).to_hdf(h5, key="df")
    city = load_dcrnn(h5, src / pkl, locations_path=src / locs)
    assert city.node_ids == cols and city.n_nodes == len(ids)
    np.testing.assert_array_equal(city.adjacency, adj[::-1, ::-1])
    assert city.coords is not None and np.all(np.abs(city.coords[:, 0] - 36) < 3)  # California latitudes



# issue 29, item 3 -------------------------------------------- values a city of its kind cannot have
def _negative_input(tmp_path: Path, fmt: str, allow: bool):
    """A flow city in ``fmt`` whose node 'b' (index 1) reads -1 ('no reading') at steps 2 and 5."""
    vals = np.arange(48 * 3, dtype=float).reshape(48, 3) + 1
    vals[[2, 5], 1] = -1
    d = tmp_path / fmt
    if fmt == "city folder":
        series_folder(d, STAMPS, vals)
        if allow:
            (d / "city.yaml").write_text("allow_negative: true\n")
        return lambda: load_city_folder(d)
    if fmt == "pandas":
        df = pd.DataFrame(vals, index=pd.date_range("2024-01-01", periods=48, freq="h"), columns=SERIES_IDS)
        return lambda: City.from_pandas(df, adjacency=np.eye(3), allow_negative=allow)
    d.mkdir(parents=True)
    if fmt == "gpd":
        np.save(d / "dataset.npy", vals[:, :, None])
        np.save(d / "matrix.npy", np.eye(3, dtype=np.float32))
        return lambda: load_gpd_folder(d, interval_minutes=60, start="2024-01-01", kind="flow",
                                       **({"allow_negative": True} if allow else {}))
    np.savez(d / "PEMS08.npz", data=vals[:, :, None])
    (d / "PEMS08.csv").write_text("from,to,cost\n0,1,1.0\n1,2,2.0\n")
    return lambda: load_astgcn(d / "PEMS08.npz", interval_minutes=60, start="2024-01-01",
                               **({"allow_negative": True} if allow else {}))


# ------------------------------------------------------------------ options everywhere (issue 14, fault 6)
def test_h5_picks_the_one_time_indexed_table(tmp_path: Path) -> None:
    h5, ids, vals = dcrnn_h5(tmp_path / "d", key="speed")
    pd.DataFrame({"sensor": ids, "lanes": [2, 3, 4]}).to_hdf(h5, key="meta", format="fixed")
    (h5.parent / "adj_mx.pkl").write_bytes(pickle.dumps(np.eye(3)))
    np.testing.assert_allclose(load_dcrnn(h5).values[:, :, 0], vals, rtol=1e-6)


def test_h5_with_two_time_tables_names_the_option_and_takes_it_everywhere(tmp_path: Path) -> None:
    h5, ids, vals = dcrnn_h5(tmp_path / "d", key="speed")
    pd.DataFrame(vals * 2, index=pd.date_range("2012-03-01", periods=60, freq="5min"), columns=ids).to_hdf(
        h5, key="flow", format="fixed")
    (h5.parent / "adj_mx.pkl").write_bytes(pickle.dumps(np.eye(3)))
    with pytest.raises(GpdiffError, match=r"holds 2 tables .*city\.yaml.*--option key=flow"):
        load_path(h5)
    r = run_cli("data", "show", str(h5), "--option", "key=speed", "--plot", str(tmp_path / "p.png"))
    assert r.exit_code == 0, r.output
    (h5.parent / "city.yaml").write_text("key: flow\n")
    np.testing.assert_allclose(load_path(h5.parent).values[:, :, 0], vals * 2, rtol=1e-6)
    assert load_named("d", str(tmp_path)).name == "d"  # a --data-dir run reads city.yaml too


def test_astgcn_ids_file_from_city_yaml(tmp_path: Path) -> None:
    d = tmp_path / "pems03"
    d.mkdir()
    data = np.random.default_rng(0).uniform(0, 100, (50, 3, 1))
    np.savez(d / "PEMS03.npz", data=data)
    (d / "PEMS03.csv").write_text("from,to,distance\n317842,318711,1.2\n318711,320433,2.5\n")
    (d / "sensors.txt").write_text("317842\n318711\n320433\n")
    with pytest.raises(GpdiffError, match=r"PEMS03\.csv: node '317842'.*--option ids_path="):
        load_astgcn(d / "PEMS03.npz")
    (d / "city.yaml").write_text("ids_path: sensors.txt\n")
    city = load_path(d)
    assert city.node_ids == ["317842", "318711", "320433"] and city.adjacency[0, 1] > 0
    with pytest.raises(GpdiffError, match=r"city\.yaml: unknown key\(s\) key for the ASTGCN format"):
        (d / "city.yaml").write_text("key: speed\n")
        load_path(d)


# issue 29, item 2 ------------------------------------------------- coordinates that cannot be right


@pytest.mark.parametrize("latlon, needles", [
    ([(34.1, -118.3), (34.2, 200.0), (34.3, -118.1)],
     [r"nodes\.csv: node 'b' \(line 3\) has longitude 200 \(lat 34\.2, lon 200\), outside \[-180, 180\]",
      "fix the coordinates"]),
    ([(34.1, -118.3), (95.0, -118.2), (34.3, -118.1)],
     [r"node 'b' \(line 3\) has latitude 95 .*outside \[-90, 90\]", "fix the coordinates"]),
    ([(-118.3, 34.1), (-118.2, 34.2), (-118.1, 34.3)],
     [r"node 'a' \(line 2\) has latitude -118\.3 .*outside \[-90, 90\]; lat and lon look swapped"]),
])
def test_nodes_csv_coordinates_out_of_range_are_named(tmp_path: Path, latlon, needles) -> None:
    d = series_folder(tmp_path / "c", STAMPS)
    pd.DataFrame({"id": SERIES_IDS, "lat": [p[0] for p in latlon], "lon": [p[1] for p in latlon]}).to_csv(
        d / "nodes.csv", index=False)
    with pytest.raises(GpdiffError) as err:
        load_city_folder(d)
    for needle in needles:
        assert re.search(needle, str(err.value)), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("fmt", ["city folder", "pandas", "gpd", "astgcn"])
def test_negative_flow_is_refused_unless_allowed(tmp_path: Path, fmt: str) -> None:
    node = "b" if fmt in ("city folder", "pandas") else "1"
    with pytest.raises(GpdiffError) as err:
        _negative_input(tmp_path / "no", fmt, allow=False)()
    msg = str(err.value)
    assert f"node '{node}' has 2 negative value(s), the first -1 at 2024-01-01 02:00" in msg, msg
    assert "leave those cells empty (NaN) to mark them missing" in msg and "allow_negative: true" in msg
    assert "\n" not in msg
    with pytest.warns(UserWarning, match=f"node '{node}' has 2 negative value.*kept, as allow_negative is true"):
        city = _negative_input(tmp_path / "yes", fmt, allow=True)()
    assert city.allow_negative and city.values[2, 1, 0] == -1 and city.mask[2, 1]
    with pytest.warns(UserWarning, match="allow_negative"):  # the choice travels with a saved city
        assert City.from_bytes(city.to_bytes()).allow_negative


def test_negative_speed_is_not_a_flow_fault(tmp_path: Path) -> None:
    vals = np.full((48, 3), 30.0)
    vals[3, 0] = -2.0
    d = series_folder(tmp_path / "c", STAMPS, vals)
    (d / "city.yaml").write_text("kind: speed\n")
    assert load_city_folder(d).values[3, 0, 0] == -2.0


@pytest.mark.parametrize("where", ["series", "channel", "gpd", "pandas"])
def test_a_value_beyond_float32_is_named_without_a_numpy_warning(tmp_path: Path, where: str) -> None:
    vals = np.ones((48, 3))
    big = vals.copy()
    big[4, 2] = 1e39
    d = tmp_path / "c"
    if where in ("series", "channel"):
        series_folder(d, STAMPS, big if where == "series" else vals)
        if where == "channel":
            series_folder(tmp_path / "ch", STAMPS, big)
            (tmp_path / "ch" / "series.csv").rename(d / "channel1.csv")
            (d / "city.yaml").write_text("channels: [inflow, outflow]\n")
        load = lambda: load_city_folder(d)  # noqa: E731
        needle = (rf"{'channel1' if where == 'channel' else 'series'}\.csv: column 'c' has the value 1e\+39 at "
                  r"2024-01-01 04:00 \(line 6\), beyond the float32 range")
    elif where == "gpd":
        d.mkdir()
        np.save(d / "dataset.npy", big[:, :, None])
        np.save(d / "matrix.npy", np.eye(3, dtype=np.float32))
        load = lambda: load_gpd_folder(d, interval_minutes=60, start="2024-01-01")  # noqa: E731
        needle = r"dataset\.npy: city 'c': node '2' has the value 1e\+39 at 2024-01-01 04:00, beyond the float32"
    else:
        df = pd.DataFrame(big, index=pd.date_range("2024-01-01", periods=48, freq="h"), columns=SERIES_IDS)
        load = lambda: City.from_pandas(df, adjacency=np.eye(3))  # noqa: E731
        needle = r"city 'city': node 'c' has the value 1e\+39 at 2024-01-01 04:00, beyond the float32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a numpy overflow warning would fail here
        with pytest.raises(GpdiffError) as err:
            load()
    assert re.search(needle, str(err.value)), str(err.value)
    assert "mask" not in str(err.value) and "leave the cell empty" in str(err.value)


# issue 29, item 10 ---------------------------------------------------- a channel file that does not line up
@pytest.mark.parametrize("fault, needle", [
    ("reordered", None),
    ("other node", r"channel1\.csv: its node columns differ from series\.csv \(missing \['c'\], unknown \['x'\]\)"),
    ("shifted", r"channel1\.csv: its timestamps differ from series\.csv \(line 2 has the time 2024-01-01 01:00:00, "
                r"series\.csv 2024-01-01 00:00:00\)"),
    ("shorter", r"channel1\.csv: its timestamps differ from series\.csv \(47 timestamps, series\.csv has 48\)"),
])
def test_a_channel_file_that_does_not_line_up(tmp_path: Path, fault: str, needle: str | None) -> None:
    vals = np.arange(48 * 3, dtype=float).reshape(48, 3) + 1
    d = series_folder(tmp_path / "c", STAMPS, vals)
    (d / "city.yaml").write_text("channels: [inflow, outflow]\n")
    ch = pd.DataFrame(vals * 10, index=pd.Index(STAMPS, name="timestamp"), columns=SERIES_IDS)
    if fault == "reordered":
        ch = ch[["c", "a", "b"]]
    elif fault == "other node":
        ch = ch.rename(columns={"c": "x"})
    elif fault == "shifted":
        ch.index = list(pd.date_range("2024-01-01 01:00", periods=48, freq="h").strftime("%Y-%m-%d %H:%M"))
        ch.index.name = "timestamp"
    else:
        ch = ch.iloc[:-1]
    ch.to_csv(d / "channel1.csv")
    if needle is None:
        city = load_city_folder(d)
        np.testing.assert_array_equal(city.values[:, :, 1], vals * 10)  # aligned by node id, not by position
        return
    with pytest.raises(GpdiffError) as err:
        load_city_folder(d)
    assert re.search(needle, str(err.value)), str(err.value)
