"""pooled_linear: the ridge on seasonal lag differences recovers a known linear combination, never
reads a lag the protocol forbids or the data lack, and runs through `gpdiff run` without a zoo."""

import numpy as np
import pandas as pd
import pytest

from gpdiff.data.city import City
from gpdiff.data.formats.city_folder import write_city_folder
from gpdiff.data.splits import source_split, target_split
from gpdiff.data.synthetic import synthetic_city
from gpdiff.data.windows import CityData
from gpdiff.experiment.pipeline import run_pipeline
from gpdiff.experiment.runconfig import RunConfig
from gpdiff.methods import check_settings
from gpdiff.methods.pooled_linear import (
    FULL,
    LagModel,
    PooledLinearConfig,
    design,
    fit,
    forecast_windows,
    lag_model,
    lag_windows,
)
from gpdiff.utils.errors import GpdiffError

DAY, WEEK = 24, 168
# x[t] = x[t-W] + A (x[t-1] - x[t-1-W]) + B (x[t-D] - x[t-W]) + C (x[t-1] - x[t-1-D]) + e[t]: with history
# 12 and horizon 1, the full model's inputs at step 0 are [history - week (12), day - week (1),
# history - day (12), 1], so its true coefficients are A at 11, B at 12, C at 24, 0 elsewhere.
A, B, C = 0.5, 0.3, -0.2


def lag_city(name: str, seed: int, days: int = 40, n_nodes: int = 4, noise: float = 0.0) -> City:
    """An hourly city whose every step is the linear combination of lags above plus innovations
    ``e ~ N(0, noise^2)``, started from a random first week per node, with node-specific level and scale."""
    rng = np.random.default_rng(seed)
    x = np.zeros((days * DAY, n_nodes))
    x[:WEEK + 1] = rng.normal(size=(WEEK + 1, n_nodes))
    e = noise * rng.normal(size=x.shape)
    for t in range(WEEK + 1, len(x)):
        x[t] = x[t - WEEK] + A * (x[t - 1] - x[t - 1 - WEEK]) + B * (x[t - DAY] - x[t - WEEK]) \
            + C * (x[t - 1] - x[t - 1 - DAY]) + e[t]
    x = 100 + rng.uniform(1, 20, n_nodes) * x
    base = synthetic_city(name, n_nodes=n_nodes, days=days, seed=seed)
    return City(name=name, values=x[:, :, None].astype(np.float64), mask=np.ones(x.shape, bool), start=base.start,
                interval_minutes=60, adjacency=base.adjacency, kind="speed", units="", node_ids=base.node_ids,
                channels=["target"], coords=base.coords, coord_kind="xy")


def source_data(city: City, horizon: int = 1) -> CityData:
    return CityData(city, source_split(city.n_steps), history=12, horizon=horizon, n_neighbors=2)


def target_data(city: City, horizon: int = 1) -> CityData:
    split = target_split(city.n_steps, DAY, days=3, val_days=1, test_fraction=0.2, window=12 + horizon)
    return CityData(city, split, history=12, horizon=horizon, n_neighbors=2, min_rel_std=0.05)


@pytest.fixture(scope="module")
def lag_sources() -> list[CityData]:
    return [source_data(lag_city("s1", 1)), source_data(lag_city("s2", 2, n_nodes=3))]


def test_recovers_the_coefficients_of_a_known_linear_combination_of_lags():
    """With innovations the inputs are not collinear and the ridge finds A, B, C (up to the sampling
    error of about 8,000 windows a city); a wrong or shifted input group would be off by 0.2 or more."""
    sources = [source_data(lag_city("s1", 1, n_nodes=12, noise=1.0)), source_data(lag_city("s2", 2, n_nodes=12,
                                                                                              noise=1.0))]
    model = fit(sources, PooledLinearConfig(alpha=0.0))
    expected = np.zeros(26)
    expected[[11, 12, 24]] = A, B, C
    np.testing.assert_allclose(model.coef[FULL][0], expected, atol=0.05)


def test_forecasts_a_noise_free_city_of_the_same_lags_exactly_zero_shot(lag_sources):
    """Without innovations the lag inputs are collinear (every history step obeys the same rule), so
    the coefficients are not unique, but every solution forecasts a new city of that rule exactly."""
    model = fit(lag_sources, PooledLinearConfig(alpha=0.0))
    target = target_data(lag_city("t", 9))
    origins = target.origins("test")
    pred, share = forecast_windows(model, target, origins)
    truth, _ = target.truth(origins)
    assert share == {str(FULL): 1.0}
    np.testing.assert_allclose(pred, truth, rtol=0, atol=1e-5 * np.abs(truth).max())


