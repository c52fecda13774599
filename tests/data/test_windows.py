"""Seasonal context (window.context) and the residual to seasonal naive, for every base model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpdiff.data import CityData, source_split, target_split
from gpdiff.data.synthetic import synthetic_city
from gpdiff.data.windows import WindowConfig
from gpdiff.evaluation.naive import seasonal_naive, weekly_naive
from gpdiff.models import MODELS, ModelConfig, get_model
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.nodetrain import masked_node_mae, predict, trim_slots

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(two_source_cities) -> CityData:
    city = two_source_cities[0]  # 6 nodes, 8 days, hourly
    return CityData(city, source_split(city.n_steps), n_neighbors=7, context="daily")


@pytest.fixture(scope="module")
def batch(data):
    n = data.n_nodes
    return data.batch(torch.arange(n), torch.from_numpy(data.origins("train")[:5]).expand(n, -1))


def test_windows_carry_the_values_one_day_earlier(data, batch):
    o = data.origins("train")
    seg = data.split.train
    assert o[0] == seg.start + 12 + 24  # a training window's lagged inputs lie inside its segment
    scaled = data.values[..., 0]
    t0 = int(o[0])
    assert torch.equal(batch.lag_y[2, 0], scaled[t0 - 24:t0 - 24 + 6, 2])
    ego = data.ego_index[2]
    for slot in range(int(data.ego_valid[2].sum())):
        assert torch.equal(batch.lag_x[2, 0, slot], scaled[t0 - 12 - 24:t0 - 24, ego[slot]])
    assert not batch.lag_x[2, 0, int(data.ego_valid[2].sum()):].any()  # padded slots stay 0
    val = data.origins("val")
    assert val[0] == data.split.val.start  # validation windows may look back before their segment


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


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("residual", ["none", "seasonal"])
def test_batched_forward_matches_plain_module_with_context(name, residual, batch):
    model = get_model(name, ModelConfig(context="daily", residual=residual))
    params = model.init(6, seed=1, shared=False)
    if residual == "none":
        assert [s.name for s in model.spec()][-1] == "context.gain"
        params["context.gain"] = torch.linspace(0.2, 1.0, 6).expand(6, -1).clone()
    out = model.forward(params, batch)
    for i in range(6):
        net = model.reference({k: v[i] for k, v in params.items()})
        torch.testing.assert_close(net.forward_batch(batch, i), out[i], atol=1e-5, rtol=1e-5)
        back = net.node_params()
        assert list(back) == [s.name for s in model.spec()] and all(torch.equal(back[k], params[k][i]) for k in back)
    torch.testing.assert_close(model.forward(params, trim_slots(batch)), out, atol=1e-5, rtol=1e-5)
    # the lag channel is an input: the spec grew by it
    plain = get_model(name, ModelConfig())
    assert model.n_params > plain.n_params and model.n_inputs == plain.n_inputs + 1


@pytest.mark.parametrize("name", list(MODELS))
def test_untrained_residual_model_forecasts_seasonal_naive(name, data):
    """residual: seasonal with the read-out at zero is seasonal naive, to 1e-6 (original scale), on
    every window whose value one day earlier is observed."""
    model = get_model(name, ModelConfig(context="daily", residual="seasonal"))
    params = model.init(data.n_nodes, seed=3)
    origins = data.origins("val")
    pred = predict(model, params, data, origins, model.config.in_channels)
    naive = seasonal_naive(data, origins)
    lagged = origins[:, None] + np.arange(data.horizon) - 24
    observed = data.city.mask[lagged].transpose(2, 0, 1)  # [N, B, H]
    assert observed.mean() > 0.5
    np.testing.assert_allclose(pred[observed], naive[observed], rtol=1e-6, atol=1e-6 * np.abs(naive).max())
    # and it trains: one gradient step moves it
    params = {k: v.requires_grad_() for k, v in params.items()}
    b = data.batch(data.all_nodes(), torch.from_numpy(origins[:4]).expand(data.n_nodes, -1))
    masked_node_mae(model.forward(params, b), b.y, b.y_mask).sum().backward()
    assert any(float(params[k].grad.abs().sum()) > 0 for k in model.output_params)


def test_model_with_context_refuses_windows_without(two_source_cities):
    city = two_source_cities[0]
    plain = CityData(city, source_split(city.n_steps), n_neighbors=7)
    b = plain.batch(torch.arange(2), torch.from_numpy(plain.origins("train")[:2]).expand(2, -1))
    model = get_model("stid", ModelConfig(context="daily"))
    with pytest.raises(GpdiffError, match="carry none"):
        model.forward(model.init(2), b)


def test_weekly_naive_is_the_value_one_week_earlier():
    city = synthetic_city("w", n_nodes=3, days=21, seed=2)
    data = CityData(city, source_split(city.n_steps), history=6, horizon=3, n_neighbors=2)
    origins = data.origins("test")
    pred = weekly_naive(data, origins)
    t = origins[:, None] + np.arange(3) - 7 * 24
    np.testing.assert_array_equal(pred, city.values[t][:, :, :, 0].transpose(2, 0, 1).astype(np.float32))
    with pytest.raises(GpdiffError, match="7-day naive forecast needs a horizon of at most 168"):
        weekly_naive(CityData(city, source_split(city.n_steps), history=6, horizon=200, n_neighbors=2), origins)
