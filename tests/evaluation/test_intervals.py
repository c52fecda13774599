"""Split conformal intervals and their scores (gpdiff.evaluation.intervals)."""

import numpy as np
import pytest

from gpdiff.evaluation.intervals import bounds, calibrate, check_levels, level_name, score
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