def test_the_recipe_has_its_three_input_groups_and_the_weekly_base():
    city = synthetic_city("w", n_nodes=3, days=12, seed=4)
    data = source_data(city, horizon=6)
    w = lag_windows(data, np.array([0, 2]), np.array([200, 250]))
    x, base = design(w, FULL)
    assert x.shape == (2, 12 + 6 + 12 + 1) and base.shape == (2, 6)
    np.testing.assert_array_equal(base, w.week[:, 12:])
    np.testing.assert_array_equal(x[:, :12], w.hist - w.week[:, :12])
    np.testing.assert_array_equal(x[:, 12:18], w.day[:, 12:] - w.week[:, 12:])
    np.testing.assert_array_equal(x[:, 18:30], w.hist - w.day[:, :12])
    scaled = data.values[:, :, 0].numpy()
    np.testing.assert_array_equal(w.week[1], scaled[250 - 12 - WEEK:250 + 6 - WEEK, 2])


def test_nothing_before_the_few_shot_days_is_read_at_training_and_validation_origins(lag_sources):
    """Poison every target value before the few-shot days: the training and validation windows and
    forecasts are unchanged, the test forecasts (which may read the past) are not."""
    model = fit(lag_sources, PooledLinearConfig())
    clean = lag_city("t", 9)
    poisoned = lag_city("t", 9)
    first = target_data(clean).split.train.start
    poisoned.values[:first] = 1e6
    a, b = target_data(clean), target_data(poisoned)
    for name in ("train", "val"):
        o = a.origins(name)
        nodes = np.repeat(np.arange(a.n_nodes), o.size)
        wa, wb = lag_windows(a, nodes, np.tile(o, a.n_nodes)), lag_windows(b, nodes, np.tile(o, b.n_nodes))
        for f in ("hist", "day", "week", "y", "has"):
            np.testing.assert_array_equal(getattr(wa, f), getattr(wb, f))
        assert not wa.has[:, 3:].any()  # no week before any of them within the few-shot days
        pa, share = forecast_windows(model, a, o)
        np.testing.assert_array_equal(pa, forecast_windows(model, b, o)[0])
        assert str(FULL) not in share
    o = a.origins("test")
    assert not np.allclose(forecast_windows(model, a, o)[0], forecast_windows(model, b, o)[0])


def test_a_missing_lag_falls_back_to_the_model_without_it_and_is_never_read(lag_sources):
    """Values a week earlier unobserved for some test windows: those windows use the model without
    them; whatever the unobserved slots hold does not change any forecast."""
    fitted = fit(lag_sources, PooledLinearConfig())
    city = lag_city("t", 9)
    data = target_data(city)
    o = data.origins("test")
    hole = slice(o[0] - WEEK - 12, o[0] - WEEK)  # the week-earlier history steps of the first test window
    city.mask[hole, 1] = False
    pred, share = forecast_windows(fitted, data, o)
    partial = LagModel("weekly", ("daily-weekly", "history-daily"))
    assert 0 < share[str(partial)] < 1 and share[str(partial)] + share[str(FULL)] == 1
    other = lag_city("t", 9)
    other.mask[hole, 1] = False
    other.values[hole, 1] = -1e6
    np.testing.assert_array_equal(pred, forecast_windows(fitted, target_data(other), o)[0])
    w = lag_windows(data, np.array([1]), o[:1])
    assert lag_model(tuple(w.has[0])) == partial
    x, base = design(w, partial)
    assert x.shape == (1, 1 + 12 + 1)
    np.testing.assert_allclose(pred[1, 0], data.to_original(base + x @ fitted.coef[partial].T, np.array([1]))[0],
                               rtol=1e-6)


@pytest.mark.parametrize("has,model", [
    ((True, True, True, True, True), FULL),
    ((True, True, True, False, False), LagModel("daily", ("history-daily",))),  # a target's validation day
    ((False, True, True, True, True), LagModel("weekly", ("daily-weekly",))),  # history in a night closure
    ((True, False, False, False, False), LagModel("last")),
    ((False, True, False, True, False), None),
])
def test_each_window_gets_the_model_of_exactly_the_parts_it_has(has, model):
    assert lag_model(has) == model


def test_sources_shorter_than_a_week_fit_the_models_they_can_and_the_target_uses_those():
    """No source window has a week before it: the weekly models are left out, and a target test
    window that has the week-old values is forecast by the daily model instead (never read them)."""
    sources = [source_data(lag_city("s1", 1, days=9)), source_data(lag_city("s2", 2, days=9))]
    fitted = fit(sources, PooledLinearConfig())
    assert all(m.base != "weekly" for m in fitted.coef) and LagModel("daily", ("history-daily",)) in fitted.coef
    target = target_data(lag_city("t", 9))
    pred, share = forecast_windows(fitted, target, target.origins("test"))
    assert share == {"daily base + history-daily": 1.0} and np.isfinite(pred).all()


