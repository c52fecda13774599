"""The node scaler: fitted on training data only, blind to missing values, a pooled scale for nodes without one."""

import numpy as np
import pytest

from gpdiff.data import source_split
from gpdiff.data.scaler import NodeScaler
from gpdiff.data.synthetic import synthetic_city


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
