"""The forecaster and the pretrained GPD folder: fit / predict / update / save / load on tiny synthetic
cities, new nodes, and every bad input the issue names; the methods a folder's optional parts enable (the
zoo methods with ``gpdiff pretrain --with-zoo``, pooled_linear with its ridge): each fits, predicts and
reloads identically in a fresh process, a zoo method's forecaster is what ``run_method`` gives, and folders
without a part (or of format version 1) refuse in one line."""

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from gpdiff.cli import main
from gpdiff.data.catalog import load_city
from gpdiff.data.city import City
from gpdiff.data.formats.city_folder import write_city_folder
from gpdiff.data.splits import fit_split
from gpdiff.data.synthetic import synthetic_city
from gpdiff.data.windows import CityData
from gpdiff.experiment.runconfig import RunConfig
from gpdiff.forecaster import GPD, Forecaster
from gpdiff.forecaster.backtest import BacktestConfig, backtest
from gpdiff.methods import NEEDS_ZOO, MethodInputs, SourceSide, fit_on_sources, run_method
from gpdiff.methods import pooled_linear as linear
from gpdiff.methods.adapt import forecast
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import read_yaml, write_yaml
from gpdiff.zoo.sourcepool import prepare_cities
from tests.conftest import REPO, TINY, one_line_error, run_cli
from tests.forecaster.conftest import pretrain_config

FAST = {"finetune": {"max_epochs": 2, "steps_per_epoch": 2, "batch_size": 8}}
NEW = (*NEEDS_ZOO, "pooled_linear")  # the methods a pretrained folder's optional parts enable


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
    held = card[card.index("## Held-out source nodes"):card.index("## Training scores")]
    assert "| **mean ratio to weekly naive** |" in held and "| beta |" in held and "| gamma |" in held  # the default
    assert gpd.card["heldout"]["n_held"] == 2  # 10% of 8 and of 5 nodes, at least one of each
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
    from gpdiff.zoo.nodetrain import forecast_windows
    from gpdiff.zoo.params import unflatten

    city = _city()
    f = Forecaster.fit(city, gpd, blend={"naive": []}, clip=False, **FAST)
    w = f.window
    split = fit_split(city.n_steps, city.steps_per_day, 1, w.length)
    data = CityData(city, split, w.history, w.horizon, w.n_neighbors, scaler=f.scaler)
    origin = split.val.start + 5
    model = f.model()
    ref = forecast_windows(model, unflatten(f.params, model.spec()), data, np.array([origin]), model.config.in_channels)
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


def test_a_forecaster_saved_before_the_rename_of_scale_floor_loads(fitted, tmp_path):
    """ForecasterConfig.scale_floor is target_scale_floor, as in the run config; a folder that says
    scale_floor loads with the same setting, and a user who says it is told the new name."""
    _, f = fitted
    f.save(tmp_path / "F")
    saved = tmp_path / "F" / "versions" / "0001" / "forecaster.yaml"
    doc = read_yaml(saved)
    doc["config"]["scale_floor"] = doc["config"].pop("target_scale_floor")
    write_yaml(saved, doc)
    assert Forecaster.load(tmp_path / "F").config == f.config
    with pytest.raises(GpdiffError, match="'scale_floor' is now called 'target_scale_floor'"):
        Forecaster.fit(_city(), f.pretrained, scale_floor=0.1)


@pytest.fixture(scope="module")
def gpd_zoo(pretrained_zoo) -> GPD:
    return GPD.from_pretrained(pretrained_zoo)


@pytest.fixture(scope="module")
def fitted_new(gpd_zoo, one_thread) -> dict[str, Forecaster]:
    return {m: Forecaster.fit(_city(), gpd_zoo, method=m, **FAST) for m in NEW}


def _fit_data(city: City, f: Forecaster) -> CityData:
    """The city as Forecaster.fit splits and scales it."""
    w = f.window
    split = fit_split(city.n_steps, city.steps_per_day, f.config.val_days, w.length)
    return CityData(city, split, w.history, w.horizon, w.n_neighbors, min_rel_std=f.config.target_scale_floor,
                    context=w.context)


