"""The evaluation protocol: splits, scalers and windows cannot leak."""

import numpy as np
import pytest
import torch

from gpdiff.data import CityData, source_split, target_split
from gpdiff.data.graph import ego_graphs, gaussian_knn_adjacency, grid_adjacency
from gpdiff.data.scaler import NodeScaler
from gpdiff.data.splits import Segment
from gpdiff.data.synthetic import synthetic_city
from gpdiff.data.windows import window_origins
from gpdiff.utils.errors import GpdiffError


def test_source_split_is_chronological_and_disjoint():
    s = source_split(1000, 0.7, 0.1, 0.2)
    assert (s.train.start, s.train.stop, s.val.stop, s.test.stop) == (0, 700, 800, 1000)
    assert s.train.stop <= s.val.start and s.val.stop <= s.test.start


@pytest.mark.parametrize("days", [1, 2.5, 3, 7])
def test_target_split_counts_calendar_days_at_the_interval(days):
    spd = 288  # 5-minute data
    s = target_split(20 * spd, spd, days=days, val_days=1, test_fraction=0.2, window=18)
    assert len(s.train) == round(days * spd)
    assert len(s.val) == spd
    assert s.test.stop == 20 * spd and len(s.test) == round(0.2 * 20 * spd)
    assert s.train.stop == s.val.start and s.val.stop == s.test.start


def test_target_test_period_does_not_depend_on_days():
    a = target_split(5000, 24, days=1)
    b = target_split(5000, 24, days=7)
    assert a.test == b.test and a.val == b.val


def test_target_split_errors_are_clear():
    with pytest.raises(GpdiffError, match="fewer than one window"):
        target_split(5000, 24, days=0.5, window=18)
    with pytest.raises(GpdiffError, match=r"series has 5.0 days; .* So use --target-days 3.00 or fewer"):
        target_split(24 * 5, 24, days=4)
    target_split(24 * 5, 24, days=3)  # the advice holds
    with pytest.raises(GpdiffError, match=r"series has 2.0 days; .*one window \(0.75 days\), does not fit: use a "
                                          r"series of at least 2.2 days"):
        target_split(24 * 2, 24, days=0.75, window=18)
    target_split(53, 24, days=0.75, window=18)  # 2.2 days


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


def test_scaler_uses_training_data_only(month_city):
    c = month_city
    split = source_split(c.n_steps)
    a = NodeScaler.fit(c, split.train)
    c.values[split.val.start :] *= 100.0  # change validation and test wildly
    c.values[split.val.start :] += 7.0
    b = NodeScaler.fit(c, split.train)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.std, b.std)


def test_scaler_ignores_missing_and_round_trips():
    c = synthetic_city(n_nodes=4, days=10, missing=0.3, seed=2)
    split = source_split(c.n_steps)
    sc = NodeScaler.fit(c, split.train)
    obs = c.values[split.train.as_slice(), 1, 0][c.mask[split.train.as_slice(), 1]]
    assert sc.mean[1, 0] == pytest.approx(obs.mean(), rel=1e-5)
    z = sc.transform(c.values, c.mask)
    assert np.all(z[:, :, 0][~c.mask] == 0)
    back = sc.inverse_transform(z[:, :, 0])
    np.testing.assert_allclose(back[c.mask], c.values[:, :, 0][c.mask], rtol=1e-5, atol=1e-3)


