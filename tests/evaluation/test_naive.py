import numpy as np

from gpdiff.data import CityData, target_split
from gpdiff.evaluation.naive import historical_average, seasonal_naive


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
