"""Input faults from public bug reports (issue 14), each rebuilt at toy size: the right value, or one clear error."""

from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from gpdiff.cli import main
from gpdiff.data.city import City
from gpdiff.data.formats import load_path
from gpdiff.data.formats.astgcn import load_astgcn
from gpdiff.data.formats.city_folder import load_city_folder
from gpdiff.data.formats.dcrnn import load_dcrnn
from gpdiff.data.formats.gpd_folder import load_gpd_folder
from gpdiff.data.lookup import load_named
from gpdiff.experiment.pipeline import load_cities
from gpdiff.experiment.runconfig import RunConfig
from gpdiff.utils.errors import GpdiffError

IDS = ["a", "b", "c"]


def _folder(d: Path, stamps: list[str], values: np.ndarray | None = None, sep: str = ",", decimal: str = ".",
            header: str = "timestamp") -> Path:
    """A city folder: series.csv with the given timestamp texts, an edges.csv over IDS."""
    d.mkdir(parents=True, exist_ok=True)
    values = values if values is not None else np.arange(len(stamps) * 3, dtype=float).reshape(-1, 3) + 1.5
    lines = [sep.join([header, *IDS])]
    for s, row in zip(stamps, values):
        lines.append(sep.join([s, *(f"{v:g}".replace(".", decimal) for v in row)]))
    (d / "series.csv").write_text("\n".join(lines) + "\n")
    pd.DataFrame([["a", "b"], ["b", "c"]], columns=["from", "to"]).to_csv(d / "edges.csv", index=False)
    return d


def _run(*args: str):
    return CliRunner().invoke(main, list(args))


# 1 ------------------------------------------------------------------- day-first dates
@pytest.mark.parametrize("days", [12, 14])
def test_day_first_dates_are_read_day_first(tmp_path: Path, days: int) -> None:
    times = pd.date_range("2024-01-01", periods=days * 24, freq="h")
    city = load_city_folder(_folder(tmp_path / "c", list(times.strftime("%d/%m/%Y %H:%M"))))
    assert city.n_steps == days * 24 and city.mask.all()
    assert city.start == pd.Timestamp("2024-01-01 00:00") and city.end == times[-1]
    assert "%d/%m/%Y %H:%M" in city.source


def test_ambiguous_day_month_order_says_how_to_state_it(tmp_path: Path) -> None:
    times = pd.date_range("2024-03-05", periods=24, freq="h")  # one day: 05/03 reads as 5 March or 3 May
    d = _folder(tmp_path / "c", list(times.strftime("%d/%m/%Y %H:%M")))
    with pytest.raises(GpdiffError, match=r"series\.csv: dates like '05/03/2024 00:00' read day-first .*time_format"):
        load_city_folder(d)
    (d / "city.yaml").write_text('time_format: "%d/%m/%Y %H:%M"\n')
    assert load_city_folder(d).start == pd.Timestamp("2024-03-05")
    (d / "city.yaml").unlink()
    r = _run("data", "show", str(d), "--option", "time_format=%m/%d/%Y %H:%M", "--plot", str(tmp_path / "p.png"))
    assert r.exit_code == 0, r.output
    assert "2024-05-03 00:00" in r.output


def test_a_mostly_missing_time_axis_is_an_error_unless_allowed(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=12 * 24, freq="h")
    d = _folder(tmp_path / "c", list(times.strftime("%d/%m/%Y %H:%M")))
    with pytest.raises(GpdiffError, match=r"288 rows on a 60-minute grid of 8064 steps.*96% .*missing.*allow_gaps"):
        load_city_folder(d, time_format="%m/%d/%Y %H:%M")
    city = load_city_folder(d, time_format="%m/%d/%Y %H:%M", allow_gaps=True)
    assert city.n_steps == 8064 and city.mask.mean() == pytest.approx(288 / 8064)


# 2 ------------------------------------------------------------- UTC offsets, clock change
def test_utc_offsets_across_a_clock_change(tmp_path: Path) -> None:
    local = pd.date_range("2024-11-02 00:00", periods=96, freq="h", tz="America/New_York")
    stamps = [t.isoformat() for t in local]
    assert stamps[24].endswith("-04:00") and stamps[-1].endswith("-05:00")
    d = _folder(tmp_path / "c", stamps)
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
        load_city_folder(_folder(tmp_path / "mixed", stamps))


