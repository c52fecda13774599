"""The forecaster's methods that a pretrained folder's optional parts enable (issue 25): the zoo methods
(knn_residual, mean_params, retrieval, reptile; ``gpdiff pretrain --with-zoo``) and pooled_linear (its ridge,
in every pretrained folder). Each fits, predicts, and reloads identically in a fresh process; a zoo method's
forecaster is what :func:`gpdiff.methods.run_method` gives; folders without a part refuse in one line."""

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from gpdiff.data.catalog import load_city
from gpdiff.data.city import City
from gpdiff.data.formats.city_folder import write_city_folder
from gpdiff.data.splits import fit_split
from gpdiff.data.synthetic import synthetic_city
from gpdiff.data.windows import CityData
from gpdiff.forecaster import GPD, Forecaster
from gpdiff.forecaster.backtest import BacktestConfig, backtest
from gpdiff.methods import NEEDS_ZOO, Context, SourceSide, fit_on_sources, run_method
from gpdiff.methods import pooled_linear as linear
from gpdiff.methods.adapt import forecast
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import read_yaml, write_yaml
from gpdiff.zoo.sourcepool import prepare_cities
from tests.conftest import TINY, one_line_error, run_cli
from tests.forecaster.conftest import pretrain_config

FAST = {"finetune": {"max_epochs": 2, "steps_per_epoch": 2, "batch_size": 8}}
NEW = (*NEEDS_ZOO, "pooled_linear")


def _city(days: int = 9) -> City:
    return synthetic_city("delta", n_nodes=4, days=days, seed=7)


@pytest.fixture(scope="module")
def gpd_zoo(pretrained_zoo) -> GPD:
    return GPD.from_pretrained(pretrained_zoo)


@pytest.fixture(scope="module")
def fitted(gpd_zoo, one_thread) -> dict[str, Forecaster]:
    return {m: Forecaster.fit(_city(), gpd_zoo, method=m, **FAST) for m in NEW}


def _fit_data(city: City, f: Forecaster) -> CityData:
    """The city as Forecaster.fit splits and scales it."""
    w = f.window
    split = fit_split(city.n_steps, city.steps_per_day, f.config.val_days, w.length)
    return CityData(city, split, w.history, w.horizon, w.n_neighbors, min_rel_std=f.config.scale_floor,
                    context=w.context)


# ------------------------------------------------------------------ the folder
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
    sources = prepare_cities([load_city(pretrain_root / "data" / n) for n in ("beta", "gamma")], cfg.window, cfg.zoo,
                             model)
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


# ------------------------------------------------------------------ fit / predict / reload
def test_every_new_method_fits_predicts_and_reloads_identically_in_a_fresh_process(fitted, tmp_path):
    city = _city()
    city.save(tmp_path / "c.city")
    here = {}
    for m, f in fitted.items():
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
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "c.city"), str(tmp_path), *fitted], check=True)
    for m in fitted:
        pd.testing.assert_frame_equal(here[m], pd.read_pickle(tmp_path / f"{m}.pkl"))


def test_a_zoo_method_forecaster_is_what_run_method_gives(gpd_zoo, one_thread, tmp_path):
    """Without blend and clipping: the parameters of Forecaster.fit are run_method's on the same data with the
    folder's zoo, prompts and fits, and predict at an origin equals adapt.forecast of them there."""
    city = _city()
    for method in ("knn_residual", "retrieval"):
        f = Forecaster.fit(city, gpd_zoo, method=method, blend={"naive": []}, clip=False, **FAST)
        data = _fit_data(city, f)
        ctx = Context(model=gpd_zoo.build_model(), sources=[], target=data, zoo=gpd_zoo.zoo.params,
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


def test_pooled_linear_predicts_with_the_methods_own_code(fitted):
    city, f = _city(), fitted["pooled_linear"]
    assert f.blend_weights is None  # not blended, as in gpdiff run
    data = _fit_data(city, f)
    at = data.origins("val")[3]
    ridge = linear.from_source_fit(f.pretrained.fits["pooled_linear"])
    ref = linear.predict(ridge, data, np.array([at]))[0][:, 0]
    df = f.predict(city, horizon=f.window.horizon, at=city.timestamps[at - 1])
    got = df.pivot(index="node", columns="step", values="forecast").loc[city.node_ids].to_numpy()
    np.testing.assert_allclose(got, np.maximum(ref, 0), rtol=1e-5, atol=1e-4)


def test_update_fine_tunes_a_zoo_method_from_its_parameters(fitted):
    full = _city(days=11)
    f = Forecaster.fit(full.subset_time(0, 9 * 24), fitted["mean_params"].pretrained, method="mean_params", **FAST)
    g = f.update(full)
    assert g.version == 2 and not torch.equal(g.params, f.params)
    h = Forecaster.fit(full.subset_time(0, 9 * 24), fitted["pooled_linear"].pretrained, method="pooled_linear")
    assert h.update(full).version == 2


# ------------------------------------------------------------------ backtest
def test_backtest_runs_pooled_linear_and_a_zoo_method_asked_for(gpd_zoo, pretrained, one_thread):
    city = _city(days=6)
    cfg = BacktestConfig(methods=["pooled_linear", "mean_params"], start_days=2, days=2, finetune=FAST["finetune"])
    r = backtest(city, gpd_zoo, cfg)
    assert set(r.scores["method"]) == {"seasonal_naive", "weekly_naive", "pooled_linear", "mean_params"}
    assert r.scores["mae"].notna().all()
    with pytest.raises(GpdiffError, match=r"'mean_params' needs the sources' model zoo.*--with-zoo"):
        backtest(city, GPD.from_pretrained(pretrained), cfg)
