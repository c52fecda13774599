"""`gpdiff backtest`: the replay never reads a day before forecasting it, its outputs, its bad inputs,
determinism, and the optional statsforecast baseline (tiny synthetic hourly cities, the shipped GPD)."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from gpdiff.cli import main
from gpdiff.data.synthetic import synthetic_city
from gpdiff.forecaster import GPD, Forecaster, backtest_report, ets
from gpdiff.forecaster.backtest import BacktestConfig, backtest, beats_naive_from, columns
from gpdiff.utils.errors import GpdiffError

FAST = {"max_epochs": 2, "steps_per_epoch": 2, "batch_size": 8}
SPD = 24  # synthetic cities are hourly
POISON_AT = 3 * SPD + 10  # hour 10 of the second forecast day (start_days 2)


def _city(days: int = 6):
    return synthetic_city("delta", n_nodes=4, days=days, seed=7)


def _poisoned(city, at: int):
    """``city`` with every value from step ``at`` on changed."""
    values = city.values.copy()
    values[at:] = values[at:] * 3.0 + 50.0
    return dataclasses.replace(city, values=values)


@pytest.fixture(scope="module")
def gpd() -> GPD:
    return GPD.from_pretrained()


@pytest.fixture(scope="module")
def gpd_config() -> BacktestConfig:
    return BacktestConfig(methods=["gpd"], start_days=2, days=3, finetune=FAST)


@pytest.fixture(scope="module")
def clean(gpd, gpd_config, one_thread):
    return backtest(_city(), gpd, gpd_config)


# ------------------------------------------------------------------ the protocol
def test_backtest_never_reads_a_day_before_forecasting_it(gpd, gpd_config, clean):
    """Every value from hour 10 of forecast day 2 on is changed: every forecast of day 1, and every
    day-2 window whose origin is at or before that hour, is bit-identical; day 3 is not."""
    dirty = backtest(_poisoned(_city(), POISON_AT), gpd, gpd_config)
    origins = np.arange(3 * SPD, 4 * SPD)  # day 2's windows: one per step, the evening ones run past midnight
    early = origins <= POISON_AT
    for method in ("gpd", "seasonal_naive", "weekly_naive"):
        assert np.array_equal(clean.forecasts[(0, 1, method)], dirty.forecasts[(0, 1, method)]), method
        a, b = clean.forecasts[(0, 2, method)], dirty.forecasts[(0, 2, method)]
        assert np.array_equal(a[:, early], b[:, early]), method
        if method == "gpd":  # its inputs are the last hours: the poison reaches the later windows of the day
            assert not np.array_equal(a[:, ~early], b[:, ~early])
        assert not np.array_equal(clean.forecasts[(0, 3, method)], dirty.forecasts[(0, 3, method)]), method
    def day1(r):
        return r.scores[r.scores["day"] == 1].drop(columns="seconds").reset_index(drop=True)

    pd.testing.assert_frame_equal(day1(clean), day1(dirty))


def test_backtest_is_deterministic(gpd, gpd_config, clean):
    again = backtest(_city(), gpd, gpd_config)
    pd.testing.assert_frame_equal(clean.scores.drop(columns="seconds"), again.scores.drop(columns="seconds"))
    assert clean.forecasts.keys() == again.forecasts.keys()
    assert all(np.array_equal(clean.forecasts[k], again.forecasts[k]) for k in clean.forecasts)


def _same(a, b) -> None:
    pd.testing.assert_frame_equal(a.scores.drop(columns="seconds"), b.scores.drop(columns="seconds"))
    assert a.forecasts.keys() == b.forecasts.keys()
    assert all(np.array_equal(a.forecasts[k], b.forecasts[k]) for k in a.forecasts)


def _counting(monkeypatch) -> list[str]:
    """The methods whose runs are computed (not read back) from now on."""
    import gpdiff.forecaster.backtest as bt

    computed: list[str] = []
    replay = bt._replay

    def spy(city, first, method, *args, **kwargs):
        computed.append(method)
        return replay(city, first, method, *args, **kwargs)

    monkeypatch.setattr(bt, "_replay", spy)
    return computed


def test_an_interrupted_backtest_resumes_where_it_stopped(gpd, gpd_config, clean, tmp_path, monkeypatch):
    """Every finished run is on disk at once; a rerun reads them back and computes only the rest, and
    the result is the uninterrupted one (scores and forecasts, bit for bit)."""
    folder = tmp_path / "partial"
    first = backtest(_city(), gpd, gpd_config, checkpoint=folder)
    _same(clean, first)
    assert sorted(p.name for p in folder.iterdir()) == ["0-gpd.safetensors", "0-seasonal_naive.safetensors",
                                                       "0-weekly_naive.safetensors"]
    (folder / "0-gpd.safetensors").unlink()  # interrupted while gpd ran
    computed = _counting(monkeypatch)
    log: list[str] = []
    again = backtest(_city(), gpd, gpd_config, checkpoint=folder, log=log.append)
    assert computed == ["gpd"]
    assert sum("read back" in m for m in log) == 2
    _same(clean, again)


def test_a_corrupt_or_foreign_run_file_is_computed_again_with_a_note(gpd_config, tmp_path, monkeypatch):
    config = dataclasses.replace(gpd_config, methods=["historical_average"])
    folder = tmp_path / "partial"
    clean = backtest(_city(), None, config, checkpoint=folder)
    (folder / "0-seasonal_naive.safetensors").write_bytes(b"half a file")
    other = dataclasses.replace(config, seed=1)  # another backtest's files in the same folder
    backtest(_city(), None, dataclasses.replace(other, methods=["weekly_naive"]),
             checkpoint=tmp_path / "other")
    (tmp_path / "other" / "0-weekly_naive.safetensors").replace(folder / "0-weekly_naive.safetensors")
    computed = _counting(monkeypatch)
    log: list[str] = []
    again = backtest(_city(), None, config, checkpoint=folder, log=log.append)
    assert sorted(computed) == ["seasonal_naive", "weekly_naive"]
    assert any("0-seasonal_naive.safetensors" in m and "cannot be read" in m for m in log)
    assert any("0-weekly_naive.safetensors" in m and "other settings" in m for m in log)
    _same(clean, again)
    computed.clear()
    _same(clean, backtest(_city(), None, config, checkpoint=folder))  # both rewritten: nothing computed now
    assert computed == []


def test_backtest_scores_the_forecaster_that_update_makes(gpd, gpd_config, clean):
    """Day 2 is forecast by the forecaster fitted on days 0-1 and updated with day 2 (as a user's would be)."""
    city = _city()
    f = Forecaster.fit(city.subset_time(0, 2 * SPD), gpd, gpd_config.forecaster("gpd"))
    f = f.update(city.subset_time(0, 3 * SPD))
    df = f.predict(city.subset_time(0, 4 * SPD), horizon=6, at=city.timestamps[3 * SPD - 1])
    assert np.allclose(df["forecast"].to_numpy().reshape(4, 6), clean.forecasts[(0, 2, "gpd")][:, 0], atol=1e-5)


# ------------------------------------------------------------------ outputs
def test_outputs_have_one_row_per_start_day_day_and_method(tmp_path):
    city = _city(days=7)
    cfg = BacktestConfig(methods=["historical_average"], start_days=2, days=2, start_day=[0, 3])
    r = backtest(city, None, cfg)
    assert list(r.scores.columns) == columns([0.8, 0.95])
    assert len(r.scores) == 2 * 2 * 3  # start days x days x (two naive references + the method)
    assert set(r.scores["weekday"]) == {city.timestamps[0].day_name(), city.timestamps[3 * SPD].day_name()}
    assert r.scores.groupby("start_day")["days_of_data"].apply(list).tolist() == [[2, 2, 2, 3, 3, 3]] * 2
    # one window per step of the day; the last day of the data has no next day for its evening windows
    last = (r.scores["start_day"] == 3) & (r.scores["day"] == 2)
    assert r.scores.loc[~last, "windows"].eq(SPD).all() and r.scores.loc[last, "windows"].eq(SPD - 6 + 1).all()
    assert all(v.shape == (4, SPD - 6 + 1 if (d0, k) == (3, 2) else SPD, 6) for (d0, k, _), v in r.forecasts.items())
    assert r.scores[["mae", "crps", "coverage_80", "coverage_95"]].notna().all().all()
    assert any("knn_residual" in n for n in r.notes)
    paths = backtest_report.write(r, tmp_path, city.name)
    again = pd.read_csv(paths["csv"])
    assert list(again.columns) == columns([0.8, 0.95]) and len(again) == len(r.scores)
    md = paths["md"].read_text()
    assert "## MAE" in md and "## Coverage of the 80% interval" in md and "| historical_average |" in md
    assert paths["png"].stat().st_size > 10_000


def test_beats_naive_from_is_the_first_day_of_an_unbroken_run_of_wins():
    rows = []
    for d, (s, w, a, b) in enumerate([(3, 3, 4, 2), (3, 3, 2, 4), (3, 3, 2, 2), (3, 3, 2, 4)], start=2):
        rows += [{"start_day": 0, "days_of_data": d, "method": m, "mae": v}
                 for m, v in (("seasonal_naive", s), ("weekly_naive", w), ("a", a), ("b", b))]
    out = beats_naive_from(pd.DataFrame(rows)).set_index("method")["beats_both_from"]
    assert out["a"] == 3 and np.isnan(out["b"])  # b won on day 2 and 4, lost on the last


# ------------------------------------------------------------------ bad input
@pytest.mark.parametrize("settings, message", [
    ({"start_days": 1}, r"--start-days 1: the last 1 day\(s\) validate, leaving 0 steps to train.*use --start-days 2"),
    ({"days": 5}, r"has 6 whole day\(s\) of data; --start-day 0 \+ --start-days 2 \+ --days 5 need 7; use --days 4"),
    ({"days": 2, "start_day": [3]}, r"need 7; use --days 1 or fewer"),
])
def test_bad_days_fail_in_one_line_before_any_fitting(settings, message, monkeypatch):
    monkeypatch.setattr(Forecaster, "fit", lambda *a, **k: pytest.fail("fitted before checking the input"))
    with pytest.raises(GpdiffError, match=message):
        backtest(_city(), None, BacktestConfig(methods=["historical_average"], **settings))


def test_bad_methods_fail_naming_the_known_ones():
    with pytest.raises(GpdiffError, match=r"unknown backtest method 'gdp'. Did you mean 'gpd'"):
        BacktestConfig(methods=["gdp"])
    with pytest.raises(GpdiffError, match=r"'knn_residual' needs the sources' model zoo.*--with-zoo"):
        backtest(_city(), GPD.from_pretrained(), BacktestConfig(methods="knn_residual", days=2))  # the shipped: no zoo


def test_a_source_city_of_the_pretrained_model_is_refused_before_fitting(gpd, monkeypatch):
    monkeypatch.setattr(Forecaster, "fit", lambda *a, **k: pytest.fail("fitted a source city"))
    city = synthetic_city("la-loop", n_nodes=4, days=6, seed=7)
    with pytest.raises(GpdiffError, match="is one of this pretrained GPD's sources"):
        backtest(city, gpd, BacktestConfig(methods=["gpd"], days=2))


def test_cli_writes_the_outputs(tmp_path):
    path = _city().save(tmp_path / "delta.city")
    runner = CliRunner()
    res = runner.invoke(main, ["backtest", str(path), "--methods", "historical_average", "--days", "2",
                               "--out", str(tmp_path / "bt"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert "From which day each method beats both" in res.output
    assert {p.name for p in (tmp_path / "bt").iterdir()} == {"backtest.csv", "backtest.md", "backtest.png"}


@pytest.mark.parametrize("args, text", [
    pytest.param(["--days", "9"], "whole day(s) of data", id="more-days-than-data"),
    pytest.param(["--methods", "nope"], "unknown backtest method", id="unknown-method"),
    pytest.param(["--start-days", "1"], "leaving 0 steps to train", id="nothing-to-train-on"),
])
def test_cli_reports_bad_input_in_one_line(tmp_path, args, text):
    path = _city().save(tmp_path / "delta.city")
    methods = [] if "--methods" in args else ["--methods", "historical_average"]
    res = CliRunner().invoke(main, ["backtest", str(path), *methods, "--out", str(tmp_path / "bad"), *args])
    assert res.exit_code == 2 and text in res.output and len(res.output.strip().splitlines()) == 1, res.output
    assert not (tmp_path / "bad").exists()


# ------------------------------------------------------------------ statsforecast
def test_without_statsforecast_auto_ets_is_left_out_with_a_note(monkeypatch):
    monkeypatch.setattr(ets, "available", lambda: False)
    r = backtest(_city(), None, BacktestConfig(methods=["auto_ets"], days=1))
    assert "auto_ets" not in set(r.scores["method"])
    assert any("statsforecast is not installed" in n and "gpdiff[baselines]" in n for n in r.notes)


def test_auto_ets_is_left_out_for_a_daily_season_longer_than_ets_takes(monkeypatch):
    """Hourly data (a season of 24) keeps auto_ets; 30-minute data (48) leaves it out with a note that
    says why (with or without statsforecast installed), and the other methods still run."""
    monkeypatch.setattr(ets, "available", lambda: True)
    assert ets.supports(_city()) is None
    city = synthetic_city("fine", n_nodes=3, days=5, interval_minutes=30, seed=1)
    r = backtest(city, None, BacktestConfig(methods=["auto_ets", "historical_average"], days=1))
    assert set(r.scores["method"]) == {"seasonal_naive", "weekly_naive", "historical_average"}
    assert any(n.startswith("left out: auto_ets (its daily season is 48 steps (30-minute data)") for n in r.notes), r.notes


def test_auto_ets_forecasts_from_the_true_history_without_reading_ahead():
    pytest.importorskip("statsforecast")
    city = _city(days=4)
    origins = np.arange(3 * SPD, 4 * SPD - 6 + 1)
    point, bnds = ets.forecast_windows(city, 3 * SPD, origins, 6, [0.8, 0.95])
    assert point.shape == (4, origins.size, 6) and bnds.shape == (2, 2, 4, origins.size, 6)
    assert np.isfinite(point).all() and np.isfinite(bnds).all()
    assert (bnds[1, 0] <= bnds[0, 0] + 1e-9).all() and (bnds[0, 0] <= point + 1e-9).all()
    at = 3 * SPD + 9
    p2, _ = ets.forecast_windows(_poisoned(city, at), 3 * SPD, origins, 6, [0.8, 0.95])
    early = origins <= at
    assert np.array_equal(point[:, early], p2[:, early]) and not np.array_equal(point[:, ~early], p2[:, ~early])


def test_a_node_without_data_in_the_first_days_is_left_out_with_a_note():
    city = _city()
    mask = city.mask.copy()
    mask[: 2 * SPD + 5, 1] = False  # sensor 1 starts reporting on the third day
    r = backtest(dataclasses.replace(city, mask=mask), None,
                 BacktestConfig(methods=["historical_average"], days=2))
    assert all(v.shape[0] == 3 for v in r.forecasts.values())
    assert any(f"1 node(s) have no observed value in the first days and are left out (installed later?): "
               f"{city.node_ids[1]}" in n for n in r.notes)
