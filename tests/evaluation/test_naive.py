"""The naive forecasts: seasonal (a day earlier), weekly (a week earlier) and the historical average of the
few-shot days, with their fallbacks."""

import numpy as np
import pytest

from gpdiff.data import CityData, source_split, target_split
from gpdiff.data.synthetic import synthetic_city
from gpdiff.evaluation.naive import historical_average, seasonal_naive, weekly_naive
from gpdiff.utils.errors import GpdiffError


def _data(c):
    return CityData(c, target_split(c.n_steps, 24, days=3), history=6, horizon=3, n_neighbors=1)


def test_seasonal_naive_is_the_value_a_day_earlier(month_city):
    c, d = month_city, _data(month_city)
    o = d.origins("test")[:5]
    p = seasonal_naive(d, o)
    assert p.shape == (4, 5, 3)
    np.testing.assert_allclose(p[1, 2, 1], c.values[o[2] + 1 - 24, 1, 0])
    # every node, window and horizon step: the observed value one day (24 steps) earlier
    np.testing.assert_allclose(p, c.values[o[None, :, None] + np.arange(3)[None, None] - 24,
                                           np.arange(4)[:, None, None], 0])


def test_historical_average_uses_the_few_shot_days_only(month_city):
    c, d = month_city, _data(month_city)
    o = d.origins("test")[:4]
    a = historical_average(d, o)
    c.values[d.split.val.start:] = 1e6  # validation and test values must not matter
    b = historical_average(d, o)
    np.testing.assert_array_equal(a, b)
    seg = d.split.train
    t = o[0]
    same_slot = [s for s in range(seg.start, seg.stop) if s % 24 == t % 24]
    np.testing.assert_allclose(a[0, 0, 0], c.values[same_slot, 0, 0].mean(), rtol=1e-5)


def test_weekly_naive_is_the_value_one_week_earlier():
    city = synthetic_city("w", n_nodes=3, days=21, seed=2)
    context_data = CityData(city, source_split(city.n_steps), history=6, horizon=3, n_neighbors=2)
    origins = context_data.origins("test")
    pred = weekly_naive(context_data, origins)
    t = origins[:, None] + np.arange(3) - 7 * 24
    np.testing.assert_array_equal(pred, city.values[t][:, :, :, 0].transpose(2, 0, 1).astype(np.float32))
    with pytest.raises(GpdiffError, match="7-day naive forecast needs a horizon of at most 168"):
        weekly_naive(CityData(city, source_split(city.n_steps), history=6, horizon=200, n_neighbors=2), origins)


def test_validation_weekly_naive_falls_back_to_the_few_shot_profile(month_city):
    from gpdiff.evaluation.naive import historical_average, lag_available, weekly_naive

    d = CityData(month_city, target_split(month_city.n_steps, 24, days=3), history=6, horizon=3, n_neighbors=1)
    o = d.origins("val")
    assert not lag_available(d, o, 7).any() and lag_available(d, o, 1).all()
    np.testing.assert_array_equal(weekly_naive(d, o), historical_average(d, o))
    t = d.origins("test")
    assert lag_available(d, t, 7).all()
