"""Windows: origins that never cross a segment, batches that hold the city's values, nothing read before the
few-shot days, and the seasonal context (window.context) each window carries."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gpdiff.data import CityData, source_split, target_split
from gpdiff.data.splits import Segment
from gpdiff.data.synthetic import synthetic_city
from gpdiff.data.windows import WindowConfig, window_origins
from gpdiff.evaluation.naive import seasonal_naive, weekly_naive
from gpdiff.models import ModelConfig
from gpdiff.utils.errors import GpdiffError

pytestmark = pytest.mark.usefixtures("one_thread")



def test_windows_carry_the_values_one_day_earlier(context_data, context_batch):
    o = context_data.origins("train")
    seg = context_data.split.train
    assert o[0] == seg.start + 12 + 24  # a training window's lagged inputs lie inside its segment
    scaled = context_data.values[..., 0]
    t0 = int(o[0])
    assert torch.equal(context_batch.lag_y[2, 0], scaled[t0 - 24:t0 - 24 + 6, 2])
    ego = context_data.ego_index[2]
    for slot in range(int(context_data.ego_valid[2].sum())):
        assert torch.equal(context_batch.lag_x[2, 0, slot], scaled[t0 - 12 - 24:t0 - 24, ego[slot]])
    assert not context_batch.lag_x[2, 0, int(context_data.ego_valid[2].sum()):].any()  # padded slots stay 0
    val = context_data.origins("val")
    assert val[0] == context_data.split.val.start  # validation windows may look back before their segment


@pytest.mark.parametrize("interval,expected", [(60, 31), (10, 271)])
def test_training_windows_in_three_days(interval, expected):
    """3 target days: hourly 55 windows without context, 31 with a daily one; 10-minute 415 -> 271."""
    city = synthetic_city("t", n_nodes=3, days=10, interval_minutes=interval, seed=0)
    spd = city.steps_per_day
    split = target_split(city.n_steps, spd, 3, 1, 0.2, 18, lag=spd)
    plain = CityData(city, split, n_neighbors=2)
    daily = CityData(city, split, n_neighbors=2, context="daily")
    assert daily.origins("train").size == expected
    assert plain.origins("train").size == 3 * spd - 18 + 1


def test_too_little_data_names_the_lag():
    city = synthetic_city("t", n_nodes=3, days=10, seed=0)
    with pytest.raises(GpdiffError, match="seasonal context's lag 24"):
        target_split(city.n_steps, 24, 1, 1, 0.2, 18, name="t", lag=24)
    split = target_split(city.n_steps, 24, 1.5, 1, 0.2, 18, name="t")
    with pytest.raises(GpdiffError, match="daily context's lag of 24 steps"):
        CityData(city, split, n_neighbors=2, context="daily").require_windows("train")
    with pytest.raises(GpdiffError, match="unknown seasonal context 'hourly'"):
        WindowConfig(context="hourly")
    with pytest.raises(GpdiffError, match="needs window.context daily or weekly"):
        ModelConfig(residual="seasonal")


# ------------------------------------------------ a new city has no past (docs/DESIGN.md, section 3)
def _poison_before_few_shot_days(city, split, seed=0):
    """Every value before the few-shot days replaced by wild numbers, and a third of them unobserved."""
    rng = np.random.default_rng(seed)
    before = slice(0, split.train.start)
    city.values[before] = rng.uniform(-1e4, 1e4, city.values[before].shape).astype(city.values.dtype)
    city.mask[before] = rng.random(city.mask[before].shape) > 0.3


def test_windows_never_overlap_segments(month_city):
    c = month_city
    split = target_split(c.n_steps, c.steps_per_day, days=3, window=18)
    d = CityData(c, split, history=12, horizon=6, n_neighbors=2)
    tr, va, te = d.origins("train"), d.origins("val"), d.origins("test")
    # training windows: inputs and targets inside the few-shot days
    assert tr.min() - 12 >= split.train.start and tr.max() + 6 <= split.train.stop
    # no window's targets reach into a later segment
    assert va.min() >= split.val.start and va.max() + 6 <= split.val.stop
    assert te.min() >= split.test.start and te.max() + 6 <= split.test.stop
    assert len(tr) == len(split.train) - 18 + 1


def test_window_origins_lookback():
    seg = Segment(100, 130)
    assert window_origins(seg, 12, 6, lookback=True)[0] == 100
    assert window_origins(seg, 12, 6, lookback=False)[0] == 112
    assert window_origins(seg, 12, 6, lookback=False)[-1] == 124
    assert window_origins(Segment(0, 10), 12, 6, lookback=True).size == 0


def test_batch_contents_match_the_city():
    c = synthetic_city(n_nodes=6, days=10, seed=3)
    d = CityData(c, source_split(c.n_steps), history=4, horizon=3, n_neighbors=2)
    nodes = torch.tensor([5, 1])
    origins = torch.tensor([[40, 50], [60, 70]])
    b = d.batch(nodes, origins)
    assert b.x.shape == (2, 2, 3, 4, 1) and b.y.shape == (2, 2, 3)
    z = d.scaler.transform(c.values, c.mask)
    np.testing.assert_allclose(b.x[0, 1, 0, :, 0].numpy(), z[46:50, 5, 0])  # centre first
    nb = d.ego.index[1, 1]
    np.testing.assert_allclose(b.x[1, 0, 1, :, 0].numpy(), z[56:60, nb, 0])
    np.testing.assert_allclose(b.y[1, 1].numpy(), z[70:73, 1, 0])
    truth, mask = d.truth(np.array([70]), np.array([1]))
    assert mask.all()  # the synthetic city has no missing values
    np.testing.assert_allclose(d.to_original(b.y[1:2, 1:2], np.array([1])), truth, rtol=1e-5)
    assert b.tod[0, 0].item() == pytest.approx(((40 - 1) % 24) / 24)


def test_first_readable_is_the_few_shot_start_before_the_test_period_only():
    from gpdiff.data.windows import first_readable

    target = target_split(24 * 20, 24, days=3)
    o = np.array([target.train.start + 12, target.val.start, target.test.start - 1, target.test.start, 470])
    assert first_readable(target, o).tolist() == [target.train.start] * 3 + [0, 0]
    assert first_readable(source_split(480), o).tolist() == [0] * 5


@pytest.mark.parametrize("context", ["none", "daily", "weekly", "lags"])
def test_train_and_val_windows_read_nothing_before_the_few_shot_days(month_city, context):
    """Poisoning every value before the few-shot days changes no training or validation input (history,
    seasonal context) and no naive forecast there, but test windows still read the whole past."""
    from gpdiff.evaluation.naive import historical_average

    c = month_city
    split = target_split(c.n_steps, 24, days=2, window=6)  # validation's weekly lag lies 5 days before
    def everything(city):
        d = CityData(city, split, history=4, horizon=2, n_neighbors=2, context=context)
        out = {}
        for name in ("val", "test"):
            o = d.origins(name)
            b = d.batch(d.all_nodes(), torch.from_numpy(o).expand(d.n_nodes, -1))
            out[name] = [b.x, b.lag_x, b.lag_y, torch.from_numpy(seasonal_naive(d, o)),
                         torch.from_numpy(weekly_naive(d, o)), torch.from_numpy(historical_average(d, o)),
                         b.lags_x, b.lags_y, b.lags_ok_x, b.lags_ok_y]
        tr = d.origins("train")
        tb = d.batch(d.all_nodes(), torch.from_numpy(tr).expand(d.n_nodes, -1)) if tr.size else None
        out["train"] = [tb.x, tb.lags_x, tb.lags_y, tb.lags_ok_x, tb.lags_ok_y] if tb is not None else []
        return out

    a = everything(c)
    poisoned = synthetic_city("month", n_nodes=4, days=20, seed=1)
    _poison_before_few_shot_days(poisoned, split)
    b = everything(poisoned)
    for name in ("train", "val"):
        for x, y in zip(a[name], b[name]):
            if x is not None:
                torch.testing.assert_close(x, y, rtol=0, atol=0)
    # test origins may read the past: the first test day's weekly values lie before the few-shot days
    assert not torch.equal(a["test"][4], b["test"][4])
    if context == "weekly":
        assert not torch.equal(a["test"][2], b["test"][2])
    if context == "lags":  # the week-ago values of the first test week are read there
        assert not torch.equal(a["test"][7], b["test"][7])