def test_scaler_gives_nodes_without_a_scale_the_pooled_one():
    """A node unobserved (or constant) in training must not be left in raw units later on."""
    c = synthetic_city(n_nodes=4, days=10, seed=2)
    split = source_split(c.n_steps)
    tr = split.train.as_slice()
    c.mask[tr, 1] = False  # node 1: nothing observed in training
    c.values[tr, 2, 0] = 0.0  # node 2: a constant (all zeros) in training
    sc = NodeScaler.fit(c, split.train)
    keep = c.mask[tr][:, [0, 3]]
    pooled = c.values[tr][:, [0, 3], 0][keep]
    pooled = np.concatenate([pooled, np.zeros(c.mask[tr, 2].sum())])  # node 2's observed zeros count too
    assert sc.std[1, 0] == pytest.approx(pooled.std(), rel=1e-4)
    assert sc.mean[1, 0] == pytest.approx(pooled.mean(), rel=1e-4)
    assert sc.std[2, 0] == pytest.approx(pooled.std(), rel=1e-4) and sc.mean[2, 0] == 0.0
    z = sc.transform(c.values, c.mask)[split.test.as_slice()]
    assert np.abs(z).max() < 20  # test values land on the same scale as every other node's
    c.values[tr, 3, 0] = c.values[tr, 3, 0] * 1e-3  # node 3: almost idle in training
    own = c.values[tr, 3, 0][c.mask[tr, 3]].std()
    assert NodeScaler.fit(c, split.train).std[3, 0] == pytest.approx(own, rel=1e-4)  # no floor by default
    sc = NodeScaler.fit(c, split.train, min_rel_std=0.05)
    assert sc.std[3, 0] == pytest.approx(0.05 * sc.std[1, 0], rel=1e-4)  # floored at 5% of the pooled std
    assert sc.std[0, 0] == pytest.approx(c.values[tr, 0, 0][c.mask[tr, 0]].std(), rel=1e-5)  # others untouched


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


def test_ego_graphs_pick_strongest_neighbours_and_pad():
    a = np.zeros((4, 4), dtype=np.float32)
    a[0, 1], a[2, 0], a[0, 3] = 0.9, 0.5, 0.1
    e = ego_graphs(a, k=3)
    assert list(e.index[0]) == [0, 1, 2, 3]
    assert list(e.valid[1]) == [True, True, False, False]
    assert e.adjacency[0, 0, 1] == pytest.approx(0.9) and e.adjacency[0, 2, 0] == pytest.approx(0.5)
    assert e.adjacency[1, :, 2:].sum() == 0 and np.all(np.diagonal(e.adjacency, axis1=1, axis2=2) == 0)


def test_ego_graphs_with_more_slots_than_nodes():
    e = ego_graphs(np.ones((3, 3), dtype=np.float32), k=5)
    assert e.index.shape == (3, 6) and e.valid.sum(1).tolist() == [3, 3, 3]


def test_graph_builders():
    g = grid_adjacency(2, 3, 4)
    assert g.sum() == 14 and np.array_equal(g, g.T)
    assert grid_adjacency(3, 3, 8)[4].sum() == 8
    coords = np.array([[0, 0], [0, 1], [0, 2], [10, 10]], dtype=float)
    w = gaussian_knn_adjacency(coords, k=1, latlon=False)
    assert np.array_equal(w, w.T) and w[0, 1] > 0 and w[0, 3] == 0


# ------------------------------------------------ a new city has no past (docs/DESIGN.md, section 3)
def _poison_before_few_shot_days(city, split, seed=0):
    """Every value before the few-shot days replaced by wild numbers, and a third of them unobserved."""
    rng = np.random.default_rng(seed)
    before = slice(0, split.train.start)
    city.values[before] = rng.uniform(-1e4, 1e4, city.values[before].shape).astype(city.values.dtype)
    city.mask[before] = rng.random(city.mask[before].shape) > 0.3


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
    from gpdiff.evaluation.naive import historical_average, seasonal_naive, weekly_naive

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


def test_validation_weekly_naive_falls_back_to_the_few_shot_profile(month_city):
    from gpdiff.evaluation.naive import historical_average, lag_available, weekly_naive

    d = CityData(month_city, target_split(month_city.n_steps, 24, days=3), history=6, horizon=3, n_neighbors=1)
    o = d.origins("val")
    assert not lag_available(d, o, 7).any() and lag_available(d, o, 1).all()
    np.testing.assert_array_equal(weekly_naive(d, o), historical_average(d, o))
    t = d.origins("test")
    assert lag_available(d, t, 7).all()
