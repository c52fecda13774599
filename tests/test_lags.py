"""The lag-aware base models (window.context lags): optional one-day and one-week lags with masks, and
a forecast that starts from a learned combination of the lagged values and the recent level."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpdiff.data import CityData, source_split, target_split
from gpdiff.data.synthetic import synthetic_city
from gpdiff.data.windows import LAG_DROPOUT, WindowBatch, WindowConfig
from gpdiff.models import MODELS, ModelConfig, get_model
from gpdiff.models.base import HEAD, INITIAL_HEAD, masked_node_mae
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.nodelayout import trim_slots

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def city():
    return synthetic_city("lagcity", n_nodes=6, days=21, seed=2, k=3, missing=0.05)


@pytest.fixture(scope="module")
def data(city) -> CityData:
    return CityData(city, source_split(city.n_steps), n_neighbors=4, context="lags")


@pytest.fixture(scope="module")
def batch(data) -> WindowBatch:
    """Validation windows (every lag there, except the missing values) and training windows of the
    first week (no week-ago value) together."""
    o = np.concatenate([data.origins("train")[:6], data.origins("val")[:10]])
    return data.batch(data.all_nodes(), torch.from_numpy(o).expand(data.n_nodes, -1))


def test_lags_are_the_values_a_day_and_a_week_earlier_or_marked_missing(data, batch):
    scaled, mask = data.values[..., 0], data.mask
    o = np.concatenate([data.origins("train")[:6], data.origins("val")[:10]])
    assert o[0] == 12  # a window needs no lag: the first week has windows, with the week-ago value missing
    assert not batch.lags_ok_y[:, :6, :, 1].any() and not batch.lags_ok_x[:, :6, :, :, 1].any()
    for lag_i, lag in enumerate((24, 168)):
        t = torch.from_numpy(o)[:, None] + torch.arange(6) - lag  # [B, H]
        for node in range(data.n_nodes):
            ok = batch.lags_ok_y[node, :, :, lag_i]
            inside = t >= 0
            expect = inside & mask[t.clamp_min(0), node]
            val = o >= data.split.train.stop  # no lag is masked on purpose at validation origins
            assert torch.equal(ok[val], expect[val])
            assert torch.equal(batch.lags_y[node, :, :, lag_i][ok], scaled[t.clamp_min(0), node][ok])
            assert not batch.lags_y[node, :, :, lag_i][~ok].any()  # exactly 0 where missing
    assert not (batch.lags_ok_x & ~batch.valid[:, None, :, None, None]).any()  # padded slots are missing


def test_source_training_windows_drop_each_lag_in_about_a_quarter(data):
    o = data.origins("train")
    o = o[o >= 168 + 12]  # windows whose lags all lie inside the series
    b = data.batch(data.all_nodes(), torch.from_numpy(o).expand(data.n_nodes, -1))
    centre_seen = b.lags_ok_x[:, :, 0].any(-2)  # [n, B, L]: the lag is read somewhere in the history
    dropped = 1 - centre_seen.float().mean((0, 1))
    assert torch.all((dropped > LAG_DROPOUT - 0.08) & (dropped < LAG_DROPOUT + 0.08)), dropped
    v = data.origins("val")
    bv = data.batch(data.all_nodes(), torch.from_numpy(v).expand(data.n_nodes, -1))
    assert bv.lags_ok_x[:, :, 0].any(-2).float().mean() > 0.97  # none on purpose at validation windows


def test_target_windows_need_no_lag_and_read_none_before_the_few_shot_days(city):
    split = target_split(city.n_steps, 24, days=3, window=18)
    lagged = CityData(city, split, n_neighbors=2, context="lags")
    plain = CityData(city, split, n_neighbors=2)
    assert np.array_equal(lagged.origins("train"), plain.origins("train"))  # 3 days hold 55 windows, as without
    o = np.concatenate([lagged.origins("train"), lagged.origins("val")])
    b = lagged.batch(lagged.all_nodes(), torch.from_numpy(o).expand(lagged.n_nodes, -1))
    assert not b.lags_ok_y[..., 1].any()  # the week before the few-shot days is not there
    t = torch.from_numpy(o)[:, None] + torch.arange(6) - 24
    assert torch.equal(b.lags_ok_y[..., 0].any(0), (t >= split.train.start))  # day-ago only inside them
    test = lagged.batch(lagged.all_nodes(), torch.from_numpy(lagged.origins("test")).expand(lagged.n_nodes, -1))
    assert test.lags_ok_y[..., 1].float().mean() > 0.9  # at test origins the whole past is readable


@pytest.mark.parametrize("name", list(MODELS))
def test_batched_forward_matches_plain_module_with_lags(name, batch):
    model = get_model(name, ModelConfig(context="lags", ego_size=5))
    assert model.spec()[-1].name == HEAD and model.n_inputs == 1 + 4
    params = model.init(6, seed=1, shared=False)
    params[HEAD] = params[HEAD] + 0.05 * torch.randn(params[HEAD].shape, generator=torch.Generator().manual_seed(0))
    out = model.forward(params, batch)
    for i in range(6):
        net = model.reference({k: v[i] for k, v in params.items()})
        torch.testing.assert_close(net.forward_batch(batch, i), out[i], atol=1e-5, rtol=1e-5)
        back = net.node_params()
        assert list(back) == [s.name for s in model.spec()] and all(torch.equal(back[k], params[k][i]) for k in back)
    torch.testing.assert_close(model.forward(params, trim_slots(batch)), out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_untrained_model_forecasts_its_initial_combination(name, batch):
    """With the network's read-out at zero the forecast is exactly the initial combination, written out
    here by hand per availability pattern; at the real init the read-out is small, not zero."""
    model = get_model(name, ModelConfig(context="lags", ego_size=5))
    params = model.init(6, seed=0)
    level = batch.x[:, :, 0, -1, 0][:, :, None].expand(-1, -1, 6)
    day, week = batch.lags_y[..., 0], batch.lags_y[..., 1]
    ok_d, ok_w = batch.lags_ok_y[..., 0], batch.lags_ok_y[..., 1]
    expect = torch.zeros_like(level)
    for p, (a, b, c) in INITIAL_HEAD.items():
        sel = (ok_d.long() + 2 * ok_w.long()) == p
        expect = torch.where(sel, a * level + b * day + c * week, expect)
    assert ok_d.any() and ok_w.any() and (~ok_w).any()
    zeroed = {k: torch.zeros_like(v) if k in model.output_params else v for k, v in params.items()}
    torch.testing.assert_close(model.forward(zeroed, batch), expect, rtol=0, atol=1e-6)
    out = model.forward(params, batch)
    assert 0 < float((out - expect).abs().mean()) < 0.5 * float(expect.abs().mean())


@pytest.mark.parametrize("name", list(MODELS))
def test_every_parameter_tensor_has_a_gradient_at_init(name, batch):
    """No product of two zero-initialised factors: one step on the shared init moves every tensor."""
    model = get_model(name, ModelConfig(context="lags", ego_size=5))
    params = {k: v.requires_grad_() for k, v in model.init(6, seed=0).items()}
    masked_node_mae(model.forward(params, batch), batch.y, batch.y_mask).sum().backward()
    dead = [k for k, v in params.items() if not float(v.grad.abs().sum()) > 0]
    assert not dead, dead


@pytest.mark.parametrize("name", list(MODELS))
def test_masked_lags_are_never_read(name, batch):
    """Wild values (and NaN) wherever a lag is marked missing change no forecast."""
    model = get_model(name, ModelConfig(context="lags", ego_size=5))
    params = model.init(6, seed=4, shared=False)
    clean = model.forward(params, batch)
    g = torch.Generator().manual_seed(1)
    poison = {}
    for field, ok in (("lags_x", batch.lags_ok_x), ("lags_y", batch.lags_ok_y)):
        v = getattr(batch, field)
        wild = torch.where(torch.rand(v.shape, generator=g) < 0.5, torch.full_like(v, float("nan")),
                           torch.randn(v.shape, generator=g) * 1e4)
        poison[field] = torch.where(ok, v, wild)
    assert int((~batch.lags_ok_y).sum()) > 0
    dirty = model.forward(params, WindowBatch(**{**vars(batch), **poison}))
    assert torch.equal(clean, dirty)


def test_config_and_errors(two_source_cities):
    assert WindowConfig(context="lags").context == "lags"
    with pytest.raises(GpdiffError, match="daily or weekly"):
        ModelConfig(context="lags", residual="seasonal")
    plain = CityData(two_source_cities[0], source_split(two_source_cities[0].n_steps), n_neighbors=7)
    b = plain.batch(torch.arange(2), torch.from_numpy(plain.origins("train")[:2]).expand(2, -1))
    model = get_model("stid", ModelConfig(context="lags"))
    with pytest.raises(GpdiffError, match="carry no lags"):
        model.forward(model.init(2), b)
    # the per-node vector holds the head's weights: (level, day, week, the network's gate) per pattern and step,
    # and the row every pattern shares
    assert dict((s.name, s.shape) for s in model.spec())[HEAD] == (5, 4, 6)


def test_the_head_moves_with_the_data_whatever_its_weights(batch):
    """The head's weights of a pattern always sum to one: for any weights, adding a constant to the level
    and to every lagged value adds it to the forecast, so the node mean a scaler subtracted does not
    matter; a head of zeros forecasts the most seasonal value there (the week, else the day, else the
    level). BENCHMARKS.md, 'Why the lag-aware anchor fails zero-shot'."""
    model = get_model("stid", ModelConfig(context="lags", ego_size=5))
    head = torch.randn(6, *model.head_shape, generator=torch.Generator().manual_seed(3))
    x = batch.x.clone()
    x[:, :, 0, -1, 0] += 7.5
    shifted = WindowBatch(**{**vars(batch), "x": x, "lags_y": batch.lags_y + 7.5, "lags_x": batch.lags_x + 7.5})
    torch.testing.assert_close(model.combination(head, shifted), model.combination(head, batch) + 7.5,
                               rtol=0, atol=1e-4)
    level = batch.x[:, :, 0, -1, 0][:, :, None].expand(-1, -1, 6)
    day, week = batch.lags_y[..., 0], batch.lags_y[..., 1]
    ok_d, ok_w = batch.lags_ok_y[..., 0], batch.lags_ok_y[..., 1]
    expect = torch.where(ok_w, week, torch.where(ok_d, day, level))
    assert torch.equal(model.combination(torch.zeros_like(head), batch), expect)


@pytest.mark.parametrize("name", list(MODELS))
def test_a_closed_gate_forecasts_the_heads_combination_alone(name, batch):
    """A target node's start (gates closed) forecasts the head's combination exactly, whatever the network
    holds; at the shared init that is the initial combination. Closed, the gates still get a gradient
    (the network's output is not zero), so fine-tuning can open them."""
    model = get_model(name, ModelConfig(context="lags", ego_size=5))
    params = model.init(6, seed=4, shared=False)
    params[HEAD] = params[HEAD] + 0.1 * torch.randn(params[HEAD].shape, generator=torch.Generator().manual_seed(5))
    closed = model.close_correction(params)
    assert torch.equal(closed[HEAD][:, :, model.gate_column], torch.zeros(6, 5, 6))
    assert torch.equal(closed[HEAD][:, -1], torch.zeros(6, 4, 6))  # the shared row moved into the patterns'
    weights = model.pattern_weights(params[HEAD])[:, :, : model.gate_column]
    assert torch.equal(model.pattern_weights(closed[HEAD])[:, :, : model.gate_column], weights)
    assert all(torch.equal(closed[k], v) for k, v in params.items() if k != HEAD)
    torch.testing.assert_close(model.forward(closed, batch), model.combination(params[HEAD], batch), rtol=0, atol=0)
    assert not torch.equal(model.forward(params, batch), model.forward(closed, batch))
    start = {k: v.requires_grad_() for k, v in model.close_correction(model.init(6, seed=0)).items()}
    masked_node_mae(model.forward(start, batch), batch.y, batch.y_mask).sum().backward()
    assert float(start[HEAD].grad[:, :, model.gate_column].abs().sum()) > 0


def test_fine_tuning_without_the_week_moves_the_weeks_forecasts_by_the_shared_row_only(tmp_path):
    """Under the protocol the few-shot days hold no value a week earlier, so fine-tuning never sees the
    head's own rows for the patterns with the week: they (the gates included) stay as transferred, while
    the gate of the day-only pattern opens. What the days teach reaches a window that has the week at
    every step through the head's shared row alone: with that row put back to 0 such a window is
    forecast exactly as at the start, and with it, differently."""
    from gpdiff.methods.adapt import FinetuneConfig, finetune, forecast, target_start
    from gpdiff.zoo.params import flatten, unflatten

    city = synthetic_city("ft", n_nodes=3, days=14, seed=3, k=2)
    data = CityData(city, target_split(city.n_steps, 24, days=3), n_neighbors=2, context="lags")
    model = get_model("stid", ModelConfig(context="lags", ego_size=3))
    init = model.init(3, seed=1)
    init[HEAD] = init[HEAD] + 0.05 * torch.randn(init[HEAD].shape, generator=torch.Generator().manual_seed(2))
    start = target_start(model, flatten(init, model.spec()))
    tuned = finetune(model, start, data, FinetuneConfig(max_epochs=4, steps_per_epoch=5, patience=4), tmp_path,
                     progress=False)
    h0, h1 = unflatten(start, model.spec())[HEAD], unflatten(tuned, model.spec())[HEAD]
    assert torch.equal(h1[:, 2:4], h0[:, 2:4])  # patterns 2 (week) and 3 (both): their own rows untouched
    assert torch.equal(h0[:, 4], torch.zeros_like(h0[:, 4])) and float(h1[:, 4, 0].abs().sum()) > 0  # shared: learnt
    assert float(h1[:, 1, model.gate_column].abs().sum()) > 0  # the day-only gate opened
    assert not torch.equal(tuned, start)
    test = data.batch(data.all_nodes(), torch.from_numpy(data.origins("test")).expand(data.n_nodes, -1))
    week_everywhere = test.lags_ok_y[..., 1].all(-1)  # [n, B]
    assert week_everywhere.float().mean() > 0.5
    unshared = unflatten(tuned, model.spec())
    unshared[HEAD] = unshared[HEAD].clone()
    unshared[HEAD][:, 4] = 0.0
    a, b = forecast(model, start, data), forecast(model, flatten(unshared, model.spec()), data)
    np.testing.assert_array_equal(a[week_everywhere.numpy()], b[week_everywhere.numpy()])
    assert not np.array_equal(a[week_everywhere.numpy()], forecast(model, tuned, data)[week_everywhere.numpy()])
    assert not np.array_equal(forecast(model, start, data, "val"), forecast(model, tuned, data, "val"))


@pytest.mark.parametrize("context", ["lags", "none"])
def test_training_loss_adds_the_heads_own_error_for_the_lag_aware_model(context, batch):
    """The lag-aware model trains on its forecast's error plus HEAD_LOSS times its head's alone (so
    the head stays a forecast by itself); every other model on its forecast's error only."""
    from gpdiff.models.base import HEAD_LOSS

    model = get_model("stid", ModelConfig(context=context, ego_size=5))
    params = model.init(6, seed=2, shared=False)
    plain = batch if context == "lags" else WindowBatch(**{**vars(batch), **dict.fromkeys(
        ("lags_x", "lags_y", "lags_ok_x", "lags_ok_y"))})
    forecast = masked_node_mae(model.forward(params, plain), batch.y, batch.y_mask)
    expect = forecast
    if context == "lags":
        expect = forecast + HEAD_LOSS * masked_node_mae(model.combination(params[HEAD], batch), batch.y, batch.y_mask)
        assert HEAD_LOSS > 0
    torch.testing.assert_close(model.training_loss(params, plain), expect, rtol=0, atol=1e-6)


def test_the_heads_weights_learn_from_their_own_error_only(batch):
    """In the lag-aware training loss the head's weights get exactly the gradient of HEAD_LOSS times the
    head's own error (the forecast's term trains the network and the gates, not the weights); the gates
    and the network get the forecast's."""
    from gpdiff.models.base import HEAD_LOSS

    model = get_model("stid", ModelConfig(context="lags", ego_size=5))
    params = {k: v.requires_grad_() for k, v in model.init(6, seed=2, shared=False).items()}
    model.training_loss(params, batch).sum().backward()
    got = params[HEAD].grad.clone()
    head = params[HEAD].detach().clone().requires_grad_()
    (HEAD_LOSS * masked_node_mae(model.combination(head, batch), batch.y, batch.y_mask)).sum().backward()
    weights = [c for c in range(head.shape[2]) if c != model.gate_column]
    torch.testing.assert_close(got[:, :, weights], head.grad[:, :, weights], rtol=0, atol=1e-7)
    assert float(got[:, : model.n_patterns, model.gate_column].abs().sum()) > 0  # the gates: the forecast's term
    assert all(float(params[k].grad.abs().sum()) > 0 for k in params if k != HEAD)
