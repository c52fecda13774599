"""The forecaster and the pretrained GPD folder: fit / predict / update / save / load on tiny synthetic
cities, new nodes, and every bad input the issue names."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from gpdiff.cli import main
from gpdiff.data.city import City
from gpdiff.data.formats.city_folder import write_city_folder
from gpdiff.data.synthetic import synthetic_city
from gpdiff.forecaster import GPD, Forecaster
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import read_yaml, write_yaml
from tests.conftest import REPO

FAST = {"finetune": {"max_epochs": 2, "steps_per_epoch": 2, "batch_size": 8}}


@pytest.fixture(scope="module")
def gpd(pretrained) -> GPD:
    return GPD.from_pretrained(pretrained)


def _city(days: int = 9, n: int = 4, seed: int = 7, name: str = "delta") -> City:
    return synthetic_city(name, n_nodes=n, days=days, seed=seed)


@pytest.fixture(scope="module")
def fitted(gpd) -> tuple[City, Forecaster]:
    city = _city()
    return city, Forecaster.fit(city, gpd, **FAST)


# ------------------------------------------------------------------ pretrained folder
def test_pretrained_folder_round_trips_and_generates_the_same_parameters(pretrained, gpd, tmp_path):
    assert gpd.source_names == ["beta", "gamma"] and gpd.window.horizon == 3
    card = (pretrained / "README.md").read_text()
    assert "| beta | 8 | 60 min |" in card and "Do not use it for these cities" in card
    again = GPD.from_pretrained(gpd.save_pretrained(tmp_path / "copy"))
    city = _city()
    from gpdiff.data.splits import Segment

    prompts = gpd.prompts(city, Segment(0, 72))
    assert torch.equal(gpd.generate(prompts, seed=3), again.generate(prompts, seed=3))
    assert torch.equal(again.anchor, gpd.anchor)
    assert not (pretrained / "denoiser" / "model.safetensors").exists()  # EMA weights only


def test_pretrained_folder_errors_name_the_problem(pretrained, tmp_path):
    import shutil

    with pytest.raises(GpdiffError, match="is not a folder"):
        GPD.from_pretrained(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(pretrained, broken)
    (broken / "denoiser" / "ema.safetensors").unlink()
    with pytest.raises(GpdiffError, match=r"incomplete: denoiser/ema.safetensors missing"):
        GPD.from_pretrained(broken)
    old = tmp_path / "old"
    shutil.copytree(pretrained, old)
    doc = read_yaml(old / "gpd.yaml")
    write_yaml(old / "gpd.yaml", {**doc, "format_version": 0, "gpdiff_version": "0.0.1"})
    with pytest.raises(GpdiffError, match=r"format version 0 \(written by gpdiff 0.0.1\).*reads versions 1, 2.*gpdiff pretrain --sources"):
        GPD.from_pretrained(old)
    other = tmp_path / "other"
    shutil.copytree(pretrained, other)
    write_yaml(other / "gpd.yaml", {**doc, "window": {**doc["window"], "horizon": 6}})
    with pytest.raises(GpdiffError, match="different parameter spec"):
        GPD.from_pretrained(other)


def test_fit_refuses_a_source_city_by_name_or_content(gpd):
    beta = synthetic_city("beta", n_nodes=8, days=12, seed=2)
    with pytest.raises(GpdiffError, match=r"one of this pretrained GPD's sources \(beta\).*gpdiff pretrain --sources gamma"):
        Forecaster.fit(beta, gpd, **FAST)
    import dataclasses

    with pytest.raises(GpdiffError, match=r"'renamed' is one of this pretrained GPD's sources \(beta\)"):
        Forecaster.fit(dataclasses.replace(beta, name="renamed"), gpd, **FAST)


# ------------------------------------------------------------------ fit / predict
def test_forecasts_start_one_interval_after_the_last_observation(fitted):
    city, f = fitted
    df = f.predict(city)
    assert list(df.columns) == ["timestamp", "node", "step", "forecast", "lower_80", "upper_80", "lower_95", "upper_95"]
    assert (df["lower_95"] <= df["lower_80"]).all() and (df["lower_80"] <= df["forecast"]).all()
    assert (df["forecast"] <= df["upper_80"]).all() and (df["upper_80"] <= df["upper_95"]).all()
    assert (df["lower_95"] >= 0).all()
    assert len(df) == city.n_nodes * 24  # one day by default
    first = df[df["step"] == 1]["timestamp"].unique()
    assert list(first) == [city.end + pd.Timedelta(hours=1)]
    assert df["timestamp"].max() == city.end + pd.Timedelta(hours=24)
    assert (df["forecast"] >= 0).all() and np.isfinite(df["forecast"]).all()  # a flow city: counts
    at = city.timestamps[100]
    df2 = f.predict(city, horizon=5, at=at)
    assert df2["timestamp"].min() == at + pd.Timedelta(hours=1) and df2["step"].max() == 5
    # nothing after `at` is read
    later = City(**{**city.__dict__, "values": city.values.copy()})
    later.values[101:] *= 50
    pd.testing.assert_frame_equal(df2, f.predict(later, horizon=5, at=at))
    assert f.meta["validation_mae"].keys() == {"gpd", "seasonal_naive", "weekly_naive"}


def test_predict_reproduces_adapt_forecast_of_the_same_parameters(gpd):
    """Without blend and clipping, predict at an origin equals the batched evaluation of the same
    parameters on the same window (the code gpdiff run scores)."""
    from gpdiff.data.splits import fit_split
    from gpdiff.data.windows import CityData
    from gpdiff.zoo.nodetrain import predict
    from gpdiff.zoo.params import unflatten

    city = _city()
    f = Forecaster.fit(city, gpd, blend={"naive": []}, clip=False, **FAST)
    w = f.window
    split = fit_split(city.n_steps, city.steps_per_day, 1, w.length)
    data = CityData(city, split, w.history, w.horizon, w.n_neighbors, scaler=f.scaler)
    origin = split.val.start + 5
    model = f.model()
    ref = predict(model, unflatten(f.params, model.spec()), data, np.array([origin]), model.config.in_channels)
    df = f.predict(city, horizon=w.horizon, at=city.timestamps[origin - 1])
    got = df.pivot(index="node", columns="step", values="forecast").loc[city.node_ids].to_numpy()
    np.testing.assert_allclose(got, ref[:, 0], rtol=1e-5, atol=1e-4)


def test_a_reloaded_forecaster_forecasts_identically_in_a_fresh_process(fitted, tmp_path):
    city, f = fitted
    f.save(tmp_path / "F")
    here = f.predict(city)
    code = ("import sys; from gpdiff.forecaster import Forecaster; from gpdiff.data.city import City; "
            "df = Forecaster.load(sys.argv[1]).predict(City.load(sys.argv[2])); df.to_pickle(sys.argv[3])")
    city.save(tmp_path / "c.city")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "F"), str(tmp_path / "c.city"), str(tmp_path / "o.pkl")],
                   check=True)
    pd.testing.assert_frame_equal(here, pd.read_pickle(tmp_path / "o.pkl"))
    pd.testing.assert_frame_equal(f.predict(), Forecaster.load(tmp_path / "F").predict())  # its own last days


def test_a_long_table_and_nodes_matched_by_id(fitted):
    city, f = fitted
    wide = city.to_pandas()
    long = wide.reset_index().melt(id_vars="time", var_name="node", value_name="value")
    long = long.sample(frac=1.0, random_state=0)  # any row order
    a, b = f.predict(city), f.predict(long)
    pd.testing.assert_frame_equal(a, b)
    shuffled = wide[list(reversed(wide.columns))]
    c = f.predict(shuffled)
    pd.testing.assert_frame_equal(a.sort_values(["node", "step"]).reset_index(drop=True),
                                  c.sort_values(["node", "step"]).reset_index(drop=True))


def test_a_new_node_is_generated_and_the_others_are_unchanged(fitted):
    city, f = fitted
    wide = city.to_pandas()
    wide["n_new"] = wide["n1"] * 0.5 + 3
    df = f.predict(wide)
    assert set(df["node"]) == {*city.node_ids, "n_new"}
    old = f.predict(city)
    pd.testing.assert_frame_equal(df[df["node"] != "n_new"].reset_index(drop=True), old)
    assert any("1 new node(s) got parameters generated from their prompts" in n for n in df.attrs["notes"])


def test_nodes_without_history_are_listed_not_forecast(fitted):
    city, f = fitted
    gappy = City(**{**city.__dict__, "mask": city.mask.copy()})
    gappy.mask[-10:, 2] = False
    df = f.predict(gappy)
    assert "n2" not in set(df["node"]) and len(df["node"].unique()) == 3
    assert any("n2 (17% of the last 12 steps observed" in n for n in df.attrs["notes"])


def test_recursive_forecasts_beyond_the_model_horizon_feed_back(fitted):
    city, f = fitted
    long = f.predict(city, horizon=10)
    short = f.predict(city, horizon=3)
    pd.testing.assert_frame_equal(long[long["step"] <= 3].reset_index(drop=True), short.reset_index(drop=True))


def test_a_naive_forecaster_needs_no_pretrained_model(tmp_path):
    city = _city()
    f = Forecaster.fit(city, method="weekly_naive")
    df = f.predict(city, horizon=30)
    node = city.node_ids[0]
    expect = city.values[city.n_steps - 168:city.n_steps - 168 + 30, 0, 0]
    np.testing.assert_allclose(df[df["node"] == node]["forecast"].to_numpy(), expect, rtol=1e-6)
    f.save(tmp_path / "W")
    assert not (tmp_path / "W" / "pretrained").exists()
    wide = city.to_pandas()
    wide["fresh"] = wide["n0"]
    out = Forecaster.load(tmp_path / "W").predict(wide, horizon=3)
    assert "fresh" in set(out["node"]) and any("new node(s) get the weekly_naive forecast" in n for n in out.attrs["notes"])


# ------------------------------------------------------------------ update and versions
def test_update_adds_a_version_and_keeps_the_previous_one(gpd, tmp_path):
    full = _city(days=11)
    first = full.subset_time(0, 9 * 24)
    f = Forecaster.fit(first, gpd, **FAST)
    f.save(tmp_path / "F")
    g = Forecaster.load(tmp_path / "F").update(full)
    assert g.version == 2 and g.meta["last_timestamp"] == full.end.isoformat()
    assert not torch.equal(g.params, f.params)
    g.save(tmp_path / "F")
    assert read_yaml(tmp_path / "F" / "forecaster.yaml")["versions"] == [1, 2]
    v1 = Forecaster.load(tmp_path / "F", version=1)
    pd.testing.assert_frame_equal(v1.predict(first), f.predict(first))
    assert Forecaster.load(tmp_path / "F").version == 2
    same = Forecaster.load(tmp_path / "F").update(full)  # no new day
    assert same.version == 2 and "no new day" in same.notes[0]
    with pytest.raises(GpdiffError, match="before the forecaster's last time"):
        Forecaster.load(tmp_path / "F").update(first)


def test_an_interrupted_update_leaves_the_folder_as_it_was(gpd, tmp_path, monkeypatch):
    full = _city(days=11)
    f = Forecaster.fit(full.subset_time(0, 9 * 24), gpd, **FAST)
    f.save(tmp_path / "F")
    before = {p: p.read_bytes() for p in (tmp_path / "F").rglob("*") if p.is_file()}
    g = Forecaster.load(tmp_path / "F").update(full)
    import gpdiff.forecaster.forecaster as mod

    def crash(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(mod, "atomic_write_text", crash)
    with pytest.raises(KeyboardInterrupt):
        g.save(tmp_path / "F")
    after = {p: p.read_bytes() for p in (tmp_path / "F").rglob("*") if p.is_file()}
    assert after == before
    assert Forecaster.load(tmp_path / "F").version == 1


# ------------------------------------------------------------------ bad input
def test_bad_inputs_are_one_clear_error(fitted, gpd, tmp_path):
    city, f = fitted
    half_hourly = synthetic_city("delta", n_nodes=4, days=9, seed=7, interval_minutes=30)
    with pytest.raises(GpdiffError, match="30-minute interval, but the forecaster was fitted at 60 minutes"):
        f.predict(half_hourly)
    strangers = City(**{**city.__dict__, "node_ids": [f"x{i}" for i in range(city.n_nodes)]})
    with pytest.raises(GpdiffError, match="no node in common"):
        f.update(strangers)
    with pytest.raises(GpdiffError, match=r"no node in common with the forecaster \(data: x0, x1, x2 and 1 more"):
        f.predict(strangers)
    with pytest.raises(GpdiffError, match=r"--at 2030-01-01: not a time step of delta"):
        f.predict(city, at="2030-01-01")
    with pytest.raises(GpdiffError, match=r"too few to fit a forecaster.*give at least 1.62 days"):
        Forecaster.fit(_city(days=9).subset_time(0, 30), gpd, **FAST)
    with pytest.raises(GpdiffError, match=r"needs the sources' model zoo.*gpdiff pretrain --sources beta,gamma --with-zoo"):
        Forecaster.fit(city, gpd, method="knn_residual")
    with pytest.raises(GpdiffError, match="unknown forecaster method 'magic'"):
        Forecaster.fit(city, gpd, method="magic")
    f.save(tmp_path / "F")
    doc = read_yaml(tmp_path / "F" / "forecaster.yaml")
    write_yaml(tmp_path / "F" / "forecaster.yaml", {**doc, "format_version": 99, "gpdiff_version": "9.0"})
    with pytest.raises(GpdiffError, match=r"format version 99, written by gpdiff 9.0"):
        Forecaster.load(tmp_path / "F")
    with pytest.raises(GpdiffError, match="not a forecaster folder"):
        Forecaster.load(tmp_path)


# ------------------------------------------------------------------ command line
def test_cli_fit_forecast_update(pretrained, tmp_path):
    full = _city(days=11)
    write_city_folder(full.subset_time(0, 9 * 24), tmp_path / "first")
    write_city_folder(full, tmp_path / "full")
    F = tmp_path / "F"
    r = CliRunner().invoke(main, ["fit", str(tmp_path / "first"), "--out", str(F), "--pretrained", str(pretrained),
                                  "--set", "finetune.max_epochs=2", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "validation MAE gpd" in r.output
    r = CliRunner().invoke(main, ["fit", str(tmp_path / "first"), "--out", str(F), "--pretrained", str(pretrained)])
    assert r.exit_code == 2 and "exists; pass --force" in r.output
    r = CliRunner().invoke(main, ["forecast", str(F), "--out", str(tmp_path / "f.csv"), "--plot", str(tmp_path / "f.png")])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(tmp_path / "f.csv")
    assert len(df) == 4 * 24 and (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    r = CliRunner().invoke(main, ["update", str(F), "--data", str(tmp_path / "full"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "version 2 (from 1)" in r.output
    r = CliRunner().invoke(main, ["update", str(F), "--data", str(tmp_path / "full")])
    assert r.exit_code == 0 and "no new day" in r.output
    r = CliRunner().invoke(main, ["forecast", str(F), "--data", str(tmp_path / "full"), "--horizon", "3"])
    assert r.exit_code == 0 and str(full.end + pd.Timedelta(hours=1)) in r.output
    r = CliRunner().invoke(main, ["forecast", str(F), "--out", str(tmp_path / "f.txt")])
    assert r.exit_code == 2 and "give a .csv or .parquet" in r.output


def test_cli_pretrain_needs_sources_or_a_zoo(tmp_path):
    r = CliRunner().invoke(main, ["pretrain", "--out", str(tmp_path / "p")])
    assert r.exit_code == 2 and "--sources a,b" in r.output


# ------------------------------------------------------------------ the pretrained GPD that ships
def test_the_shipped_pretrained_gpd_loads_and_refuses_bundled_targets():
    from gpdiff.data.catalog import bundled_names, load_city
    from gpdiff.diffusion.pretrained import bundled_path

    folder = bundled_path()
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    assert size <= 10 * 2**20, f"{size / 2**20:.1f} MiB"
    gpd = GPD.from_pretrained()
    assert sorted(gpd.source_names) == bundled_names()
    assert gpd.architecture["model"] == "stid" and gpd.window.history == 12 and gpd.window.horizon == 6
    assert "| melbourne-ped | 55 | 60 min |" in (folder / "README.md").read_text()
    with pytest.raises(GpdiffError, match="one of this pretrained GPD's sources"):
        Forecaster.fit(load_city("hangzhou-metro"))  # the default pretrained model, before any training
    f = Forecaster.fit(_city(days=4), finetune={"max_epochs": 1, "steps_per_epoch": 1})
    assert len(f.predict(horizon=6)) == 4 * 6


@pytest.mark.slow
def test_the_shipped_pretrained_gpd_is_rebuilt_by_its_script():
    """About five minutes: `python scripts/build_pretrained.py --check` rebuilds it and compares."""
    script = REPO / "scripts" / "build_pretrained.py"
    r = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
