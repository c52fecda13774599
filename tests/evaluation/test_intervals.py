"""Split conformal intervals and their scores (gpdiff.evaluation.intervals)."""

import numpy as np
import pytest

from gpdiff.evaluation.intervals import (
    Band,
    RunIntervalConfig,
    around,
    band,
    bounds,
    calibrate,
    check_levels,
    daily_quantiles,
    level_name,
    score,
)
from gpdiff.utils.errors import GpdiffError


def _noisy(seed=0, n=30, b=400, h=3):
    rng = np.random.default_rng(seed)
    scale = rng.uniform(1, 50, n)  # nodes of very different size share one calibration through their scale
    pred = rng.uniform(0, 100, (n, b, h))
    truth = pred + rng.normal(0, 1, (n, b, h)) * scale[:, None, None] * (1 + np.arange(h))  # wider later
    return pred, truth, np.ones_like(pred, bool), scale


def test_conformal_coverage_is_nominal_on_data_with_known_noise():
    pred, truth, mask, scale = _noisy()
    cal = calibrate(pred[:, :200], truth[:, :200], mask[:, :200], scale)
    # the calibrated half-widths are the normal quantiles of the noise, per step
    np.testing.assert_allclose(cal.quantiles[0], 1.2816 * np.arange(1, 4), rtol=0.08)
    np.testing.assert_allclose(cal.quantiles[1], 1.96 * np.arange(1, 4), rtol=0.08)
    s = score(pred[:, 200:], bounds(pred[:, 200:], scale, cal), truth[:, 200:], mask[:, 200:], cal.levels)
    se = np.sqrt(0.2 * 0.8 / (30 * 200))  # binomial sampling error of the 80% coverage
    assert np.all(np.abs(s.coverage[0] - 0.8) < 4 * se) and np.all(np.abs(s.coverage[1] - 0.95) < 0.015)
    assert np.all(np.diff(s.width[0]) > 0)  # later steps are wider


def test_a_point_mass_scores_its_mae_as_crps_and_zero_coverage_width():
    pred, truth, mask, _ = _noisy(1, n=5, b=20)
    point = np.stack([np.stack([pred, pred])] * 2)  # zero-width intervals at both levels
    s = score(pred, point, truth, mask, [0.8, 0.95])
    np.testing.assert_allclose(s.crps, np.abs(truth - pred).mean(axis=(0, 1)), rtol=1e-10)
    assert np.all(s.width == 0)


def test_scores_are_masked_like_mae():
    pred, truth, mask, scale = _noisy(2, n=6, b=50)
    cal = calibrate(pred, truth, mask, scale)
    b = bounds(pred, scale, cal)
    masked = mask.copy()
    masked[:, ::2] = False
    wild, gaps, holes = truth.copy(), pred.copy(), b.copy()
    wild[~masked] = 1e9  # unobserved values must not count
    gaps[:, ::2], holes[..., ::2, :] = np.nan, np.nan  # nor forecasts or bounds there, even missing ones
    a = score(pred[:, 1::2], b[:, :, :, 1::2], truth[:, 1::2], mask[:, 1::2], cal.levels)  # the observed half only
    for c in (score(pred, b, wild, masked, cal.levels), score(gaps, holes, wild, masked, cal.levels)):
        for name in ("coverage", "width", "interval_score", "crps", "node_crps"):
            np.testing.assert_allclose(getattr(a, name), getattr(c, name), rtol=1e-12, err_msg=name)


def test_a_calibration_set_too_short_for_a_level_gives_no_interval_and_says_so():
    pred, truth, mask, scale = _noisy(3, n=1, b=10, h=2)
    cal = calibrate(pred, truth, mask, scale, [0.8, 0.95])
    assert np.isfinite(cal.quantiles[0]).all() and np.isnan(cal.quantiles[1]).all()
    assert cal.notes == ["95% interval: horizon step(s) 1, 2 have 10 observed calibration value(s), a conformal 95% "
                         "interval needs at least 19; no interval there"]
    b = bounds(pred, scale, cal, kind="flow")
    assert np.isnan(b[1]).all() and (b[0, 0] >= 0).all()


def test_flow_lower_bounds_are_never_negative():
    pred, truth, mask, scale = _noisy(4)
    b = bounds(pred * 0.01, scale, calibrate(pred, truth, mask, scale), kind="flow")
    assert (b[:, 0] >= 0).all() and (b[:, 1] > 0).all()