# ------------------------------------------------------------------ the folder's optional parts (issue 25)
def test_a_zoo_folder_holds_the_zoo_its_prompts_and_fits_and_round_trips(pretrained, pretrained_zoo, gpd_zoo, tmp_path):
    doc = read_yaml(pretrained_zoo / "gpd.yaml")
    assert doc["format_version"] == 2
    assert doc["contents"] == {"fits": ["pooled_linear"], "zoo": True, "zoo_fits": ["knn_residual", "reptile"],
                               "zoo_nodes": 13}
    assert read_yaml(pretrained / "gpd.yaml")["contents"]["zoo"] is False
    assert not (pretrained / "zoo").exists() and (pretrained / "fits" / "pooled_linear.safetensors").is_file()
    assert gpd_zoo.zoo is not None and len(gpd_zoo.zoo.params) == 13 and gpd_zoo.zoo.params.members is None
    assert gpd_zoo.zoo.prompts.keys() == gpd_zoo.zoo.params.keys()
    card = (pretrained_zoo / "README.md").read_text()
    assert "- source model zoo: included, 13 source nodes" in card
    assert "- pooled_linear ridge coefficients: included" in card
    plain = (pretrained / "README.md").read_text()
    assert "- source model zoo: not included" in plain and "gpdiff pretrain --sources beta,gamma --with-zoo" in plain
    again = GPD.from_pretrained(gpd_zoo.save_pretrained(tmp_path / "copy"))
    assert torch.equal(again.zoo.params.params, gpd_zoo.zoo.params.params)
    assert torch.equal(again.zoo.prompts.temporal, gpd_zoo.zoo.prompts.temporal)
    assert again.zoo.fits["knn_residual"].meta == gpd_zoo.zoo.fits["knn_residual"].meta
    assert torch.equal(again.zoo.fits["reptile"].tensors["init"], gpd_zoo.zoo.fits["reptile"].tensors["init"])
    assert torch.equal(again.fits["pooled_linear"].tensors["coef.0"], gpd_zoo.fits["pooled_linear"].tensors["coef.0"])
    without = GPD.from_pretrained(gpd_zoo.save_pretrained(tmp_path / "nozoo", include_zoo=False))
    assert without.zoo is None and "pooled_linear" in without.fits and not (tmp_path / "nozoo" / "zoo").exists()
    with pytest.raises(GpdiffError, match=r"holds no source zoo.*--with-zoo"):
        without.save_pretrained(tmp_path / "x", include_zoo=True)


def test_the_folders_fits_are_what_a_run_fits_on_the_sources(pretrain_root, gpd_zoo):
    """pooled_linear's ridge and knn_residual's choice in the folder equal the fits on the sources' data with
    the run's settings and seed: what `gpdiff run` computes for these methods."""
    cfg = pretrain_config(pretrain_root)
    model = gpd_zoo.build_model()
    sources = prepare_cities([load_city(pretrain_root / "data" / n) for n in ("beta", "gamma")], cfg.window,
                             cfg.source_split, model)
    side = SourceSide(model, sources, gpd_zoo.zoo.params, gpd_zoo.zoo.prompts, cfg.seed, progress=False)
    ridge = fit_on_sources("pooled_linear", side)
    assert ridge.tensors.keys() == gpd_zoo.fits["pooled_linear"].tensors.keys()
    assert all(torch.equal(v, gpd_zoo.fits["pooled_linear"].tensors[k]) for k, v in ridge.tensors.items())
    knn = fit_on_sources("knn_residual", SourceSide(model, sources, gpd_zoo.zoo.params, gpd_zoo.zoo.prompts, cfg.seed,
                                                    TINY["methods"]["knn_residual"], progress=False))
    assert knn.meta == gpd_zoo.zoo.fits["knn_residual"].meta


