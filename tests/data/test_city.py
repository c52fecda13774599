"""City: its file round trip, validation, time features, lookup errors, and to/from pandas."""

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpdiff.data import City, load_city
from gpdiff.data.formats.city_folder import load_city_folder
from gpdiff.data.formats.dcrnn import load_dcrnn
from gpdiff.utils.errors import GpdiffError
from tests.conftest import SERIES_IDS, STAMPS, dcrnn_h5, series_folder


def test_round_trip_is_exact_and_deterministic(small_city, tmp_path):
    c = small_city
    assert not c.mask.all()  # missing values make the round trip non-trivial
    c.save(tmp_path / "a.city")
    c.save(tmp_path / "b.city")
    assert (tmp_path / "a.city").read_bytes() == (tmp_path / "b.city").read_bytes()
    d = City.load(tmp_path / "a.city")
    np.testing.assert_array_equal(d.values, c.values)
    np.testing.assert_array_equal(d.mask, c.mask)
    np.testing.assert_array_equal(d.adjacency, c.adjacency)
    np.testing.assert_array_equal(d.coords, c.coords)
    assert (d.start, d.interval_minutes, d.node_ids, d.kind) == (c.start, c.interval_minutes, c.node_ids, c.kind)
    assert (d.name, d.units, d.channels, d.coord_kind, d.source) == (c.name, c.units, c.channels, c.coord_kind,
                                                                     c.source)
    assert load_city(tmp_path / "a.city").name == c.name


def _city(**kw):
    base = dict(name="x", values=np.ones((10, 3, 1)), mask=np.ones((10, 3), bool), start=pd.Timestamp("2024-01-01"),
                interval_minutes=60, adjacency=np.zeros((3, 3)), kind="flow", units="u")
    base.update(kw)
    return City(**base)


@pytest.mark.parametrize("kw,msg", [
    (dict(values=np.ones((10, 3, 1, 1))), "rank 4"),
    (dict(adjacency=np.zeros((4, 4))), "adjacency is 4x4 but the series has 3 nodes"),
    (dict(mask=np.c_[np.ones((10, 2), bool), np.zeros((10, 1), bool)]), "no observed value"),
    (dict(kind="temperature"), "kind"),
    (dict(interval_minutes=7), "divide a day"),
    (dict(node_ids=["a", "a", "b"]), "not unique"),
])
def test_validation_messages(kw, msg):
    with pytest.raises(GpdiffError, match=msg):
        _city(**kw)


def test_time_features():
    c = _city(start=pd.Timestamp("2024-01-06 22:00"))  # a Saturday
    assert c.day_of_week()[0] == 5 and c.day_of_week()[2] == 6
    assert c.time_of_day()[1] == pytest.approx(23 / 24)


def test_unknown_city_suggests_close_names():
    with pytest.raises(GpdiffError, match="unknown city 'la-lop'"):
        load_city("la-lop")


def test_garbage_file_is_a_clear_error(tmp_path):
    p = tmp_path / "bad.city"
    p.write_bytes(b"not a city")
    with pytest.raises(GpdiffError, match=r"bad\.city is not a gpdiff city file \(or a damaged one\); delete it"):
        City.load(p)


T, N = 36, 4
TIMES = pd.date_range("2012-03-01", periods=T, freq="5min")


def _speeds(seed: int = 0) -> np.ndarray:
    return np.round(np.random.default_rng(seed).uniform(20, 70, (T, N)), 3)


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



@pytest.mark.parametrize("source", ["pandas", "dcrnn", "city"])
def test_swapped_lat_lon_are_refused_by_every_reader(tmp_path: Path, source: str) -> None:
    swapped = np.array([[-118.3, 34.1], [-118.2, 34.2], [-118.1, 34.3]])
    if source == "pandas":
        df = pd.DataFrame(np.ones((48, 3)), index=pd.date_range("2024-01-01", periods=48, freq="h"), columns=SERIES_IDS)
        with pytest.raises(GpdiffError, match=r"city 'city': node 'a' has latitude -118\.3 .*look swapped"):
            City.from_pandas(df, coords=swapped)
    elif source == "dcrnn":
        h5, ids, _ = dcrnn_h5(tmp_path / "la")
        with open(tmp_path / "la" / "adj_mx.pkl", "wb") as f:
            pickle.dump((ids, {s: i for i, s in enumerate(ids)}, np.eye(3, dtype=np.float32)), f)
        pd.DataFrame({"sensor_id": ids, "latitude": swapped[:, 0], "longitude": swapped[:, 1]}).to_csv(
            tmp_path / "la" / "graph_sensor_locations.csv")
        with pytest.raises(GpdiffError, match=r"graph_sensor_locations\.csv: sensor '700000' has latitude -118\.3 "
                                              r".*look swapped"):
            load_dcrnn(h5)
    else:
        base = City(name="t", values=np.ones((48, 3)), mask=np.ones((48, 3), bool), start="2024-01-01",
                    interval_minutes=60, adjacency=np.eye(3), kind="flow", units="count", node_ids=SERIES_IDS)
        with pytest.raises(GpdiffError, match=r"city 't': node 'a' has latitude -118\.3 .*look swapped"):
            City(**{**base.__dict__, "coords": swapped})


@pytest.mark.parametrize("coords, needle", [
    ([(0.0, 0.0)] * 3, "are all zero"),
    ([(48.2, 16.4)] * 3, r"are all the same point \(48\.2, 16\.4\)"),
])
def test_all_nodes_at_one_point_is_a_warning(tmp_path: Path, coords, needle) -> None:
    d = series_folder(tmp_path / "c", STAMPS)
    (d / "edges.csv").unlink()  # the kNN graph is then built from these coordinates
    pd.DataFrame({"id": SERIES_IDS, "lat": [c[0] for c in coords], "lon": [c[1] for c in coords]}).to_csv(
        d / "nodes.csv", index=False)
    with pytest.warns(UserWarning, match=needle + ".*means nothing"):
        city = load_city_folder(d)
    assert city.n_nodes == 3