def test_shapes_and_determinism():
    sources = [source_data(synthetic_city("p", n_nodes=5, days=16, seed=1), horizon=3),
               source_data(synthetic_city("q", n_nodes=4, days=14, seed=2), horizon=3)]
    cfg = PooledLinearConfig(windows_per_city=300)
    m1, m2, m3 = fit(sources, cfg, seed=0), fit(sources, cfg, seed=0), fit(sources, cfg, seed=1)
    for pattern, coef in m1.coef.items():
        np.testing.assert_array_equal(coef, m2.coef[pattern])
    assert not np.array_equal(m1.coef[FULL], m3.coef[FULL])  # another draw
    assert m1.coef[FULL].shape == (3, 12 + 3 + 12 + 1)
    assert m1.coef[LagModel("last")].shape == (3, 11 + 1)
    target = target_data(synthetic_city("t", n_nodes=6, days=20, seed=3), horizon=3)
    o = target.origins("test")
    pred, _ = forecast_windows(m1, target, o)
    assert pred.shape == (6, o.size, 3) and pred.dtype == np.float32 and np.isfinite(pred).all()


@pytest.mark.parametrize("options,field", [({"alpha": -1.0}, "alpha"), ({"alpha": "big"}, "alpha"),
                                           ({"windows_per_city": 0}, "windows_per_city"),
                                           ({"blend": "maybe"}, "blend"), ({"alpha": float("nan")}, "alpha"),
                                           ({"lambda": 1.0}, "lambda")])
def test_a_bad_setting_is_one_clear_line(options, field):
    with pytest.raises(GpdiffError) as err:
        check_settings("pooled_linear", options)
    message = str(err.value)
    assert "\n" not in message and f"pooled_linear.{field}" in message


def test_a_horizon_longer_than_a_day_is_a_clear_error():
    city = synthetic_city("h", n_nodes=3, days=12, interval_minutes=240, seed=0)  # 6 steps a day
    with pytest.raises(GpdiffError, match="horizon must be at most a day"):
        fit([CityData(city, source_split(city.n_steps), history=4, horizon=8, n_neighbors=2)])


@pytest.mark.parametrize("blend", [False, True])
def test_a_run_of_naive_methods_and_pooled_linear_trains_nothing_on_the_sources(tmp_path, blend):
    """No anchor, zoo, prompts or denoiser; pooled_linear gets intervals like every method, is
    blended only when its ``blend`` setting asks, and the report shows it."""
    for name, seed, n in (("alpha", 1, 6), ("beta", 2, 8), ("gamma", 3, 5)):
        write_city_folder(synthetic_city(name, n_nodes=n, days=12, seed=seed), tmp_path / "data" / name)
    cfg = RunConfig.from_dict({
        "target": "alpha", "data_dir": str(tmp_path / "data"), "out": str(tmp_path / "run"), "target_days": 3,
        "device": "cpu", "window": {"history": 12, "horizon": 3, "n_neighbors": 3},
        "methods": {"weekly_naive": {}, "seasonal_naive": {},
                    "pooled_linear": {"windows_per_city": 500, "blend": blend}}})
    res = run_pipeline(cfg, progress=False, log=lambda m: None)
    # fits/pooled_linear: the ridge on the sources, the method's stage and the run's pretrained folder read it
    assert res.computed == ["fits/pooled_linear", "methods/weekly_naive", "methods/seasonal_naive",
                            "methods/pooled_linear"] + (["blend/pooled_linear"] if blend else [])
    df = pd.read_csv(res.out / "results.csv")
    assert "pooled_linear" in set(df["method"])
    report = (res.out / "report.md").read_text()
    assert "| pooled_linear |" in report and "val_windows_by_lag_model: daily base + history-daily 100.0%" in report
    assert ("mae_without_blend" in report) == blend
    assert len(pd.read_csv(res.out / "intervals.csv").query("method == 'pooled_linear'")) > 0
    if not blend:  # its stage reads the sources without a zoo stage: another source split recomputes it
        assert run_pipeline(cfg, progress=False, log=lambda m: None).reused == res.computed
        again = run_pipeline(RunConfig.from_dict({**cfg.to_dict(), "source_split": {"train": 0.6, "val": 0.2, "test": 0.2}}),
                             progress=False, log=lambda m: None)
        assert {"fits/pooled_linear", "methods/pooled_linear"} <= set(again.computed)