def test_an_old_format_folder_loads_and_refuses_the_methods_it_lacks(pretrained, tmp_path):
    old = tmp_path / "v1"
    shutil.copytree(pretrained, old)
    shutil.rmtree(old / "fits")
    doc = read_yaml(old / "gpd.yaml")
    doc.pop("contents")
    write_yaml(old / "gpd.yaml", {**doc, "format_version": 1})
    gpd = GPD.from_pretrained(old)
    assert gpd.fits == {} and gpd.zoo is None
    with pytest.raises(GpdiffError, match=r"'pooled_linear' needs its fit on the sources.*gpdiff pretrain --sources "
                                          r"beta,gamma --out my-gpd"):
        Forecaster.fit(_city(), gpd, method="pooled_linear")
    f = Forecaster.fit(_city(), gpd, method="gpd_zero_shot")  # what version 1 had still works
    assert len(f.predict(horizon=3)) == 4 * 3


def test_a_listed_part_that_is_missing_is_named(pretrained_zoo, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(pretrained_zoo, broken)
    (broken / "zoo" / "fits" / "reptile.safetensors").unlink()
    with pytest.raises(GpdiffError, match=r"incomplete: zoo/fits/reptile.safetensors missing"):
        GPD.from_pretrained(broken)


def test_a_folder_without_the_zoo_refuses_zoo_methods_in_one_line(pretrained, tmp_path):
    write_city_folder(_city(), tmp_path / "delta")
    for method in NEEDS_ZOO:
        r = run_cli("fit", str(tmp_path / "delta"), "--out", str(tmp_path / "F"), "--pretrained", str(pretrained),
                    "--method", method)
        one_line_error(r, f"method '{method}' needs the sources' model zoo",
                       "gpdiff pretrain --sources beta,gamma --with-zoo --out my-gpd")
    assert not (tmp_path / "F").exists()
    one_line_error(run_cli("pretrain", "--zoo", str(pretrained / "anchor.safetensors"), "--prompts",
                           str(pretrained / "anchor.safetensors"), "--out", str(tmp_path / "d"), "--with-zoo"),
                   "--with-zoo goes with --sources")
    one_line_error(run_cli("pretrain", "--zoo", str(pretrained / "anchor.safetensors"), "--prompts",
                           str(pretrained / "anchor.safetensors"), "--out", str(tmp_path / "d"), "--holdout", "0.2"),
                   "--holdout goes with --sources")
    one_line_error(run_cli("pretrain", "--sources", "beta,gamma", "--data-dir", str(pretrained.parent / "data"),
                           "--out", str(tmp_path / "d"), "--holdout", "1"), "--holdout is the share")
    assert not (tmp_path / "d").exists() and not (tmp_path / "d.stages").exists()


# ------------------------------------------------------------------ the methods they enable
def test_every_new_method_fits_predicts_and_reloads_identically_in_a_fresh_process(fitted_new, tmp_path):
    city = _city()
    city.save(tmp_path / "c.city")
    here = {}
    for m, f in fitted_new.items():
        assert (f.params is None) == (m == "pooled_linear")
        df = f.predict(city, horizon=8)
        assert len(df) == 4 * 8 and np.isfinite(df["forecast"]).all() and (df["forecast"] >= 0).all()
        assert f.meta["validation_mae"].keys() == {m, "seasonal_naive", "weekly_naive"}
        f.save(tmp_path / m)
        assert not (tmp_path / m / "pretrained" / "zoo").exists()  # a forecaster keeps its parameters, not the zoo
        here[m] = df
    code = ("import sys; from gpdiff.forecaster import Forecaster; from gpdiff.data.city import City; "
            "c = City.load(sys.argv[1])\n"
            "for m in sys.argv[3:]: Forecaster.load(f'{sys.argv[2]}/{m}').predict(c, horizon=8).to_pickle(f'{sys.argv[2]}/{m}.pkl')")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "c.city"), str(tmp_path), *fitted_new], check=True)
    for m in fitted_new:
        pd.testing.assert_frame_equal(here[m], pd.read_pickle(tmp_path / f"{m}.pkl"))