@pytest.mark.parametrize("levels, message", [([0.8, 1.0], "strictly between 0 and 1"), ([0.0], "strictly between"),
                                             ([0.9, 0.9], "name a level twice")])
def test_bad_levels_are_refused(levels, message):
    with pytest.raises(GpdiffError, match=message):
        check_levels(levels)


def test_level_names():
    assert [level_name(v) for v in (0.8, 0.95, 0.975)] == ["80", "95", "97.5"]


SPD, H = 24, 3  # steps per day, horizon of the daily-calibration tests


def _days(n_days, noise_per_day, seed=5, n=40):
    """Test windows at every origin of ``n_days`` days from step 100, unit node scales, the noise of
    day ``d`` (of the *target* step) ``noise_per_day[d]``: scores [N, B, H], mask, origins."""
    rng = np.random.default_rng(seed)
    origins = 100 + np.arange(n_days * SPD - H + 1)
    day_of_target = (origins[:, None] + np.arange(H) - 100) // SPD  # [B, H]
    sd = np.asarray(noise_per_day, dtype=float)[day_of_target]
    scores = np.abs(rng.normal(0, 1, (n, origins.size, H)) * sd)
    return scores, np.ones_like(scores, bool), origins


def test_daily_calibration_starts_from_validation_then_follows_the_day_before():
    scores, mask, origins = _days(4, [1, 1, 5, 5])
    first = calibrate(np.zeros((40, 30, H)), np.full((40, 30, H), 0.5), np.ones((40, 30, H), bool), np.ones(40))
    q, notes = daily_quantiles(first, scores, mask, origins, 100, SPD)
    assert q.shape == (2, origins.size, H) and notes == []
    day = (origins - 100) // SPD
    np.testing.assert_array_equal(q[:, day == 0], np.broadcast_to(first.quantiles[:, None], q[:, day == 0].shape))
    # day 1 is calibrated on day 0's windows whose targets all lie in day 0 (noise 1), day 3 on day 2's (noise 5)
    on_day0 = (origins >= 100) & (origins + H <= 100 + SPD)
    expect1 = calibrate(np.zeros_like(scores[:, on_day0]), scores[:, on_day0], mask[:, on_day0], np.ones(40))
    np.testing.assert_array_equal(q[:, day == 1], np.broadcast_to(expect1.quantiles[:, None], q[:, day == 1].shape))
    np.testing.assert_allclose(q[0, day == 1], 1.2816, rtol=0.15)
    np.testing.assert_allclose(q[0, day == 3], 5 * 1.2816, rtol=0.15)


def test_daily_calibration_never_reads_an_error_not_yet_observed():
    """Poison every score whose target lies at or after a day's first origin: that day's quantiles
    and every earlier day's are unchanged."""
    scores, mask, origins = _days(4, [1, 2, 3, 4])
    first = calibrate(np.zeros((40, 30, H)), np.full((40, 30, H), 0.5), np.ones((40, 30, H), bool), np.ones(40))
    q, _ = daily_quantiles(first, scores, mask, origins, 100, SPD)
    day = (origins - 100) // SPD
    for d in range(4):
        begin = 100 + d * SPD
        poisoned = scores.copy()
        poisoned[(origins[None, :, None] + np.arange(H) >= begin) & np.ones_like(scores, bool)] = 1e9
        q2, _ = daily_quantiles(first, poisoned, mask, origins, 100, SPD)
        np.testing.assert_array_equal(q2[:, day <= d], q[:, day <= d])


def test_daily_calibration_holds_coverage_where_a_single_calibration_does_not():
    """Noise that grows day by day: intervals calibrated once under-cover, recalibrated daily they cover
    within a day's lag of the nominal level."""
    rng = np.random.default_rng(6)
    n, n_days = 60, 8
    scale = np.ones(n)
    origins = 100 + np.arange(n_days * SPD - H + 1)
    sd = 1.2 ** ((origins[:, None] + np.arange(H) - 100) / SPD)  # [B, H]: 20% more noise a day
    pred = rng.uniform(0, 10, (n, origins.size, H))
    truth = pred + rng.normal(0, 1, pred.shape) * sd
    mask = np.ones_like(pred, bool)
    val_pred = rng.uniform(0, 10, (n, SPD, H))
    cal = calibrate(val_pred, val_pred + rng.normal(0, 1, val_pred.shape) / 1.2, np.ones_like(val_pred, bool), scale)
    once = score(pred, bounds(pred, scale, cal), truth, mask, cal.levels)
    q, _ = daily_quantiles(cal, np.abs(truth - pred), mask, origins, 100, SPD)
    daily = score(pred, around(pred, q[:, None]), truth, mask, cal.levels)
    assert once.coverage_avg(0.8) < 0.6  # by day 8 the noise is 3.6 x the validation day's
    assert 0.7 < daily.coverage_avg(0.8) < 0.8 and 0.88 < daily.coverage_avg(0.95) < 0.95  # one day behind a 20% drift