# 3 --------------------------------------------------------------- one irregular timestamp
@pytest.mark.parametrize("fault", ["shifted", "stray"])
def test_one_irregular_timestamp_is_named(tmp_path: Path, fault: str) -> None:
    times = pd.date_range("2024-01-01", periods=200, freq="5min").tolist()
    if fault == "shifted":
        times[100] = times[100] + pd.Timedelta(minutes=2)  # 08:20 -> 08:22
    else:
        times.insert(101, times[100] + pd.Timedelta(minutes=2))  # an extra row at 08:22
    d = _folder(tmp_path / "c", [f"{t:%Y-%m-%d %H:%M}" for t in times])
    with pytest.raises(GpdiffError) as err:
        load_city_folder(d)
    msg = str(err.value)
    line = 102 if fault == "shifted" else 103
    assert "2024-01-01 08:22:00" in msg and f"line {line}" in msg and "5-minute grid" in msg, msg


# 4 ------------------------------------------------------------------------ CSV dialects
def test_semicolon_separator_and_decimal_comma(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=48, freq="h")
    vals = np.round(np.random.default_rng(0).uniform(0, 100, (48, 3)), 2)
    d = _folder(tmp_path / "c", [f"{t:%Y-%m-%d %H:%M}" for t in times], vals, sep=";", decimal=",")
    city = load_city_folder(d)
    np.testing.assert_allclose(city.values[:, :, 0], vals, rtol=1e-6)
    assert city.node_ids == IDS and "decimal comma" in city.source


def test_pandas_default_index_column_is_dropped(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=48, freq="h")
    df = pd.DataFrame(np.arange(144, dtype=float).reshape(48, 3) + 1, columns=IDS)
    df.insert(0, "timestamp", times.strftime("%Y-%m-%d %H:%M"))
    d = _folder(tmp_path / "c", ["x", "y"])
    df.to_csv(d / "series.csv")  # index=True: a leading unnamed column 0, 1, 2 ...
    city = load_city_folder(d)
    assert city.node_ids == IDS and city.n_steps == 48
    np.testing.assert_array_equal(city.values[:, :, 0], df[IDS].to_numpy())


# 5 ---------------------------------------------------------------- DCRNN-family pickles
def _h5(d: Path, n: int = 3, key: str = "df") -> tuple[Path, list[str], np.ndarray]:
    d.mkdir(parents=True, exist_ok=True)
    ids = [f"7{i:05d}" for i in range(n)]
    vals = np.random.default_rng(0).uniform(20, 70, (60, n))
    pd.DataFrame(vals, index=pd.date_range("2012-03-01", periods=60, freq="5min"), columns=ids).to_hdf(
        d / "metr-la.h5", key=key, format="fixed")
    return d / "metr-la.h5", ids, vals


def test_protocol0_pickle_with_crlf_line_ends(tmp_path: Path) -> None:
    h5, ids, _ = _h5(tmp_path / "d")
    adj = np.arange(9, dtype=np.float32).reshape(3, 3)
    rev = ids[::-1]
    raw = pickle.dumps([rev, {s: i for i, s in enumerate(rev)}, adj], protocol=0)
    (h5.parent / "adj_mx.pkl").write_bytes(raw.replace(b"\n", b"\r\n"))
    city = load_dcrnn(h5)
    np.testing.assert_array_equal(city.adjacency, adj[::-1, ::-1])


def test_bare_matrix_pickle(tmp_path: Path) -> None:
    h5, ids, _ = _h5(tmp_path / "d")
    adj = np.random.default_rng(1).uniform(0, 1, (3, 3)).astype(np.float32)
    (h5.parent / "adj_mx.pkl").write_bytes(pickle.dumps(adj))
    city = load_dcrnn(h5)
    np.testing.assert_allclose(city.adjacency, adj)
    assert "node order assumed" in city.source
    (h5.parent / "adj_mx.pkl").write_bytes(pickle.dumps(np.ones((4, 4))))
    with pytest.raises(GpdiffError, match=r"adj_mx\.pkl holds a bare 4x4 matrix but the series has 3 nodes"):
        load_dcrnn(h5)