def test_a_zoo_method_forecaster_is_what_run_method_gives(gpd_zoo, one_thread, tmp_path):
    """Without blend and clipping: the parameters of Forecaster.fit are run_method's on the same data with the
    folder's zoo, prompts and fits, and predict at an origin equals adapt.forecast of them there."""
    city = _city()
    for method in ("knn_residual", "retrieval"):
        f = Forecaster.fit(city, gpd_zoo, method=method, blend={"naive": []}, clip=False, **FAST)
        data = _fit_data(city, f)
        ctx = MethodInputs(model=gpd_zoo.build_model(), sources=[], target=data, zoo=gpd_zoo.zoo.params,
                      source_prompts=gpd_zoo.zoo.prompts, target_prompts=gpd_zoo.prompts(city, data.split.train),
                      finetune=f.config.finetune, seed=0, workdir=tmp_path / method, anchor=gpd_zoo.anchor,
                      progress=False, fits=gpd_zoo.source_fits())
        result = run_method(method, ctx)
        assert torch.equal(result.params, f.params), method
        origins = data.origins("val")
        ref = forecast(ctx.model, result.params, data, "val")
        at = origins[5]
        df = f.predict(city, horizon=f.window.horizon, at=city.timestamps[at - 1])
        got = df.pivot(index="node", columns="step", values="forecast").loc[city.node_ids].to_numpy()
        np.testing.assert_allclose(got, ref[:, 5], rtol=1e-5, atol=1e-4)


def test_pooled_linear_predicts_with_the_methods_own_code(fitted_new):
    city, f = _city(), fitted_new["pooled_linear"]
    assert f.blend_weights is None  # not blended, as in gpdiff run
    data = _fit_data(city, f)
    at = data.origins("val")[3]
    ridge = linear.from_source_fit(f.pretrained.fits["pooled_linear"])
    ref = linear.forecast_windows(ridge, data, np.array([at]))[0][:, 0]
    df = f.predict(city, horizon=f.window.horizon, at=city.timestamps[at - 1])
    got = df.pivot(index="node", columns="step", values="forecast").loc[city.node_ids].to_numpy()
    np.testing.assert_allclose(got, np.maximum(ref, 0), rtol=1e-5, atol=1e-4)


def test_update_fine_tunes_a_zoo_method_from_its_parameters(fitted_new):
    full = _city(days=11)
    f = Forecaster.fit(full.subset_time(0, 9 * 24), fitted_new["mean_params"].pretrained, method="mean_params", **FAST)
    g = f.update(full)
    assert g.version == 2 and not torch.equal(g.params, f.params)
    h = Forecaster.fit(full.subset_time(0, 9 * 24), fitted_new["pooled_linear"].pretrained, method="pooled_linear")
    assert h.update(full).version == 2


# ------------------------------------------------------------------ backtest of them
def test_backtest_runs_pooled_linear_and_a_zoo_method_asked_for(gpd_zoo, pretrained, one_thread):
    city = _city(days=6)
    cfg = BacktestConfig(methods=["pooled_linear", "mean_params"], start_days=2, days=2, finetune=FAST["finetune"])
    r = backtest(city, gpd_zoo, cfg)
    assert set(r.scores["method"]) == {"seasonal_naive", "weekly_naive", "pooled_linear", "mean_params"}
    assert r.scores["mae"].notna().all()
    with pytest.raises(GpdiffError, match=r"'mean_params' needs the sources' model zoo.*--with-zoo"):
        backtest(city, GPD.from_pretrained(pretrained), cfg)


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
    card = (folder / "README.md").read_text()
    assert "| melbourne-ped | 55 | 60 min |" in card and "| **mean ratio to weekly naive** |" in card  # held out
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