def test_daily_calibration_keeps_the_day_before_where_a_day_has_too_few_values():
    scores, mask, origins = _days(3, [1, 1, 1])
    mask = mask.copy()
    mask[1:, (origins >= 100 + SPD) & (origins < 100 + 2 * SPD)] = False  # day 1: node 0 observed only,
    mask[0, (origins >= 100 + SPD) & (origins < 100 + SPD + 11)] = False  # and at 11 of its 22 windows
    first = calibrate(np.zeros((40, 30, H)), np.full((40, 30, H), 0.5), np.ones((40, 30, H), bool), np.ones(40))
    q, notes = daily_quantiles(first, scores, mask, origins, 100, SPD)
    day = (origins - 100) // SPD
    assert notes and notes[0].startswith("test day(s) 3: ")
    np.testing.assert_array_equal(q[1, day == 2][0], q[1, day == 1][0])  # 95%: kept day 1's
    assert not np.array_equal(q[0, day == 2][0], q[0, day == 1][0])  # 80% (needs 4): recalibrated


def test_the_calibration_schedule_is_checked():
    assert RunIntervalConfig().calibration == "validation"
    assert RunIntervalConfig(calibration="daily").levels == [0.8, 0.95]
    with pytest.raises(GpdiffError, match="intervals.calibration must be one of validation, daily, got 'weekly'"):
        RunIntervalConfig(calibration="weekly")


def test_levels_outside_widths_get_coverage_only_and_the_same_crps():
    pred, truth, mask, scale = _noisy(7, n=8, b=60)
    cal = calibrate(pred, truth, mask, scale, [0.5, 0.8, 0.95])
    b = bounds(pred, scale, cal)
    full = score(pred, b, truth, mask, cal.levels)
    part = score(pred, b, truth, mask, cal.levels, widths=[0.8])
    np.testing.assert_array_equal(part.coverage, full.coverage)
    np.testing.assert_array_equal(part.crps, full.crps)
    np.testing.assert_array_equal(part.node_crps, full.node_crps)
    for name in ("width", "interval_score"):
        np.testing.assert_array_equal(getattr(part, name)[1], getattr(full, name)[1])
        assert np.isnan(getattr(part, name)[[0, 2]]).all()
    assert [r["level"] for r in part.rows("m", [0.8])] == [0.8] * 4


@pytest.mark.parametrize("kind", ["speed", "flow"])
def test_a_band_scores_exactly_as_its_bounds_written_out(kind):
    """score() computes a Band's bounds at the observed values only: bit for bit what the full bounds give,
    with float32 forecasts, missing values, NaN half-widths (no interval) and per-window half-widths."""
    pred, truth, mask, scale = _noisy(8, n=7, b=40)
    pred = (pred - 30).astype(np.float32)  # some negative forecasts: a flow city's lower bounds clip at 0
    mask[:, ::3, 1] = False
    truth[0, 5, 0] = np.nan
    cal = calibrate(pred, truth, mask, scale, [0.5, 0.8, 0.95])
    plain = band(pred, scale, cal, kind)
    np.testing.assert_array_equal(plain.full(), bounds(pred, scale, cal, kind))
    per_window = np.abs(np.random.default_rng(9).normal(size=(3, 7, 40, 3)))
    per_window[1, 2, 4, 2] = np.nan  # one value without an interval: its step scores NaN
    for b in (plain, Band(pred, per_window, kind)):
        lazy, full = score(pred, b, truth, mask, cal.levels, [0.8]), score(pred, b.full(), truth, mask, cal.levels, [0.8])
        for name in ("coverage", "width", "interval_score", "crps", "node_crps"):
            np.testing.assert_array_equal(getattr(lazy, name), getattr(full, name), err_msg=name)
    assert np.isnan(score(pred, Band(pred, per_window, kind), truth, mask, cal.levels).crps[2])