# 6 ------------------------------------------------------------------ options everywhere
def test_h5_picks_the_one_time_indexed_table(tmp_path: Path) -> None:
    h5, ids, vals = _h5(tmp_path / "d", key="speed")
    pd.DataFrame({"sensor": ids, "lanes": [2, 3, 4]}).to_hdf(h5, key="meta", format="fixed")
    (h5.parent / "adj_mx.pkl").write_bytes(pickle.dumps(np.eye(3)))
    np.testing.assert_allclose(load_dcrnn(h5).values[:, :, 0], vals, rtol=1e-6)


def test_h5_with_two_time_tables_names_the_option_and_takes_it_everywhere(tmp_path: Path) -> None:
    h5, ids, vals = _h5(tmp_path / "d", key="speed")
    pd.DataFrame(vals * 2, index=pd.date_range("2012-03-01", periods=60, freq="5min"), columns=ids).to_hdf(
        h5, key="flow", format="fixed")
    (h5.parent / "adj_mx.pkl").write_bytes(pickle.dumps(np.eye(3)))
    with pytest.raises(GpdiffError, match=r"holds 2 tables .*city\.yaml.*--option key=flow"):
        load_path(h5)
    r = _run("data", "show", str(h5), "--option", "key=speed", "--plot", str(tmp_path / "p.png"))
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


def test_data_convert_writes_a_city(tmp_path: Path) -> None:
    times = pd.date_range("2024-03-05", periods=24, freq="h")
    d = _folder(tmp_path / "c", list(times.strftime("%d/%m/%Y %H:%M")))
    r = _run("data", "convert", str(d), str(tmp_path / "c.city"), "--option", "time_format=%d/%m/%Y %H:%M")
    assert r.exit_code == 0, r.output
    assert City.load(tmp_path / "c.city").start == pd.Timestamp("2024-03-05")