def test_a_lag_aware_forecaster_starts_closed_and_opens_only_what_its_days_show(pretrain_root):
    """With a lag-aware pretrained model (window.context lags) every fit starts the target's nodes with the
    network's gates closed (adapt.target_start): zero-shot they stay closed, and fine-tuning on five days
    (no value a week earlier anywhere) opens the day-only pattern's gate and leaves the week's closed."""
    from gpdiff.experiment.pipeline import pretrain_sources
    from gpdiff.models.base import HEAD
    from gpdiff.zoo.params import unflatten

    lagged = RunConfig.from_dict({**TINY, "sources": ["beta", "gamma"], "data_dir": str(pretrain_root / "data"),
                                  "window": {**TINY["window"], "context": "lags"}})
    pretrain_sources(lagged, pretrain_root / "gpd-lags", pretrain_root / "stages-lags", progress=False,
                     log=lambda m: None)
    gpd = GPD.from_pretrained(pretrain_root / "gpd-lags")
    model = gpd.build_model()
    anchor_gates = unflatten(gpd.anchor.reshape(1, -1), model.spec())[HEAD][0, : model.n_patterns, model.gate_column]
    assert bool((anchor_gates != 0).all())  # source training leaves them open
    city = _city(days=5)
    gates = {}
    for method in ("transfer_zero_shot", "transfer"):
        f = Forecaster.fit(city, gpd, method=method, **FAST)
        gates[method] = unflatten(f.params, model.spec())[HEAD][:, : model.n_patterns, model.gate_column]  # [N, 4 patterns, H]
    assert torch.equal(gates["transfer_zero_shot"], torch.zeros_like(gates["transfer_zero_shot"]))
    tuned = gates["transfer"]
    assert torch.equal(tuned[:, 2:], torch.zeros_like(tuned[:, 2:]))  # patterns with the week: never seen
    assert bool((tuned[:, 1] != 0).any())  # the day-only pattern: opened by fine-tuning


def test_gpd_shrunk_all_the_way_to_the_anchor_is_transfer_and_the_setting_is_gpds_alone(gpd, pretrained, tmp_path):
    """``gpd={"shrinkages": [...]}`` starts gpd as ``gpdiff run`` does (methods.gpd.shrinkages): with the only
    candidate 0 every node starts from the anchor, so the fitted parameters are transfer's exactly (same
    fine-tuning, same seed); the model card notes the nodes per s; it survives save/load; another method
    refuses the setting in one line."""
    city = _city()
    shrunk = Forecaster.fit(city, gpd, method="gpd", gpd={"shrinkages": [0.0]}, **FAST)
    transfer = Forecaster.fit(city, gpd, method="transfer", **FAST)
    assert torch.equal(shrunk.params, transfer.params)
    assert any("nodes per s: 0: 4" in n for n in shrunk.notes)
    both = Forecaster.fit(city, gpd, method="gpd", gpd={"shrinkages": [0.0, 1.0]}, **FAST)
    plain = Forecaster.fit(city, gpd, method="gpd", **FAST)
    assert not any("shrunk" in n for n in plain.notes)
    chosen = next(n for n in both.notes if "nodes per s" in n)
    counts = [int(c.split(": ")[1]) for c in chosen.split("nodes per s: ")[1].split(", ")]
    assert sum(counts) == city.n_nodes
    both.save(tmp_path / "f")
    assert Forecaster.load(tmp_path / "f").config.gpd.shrinkages == [0.0, 1.0]
    with pytest.raises(GpdiffError, match="method gpd's and this forecaster's method is 'transfer'"):
        Forecaster.fit(city, gpd, method="transfer", gpd={"shrinkages": [0.5]}, **FAST)
    with pytest.raises(GpdiffError, match="shrinkages must be distinct finite values"):
        Forecaster.fit(city, gpd, gpd={"shrinkages": []}, **FAST)
    write_city_folder(city, tmp_path / "city")
    r = CliRunner().invoke(main, ["fit", str(tmp_path / "city"), "--out", str(tmp_path / "F"), "--pretrained",
                                  str(pretrained), "--set", "finetune.max_epochs=2", "--set", "gpd.shrinkages=[0]"])
    assert r.exit_code == 0 and "nodes per s: 0: 4" in r.output, r.output
    assert Forecaster.load(tmp_path / "F").config.gpd.shrinkages == [0.0]