# 7 ------------------------------------------------------------- a truncated cached city
def test_truncated_city_in_the_cache(tmp_path: Path, small_city: City, monkeypatch: pytest.MonkeyPatch) -> None:
    cities = tmp_path / "cache" / "cities"
    cities.mkdir(parents=True)
    small_city.save(cities / "good.city")
    data = small_city.to_bytes()
    (cities / "half.city").write_bytes(data[: len(data) // 2])
    monkeypatch.setenv("GPDIFF_CACHE", str(tmp_path / "cache"))
    r = _run("data", "list")
    assert r.exit_code == 0, r.output
    assert "good" in r.output and "hangzhou-metro" in r.output
    broken = [ln for ln in r.output.splitlines() if "half" in ln]
    assert len(broken) == 1 and broken[0].startswith("broken: half:") and "delete it" in broken[0]
    r = _run("data", "show", "half")
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "half.city is damaged or incomplete" in r.output and "delete it" in r.output
    (cities / "folder.city").mkdir()  # not a city file: not listed at all
    small_city.save(cities / "nyc-taxi.city")  # shadowed by the bundled city of that name: said so
    r = _run("data", "list")
    assert r.exit_code == 0 and "folder" not in r.output, r.output
    assert "note: the cached nyc-taxi.city is not used: the bundled nyc-taxi has the same name" in r.output
    r = _run("data", "show", "good", "--plot", str(tmp_path / "g.png"))
    assert r.exit_code == 0, r.output


# 8 ---------------------------------------------------------------- one- and two-node graphs
@pytest.mark.parametrize("n", [1, 2])
def test_data_show_of_a_tiny_graph(tmp_path: Path, n: int) -> None:
    city = City(name="tiny", values=np.random.default_rng(0).uniform(1, 5, (48, n, 1)), mask=np.ones((48, n), bool),
                start="2024-01-01", interval_minutes=60, adjacency=np.ones((n, n)) - np.eye(n), kind="flow", units="u")
    r = _run("data", "show", str(city.save(tmp_path / "t.city")), "--plot", str(tmp_path / "t.png"))
    assert r.exit_code == 0, r.output
    assert "nodes" in r.output and (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


# 9 ------------------------------------------------ a test period with no observed values
def test_unobserved_test_period_is_caught_before_training(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=20 * 24, freq="h")
    vals = np.random.default_rng(0).uniform(1, 9, (len(times), 3))
    target = vals.copy()
    target[-4 * 24:] = np.nan  # the last 20 % (the test period) never observed
    _folder(tmp_path / "cities" / "tgt", [f"{t:%Y-%m-%d %H:%M}" for t in times], target)
    _folder(tmp_path / "cities" / "src", [f"{t:%Y-%m-%d %H:%M}" for t in times], vals)
    cfg = RunConfig(target="tgt", data_dir=str(tmp_path / "cities"), out=str(tmp_path / "run"))
    with pytest.raises(GpdiffError, match=r"tgt: the test period \(steps 384-480.*has no observed values at all"):
        load_cities(cfg)
    assert not (tmp_path / "run").exists()


# 10 ---------------------------------------------------------------- a city without a graph
def test_a_city_without_a_graph_loads_and_only_graph_models_refuse_it(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=20 * 24, freq="h")
    vals = 10 + np.sin(np.arange(times.size) / 24 * 2 * np.pi)[:, None] * np.array([1.0, 2.0, 3.0])
    for name in ("tgt", "src"):
        _folder(tmp_path / "cities" / name, [f"{t:%Y-%m-%d %H:%M}" for t in times], vals)
    (tmp_path / "cities" / "tgt" / "edges.csv").unlink()  # series.csv alone
    city = load_city_folder(tmp_path / "cities" / "tgt")
    assert city.n_edges == 0 and "graph: none" in city.source
    assert _run("data", "convert", str(tmp_path / "cities" / "tgt"), str(tmp_path / "copy")).exit_code == 0
    assert not (tmp_path / "copy" / "adjacency.csv").exists()  # written without a graph, read back without one
    assert load_city_folder(tmp_path / "copy").n_edges == 0
    r = _run("data", "show", str(tmp_path / "cities" / "tgt"), "--plot", str(tmp_path / "p.png"))
    assert r.exit_code == 0, r.output
    cfg = RunConfig(target="tgt", sources=["src"], data_dir=str(tmp_path / "cities"), out=str(tmp_path / "run"))
    assert load_cities(cfg).target.n_edges == 0  # STID, the default base model, needs no graph
    cfg = RunConfig.from_dict({**cfg.to_dict(), "zoo": {"model": "stgcn"}})
    with pytest.raises(GpdiffError, match=r"city 'tgt' has no graph edges but base model 'stgcn' needs a graph; "
                                          r"add an adjacency .* use a model that works without one: stid \(--model\)"):
        load_cities(cfg)
    assert not (tmp_path / "run").exists()


# 11 ------------------------------------------------ paths and values found by a bad-input pass
def _one_line_error(r, *needles: str) -> None:
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    for n in needles:
        assert n in lines[0], lines[0]


def test_convert_never_overwrites_the_input_or_a_folder_with_files(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=48, freq="h")
    d = _folder(tmp_path / "raw", [f"{t:%Y-%m-%d %H:%M}" for t in times])
    before = (d / "series.csv").read_text()
    for into in (d, tmp_path):  # the input folder, or a folder holding it
        _one_line_error(_run("data", "convert", str(d), str(into), "--force"), "is the input or holds it")
    _one_line_error(_run("data", "convert", str(d / "series.csv"), str(d), "--force"), "is the input or holds it")
    assert (d / "series.csv").read_text() == before and (d / "edges.csv").is_file()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    _one_line_error(_run("data", "convert", str(d), str(tmp_path / "other")),
                    "already holds files (notes.txt);", "--force")
    (tmp_path / "afile.txt").write_text("x")
    _one_line_error(_run("data", "convert", str(d), str(tmp_path / "afile.txt")), "is an existing file")
    assert _run("data", "convert", str(d), str(tmp_path / "c.city")).exit_code == 0
    _one_line_error(_run("data", "convert", str(d), str(tmp_path / "c.city")), "c.city already exists", "--force")
    assert _run("data", "convert", str(d), str(tmp_path / "c.city"), "--force").exit_code == 0
    (tmp_path / "dir.city").mkdir()
    _one_line_error(_run("data", "convert", str(d), str(tmp_path / "dir.city")), "dir.city is a folder")
    out = tmp_path / "out"
    out.mkdir()
    (out / "channel1.csv").write_text("stale")
    assert _run("data", "convert", str(d), str(out), "--force").exit_code == 0
    assert (out / "series.csv").is_file() and not (out / "channel1.csv").exists()
    r = _run("data", "show", str(d), "--plot", str(tmp_path / "afile.txt" / "p.png"))  # the table, then one line
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.output.strip().splitlines()[-1].startswith("error: cannot use") and "choose another path" in r.output


def test_run_settings_are_checked_before_any_stage(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    for args, needles in [
        (["--data-dir", str(tmp_path / "nowhere")], ["--data-dir", "is not a folder"]),
        (["--set", "target_days=.nan"], ["target_days must be a number of days > 0, got nan"]),
        (["--set", "test_fraction=1.5"], ["test_fraction must be between 0 and 1"]),
        (["--methods", ""], ["no methods to run"]),
        (["--sources", "nyc-taxi,nyc-taxi"], ["sources list 'nyc-taxi' more than once"]),
        (["--set", "methods.reptile.meta_stepz=5"], ["methods.reptile.meta_stepz", "known at methods.reptile"]),
        (["--set", "methods.reptile.meta_steps=-5"], ["methods.reptile.meta_steps must be at least 1, got -5"]),
        (["--set", "methods.gpd.lr=0.1"], ["method 'gpd' takes no settings"]),
        (["--set", "methods.reptile.inner_lr=.nan"], ["inner_lr and meta_lr must be numbers > 0"]),
        (["--set", "methods=5"], ["methods must be a list of method names or a mapping"]),
        (["--methods", "gpd,gpd"], ["methods list 'gpd' more than once"]),
        (["--methods", "seasonal_naive", "--set", "methods.reptile.meta_steps=3"],
         ["sets a method that --methods leaves out"]),
    ]:
        _one_line_error(_run("run", "--out", out, *args), *needles)
    assert not (tmp_path / "run").exists()
    (tmp_path / "empty").mkdir()
    _one_line_error(_run("run", "--out", out, "--data-dir", str(tmp_path / "empty"), "--target", "nope"),
                    "unknown city 'nope': not in --data-dir", "(empty)")
    (tmp_path / "cities" / "mine").mkdir(parents=True)
    _one_line_error(_run("run", "--out", out, "--data-dir", str(tmp_path / "cities"), "--target", "nope"),
                    "unknown city 'nope': not in --data-dir", "(mine)", "melbourne-ped")


def test_config_files_that_are_not_utf8_or_not_yaml_are_named(tmp_path: Path) -> None:
    (tmp_path / "bytes.yaml").write_bytes(b"\xff\xfeseed: 1\n")
    _one_line_error(_run("run", "--config", str(tmp_path / "bytes.yaml")), "is not UTF-8 text")
    (tmp_path / "list.yaml").write_text("- seed: 1\n")
    _one_line_error(_run("run", "--config", str(tmp_path / "list.yaml"), "--methods", "gpd"),
                    "a run config must be a mapping of settings, got list")
    (tmp_path / "syntax.yaml").write_text("seed: 1\nzoo: {lr: 0.1\nout: x\n")
    _one_line_error(_run("run", "--config", str(tmp_path / "syntax.yaml")), "not valid YAML (line 3, column")


# issue 29, item 2 ------------------------------------------------- coordinates that cannot be right
STAMPS = list(pd.date_range("2024-01-01", periods=48, freq="h").strftime("%Y-%m-%d %H:%M"))


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
    d = _folder(tmp_path / "c", STAMPS)
    pd.DataFrame({"id": IDS, "lat": [p[0] for p in latlon], "lon": [p[1] for p in latlon]}).to_csv(
        d / "nodes.csv", index=False)
    with pytest.raises(GpdiffError) as err:
        load_city_folder(d)
    for needle in needles:
        assert re.search(needle, str(err.value)), str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("source", ["pandas", "dcrnn", "city"])
def test_swapped_lat_lon_are_refused_by_every_reader(tmp_path: Path, source: str) -> None:
    swapped = np.array([[-118.3, 34.1], [-118.2, 34.2], [-118.1, 34.3]])
    if source == "pandas":
        df = pd.DataFrame(np.ones((48, 3)), index=pd.date_range("2024-01-01", periods=48, freq="h"), columns=IDS)
        with pytest.raises(GpdiffError, match=r"city 'city': node 'a' has latitude -118\.3 .*look swapped"):
            City.from_pandas(df, coords=swapped)
    elif source == "dcrnn":
        h5, ids, _ = _h5(tmp_path / "la")
        with open(tmp_path / "la" / "adj_mx.pkl", "wb") as f:
            pickle.dump((ids, {s: i for i, s in enumerate(ids)}, np.eye(3, dtype=np.float32)), f)
        pd.DataFrame({"sensor_id": ids, "latitude": swapped[:, 0], "longitude": swapped[:, 1]}).to_csv(
            tmp_path / "la" / "graph_sensor_locations.csv")
        with pytest.raises(GpdiffError, match=r"graph_sensor_locations\.csv: sensor '700000' has latitude -118\.3 "
                                              r".*look swapped"):
            load_dcrnn(h5)
    else:
        base = City(name="t", values=np.ones((48, 3)), mask=np.ones((48, 3), bool), start="2024-01-01",
                    interval_minutes=60, adjacency=np.eye(3), kind="flow", units="count", node_ids=IDS)
        with pytest.raises(GpdiffError, match=r"city 't': node 'a' has latitude -118\.3 .*look swapped"):
            City(**{**base.__dict__, "coords": swapped})


@pytest.mark.parametrize("coords, needle", [
    ([(0.0, 0.0)] * 3, "are all zero"),
    ([(48.2, 16.4)] * 3, r"are all the same point \(48\.2, 16\.4\)"),
])
def test_all_nodes_at_one_point_is_a_warning(tmp_path: Path, coords, needle) -> None:
    d = _folder(tmp_path / "c", STAMPS)
    (d / "edges.csv").unlink()  # the kNN graph is then built from these coordinates
    pd.DataFrame({"id": IDS, "lat": [c[0] for c in coords], "lon": [c[1] for c in coords]}).to_csv(
        d / "nodes.csv", index=False)
    with pytest.warns(UserWarning, match=needle + ".*means nothing"):
        city = load_city_folder(d)
    assert city.n_nodes == 3


# issue 29, item 3 -------------------------------------------- values a city of its kind cannot have
def _negative_input(tmp_path: Path, fmt: str, allow: bool):
    """A flow city in ``fmt`` whose node 'b' (index 1) reads -1 ('no reading') at steps 2 and 5."""
    vals = np.arange(48 * 3, dtype=float).reshape(48, 3) + 1
    vals[[2, 5], 1] = -1
    d = tmp_path / fmt
    if fmt == "city folder":
        _folder(d, STAMPS, vals)
        if allow:
            (d / "city.yaml").write_text("allow_negative: true\n")
        return lambda: load_city_folder(d)
    if fmt == "pandas":
        df = pd.DataFrame(vals, index=pd.date_range("2024-01-01", periods=48, freq="h"), columns=IDS)
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
    d = _folder(tmp_path / "c", STAMPS, vals)
    (d / "city.yaml").write_text("kind: speed\n")
    assert load_city_folder(d).values[3, 0, 0] == -2.0


@pytest.mark.parametrize("where", ["series", "channel", "gpd", "pandas"])
def test_a_value_beyond_float32_is_named_without_a_numpy_warning(tmp_path: Path, where: str) -> None:
    vals = np.ones((48, 3))
    big = vals.copy()
    big[4, 2] = 1e39
    d = tmp_path / "c"
    if where in ("series", "channel"):
        _folder(d, STAMPS, big if where == "series" else vals)
        if where == "channel":
            _folder(tmp_path / "ch", STAMPS, big)
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
        df = pd.DataFrame(big, index=pd.date_range("2024-01-01", periods=48, freq="h"), columns=IDS)
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
    d = _folder(tmp_path / "c", STAMPS, vals)
    (d / "city.yaml").write_text("channels: [inflow, outflow]\n")
    ch = pd.DataFrame(vals * 10, index=pd.Index(STAMPS, name="timestamp"), columns=IDS)
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
