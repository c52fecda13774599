"""Base models: batched forward == plain per-node nn.Module (with and without seasonal context), parameter
specs, initialisation, the residual to seasonal naive."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpdiff.data import CityData, source_split
from gpdiff.evaluation.naive import seasonal_naive
from gpdiff.models import MODELS, ModelConfig, get_model
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.nodelayout import trim_slots
from gpdiff.zoo.nodetrain import forecast_windows, masked_node_mae

pytestmark = pytest.mark.usefixtures("one_thread")


CASES = [(name, preset) for name in MODELS for preset in ("small", "paper")]
N_NODES = 6


@pytest.fixture(scope="module")
def batch(two_source_cities):
    """Windows of every node of a small city whose ego-graphs have different numbers of real slots,
    all fewer than the 8 of ``n_neighbors=7`` (so padding is included)."""
    city = two_source_cities[0]
    assert city.n_nodes == N_NODES
    data = CityData(city, source_split(city.n_steps), n_neighbors=7)
    nodes = torch.arange(N_NODES)
    origins = torch.from_numpy(data.origins("train")[:5]).expand(N_NODES, -1)
    return data.batch(nodes, origins)


def test_batch_has_padded_ego_slots(batch):
    slots = batch.valid.sum(1)
    assert batch.valid.shape[1] == 8 and slots.unique().numel() > 1 and int(slots.max()) < 8
    assert trim_slots(batch).valid.shape[1] == int(slots.max())


@pytest.mark.parametrize("name,preset", CASES)
def test_batched_forward_matches_plain_module(name, preset, batch):
    model = get_model(name, ModelConfig(preset=preset))
    params = model.init(N_NODES, seed=1, shared=False)
    out = model.forward(params, batch)
    assert out.shape == (N_NODES, batch.x.shape[1], model.config.horizon)
    for i in range(N_NODES):
        net = model.reference({k: v[i] for k, v in params.items()})
        torch.testing.assert_close(net.forward_batch(batch, i), out[i], atol=1e-5, rtol=1e-5)
        back = net.node_params()
        assert list(back) == [s.name for s in model.spec()]
        assert all(torch.equal(back[k], params[k][i]) for k in back)
    # cutting padded ego slots changes nothing
    torch.testing.assert_close(model.forward(params, trim_slots(batch)), out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", list(MODELS))
def test_batched_gradients_match_plain_module(name, batch):
    model = get_model(name, ModelConfig())
    params = {k: v.requires_grad_() for k, v in model.init(N_NODES, seed=2, shared=False).items()}
    masked_node_mae(model.forward(params, batch), batch.y, batch.y_mask).sum().backward()
    i = 2
    net = model.reference({k: v[i].detach() for k, v in params.items()})
    pred = net.forward_batch(batch, i)
    masked_node_mae(pred[None], batch.y[i:i + 1], batch.y_mask[i:i + 1]).sum().backward()
    with torch.no_grad():  # put the module's gradients in its weights to read them in spec layout
        for p in net.parameters():
            p.copy_(p.grad)
    for k, g in net.node_params().items():
        torch.testing.assert_close(params[k].grad[i], g, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name,preset", CASES)
def test_spec_and_init(name, preset):
    model = get_model(name, ModelConfig(preset=preset))
    spec = model.spec()
    assert len({s.name for s in spec}) == len(spec)
    assert {s.role for s in spec} == {"spatial", "temporal"}
    shared = model.init(3, seed=7)
    assert list(shared) == [s.name for s in spec]
    assert all(shared[s.name].shape == (3, *s.shape) for s in spec)
    assert sum(v[0].numel() for v in shared.values()) == model.n_params
    assert all(torch.equal(v[0], v[j]) for v in shared.values() for j in (1, 2))
    assert all(torch.equal(shared[k], v) for k, v in model.init(3, seed=7).items())  # seeded
    indep = model.init(3, seed=7, shared=False)
    drawn = [s.name for s in spec if indep[s.name][0].unique().numel() > 1]  # not constant-initialised
    assert drawn and all(not torch.equal(indep[k][0], indep[k][1]) for k in drawn)


def test_paper_sizes():
    assert get_model("stgcn", ModelConfig(preset="paper")).n_params == 16_960  # GPD's STGCN_NonBias
    gwn = get_model("gwn", ModelConfig(preset="paper")).n_params
    assert abs(gwn - 91_904) / 91_904 < 0.02  # GPD's v_GWN less its unused weights, plus the adaptive graph


@pytest.mark.parametrize("name", list(MODELS))
def test_small_preset_sizes(name):
    assert 2_000 < get_model(name).n_params < 10_000  # small presets: a few thousand


@pytest.mark.parametrize("name, preset", CASES)
def test_every_parameter_is_used(batch, name, preset):
    """No parameter the forward pass ignores: every tensor gets a gradient somewhere."""
    model = get_model(name, ModelConfig(preset=preset))
    params = {k: v.requires_grad_() for k, v in model.init(N_NODES, seed=0, shared=False).items()}
    model.forward(params, batch).square().sum().backward()
    unused = [k for k, v in params.items() if v.grad is None or not v.grad.abs().sum() > 0]
    assert not unused, (name, preset, unused)


def test_registry_errors():
    with pytest.raises(GpdiffError, match="stgcn"):
        get_model("stgnc")
    with pytest.raises(GpdiffError, match="paper"):
        get_model("gwn", ModelConfig(preset="huge"))
    with pytest.raises(GpdiffError, match="history"):
        get_model("stgcn", ModelConfig(history=6))


def test_cli_lists_every_model():
    """`gpdiff zoo train --help` names every registered base model (and nothing else)."""
    import re

    from click.testing import CliRunner

    from gpdiff.cli import main

    r = CliRunner().invoke(main, ["zoo", "train", "--help"], terminal_width=200)
    assert r.exit_code == 0, r.output
    listed = re.search(r"--model TEXT\s+Base model: ([\w, ]+) \(model\.name; default", r.output)
    assert listed, r.output
    assert listed.group(1).split(", ") == list(MODELS)


def test_in_channels(batch):
    two = get_model("stgcn", ModelConfig(in_channels=2))
    with pytest.raises(GpdiffError, match="channel"):
        two.forward(two.init(N_NODES), batch)  # the synthetic city has one channel


@pytest.mark.parametrize("name,preset", CASES)
def test_parameter_tools_round_trip(name, preset):
    """Flatten/unflatten and the tensor-aligned tokenizer are exact for every model and preset."""
    from gpdiff.zoo.params import Standardizer, Tokenizer, flatten, unflatten

    model = get_model(name, ModelConfig(preset=preset))
    spec = model.spec()
    params = model.init(3, seed=0, shared=False)
    flat = flatten(params, spec)
    assert flat.shape == (3, model.n_params)
    assert all(torch.equal(unflatten(flat, spec)[k], v) for k, v in params.items())
    tok = Tokenizer(spec, token_dim=64)
    tokens = tok.encode(flat)
    assert torch.equal(tok.decode(tokens), flat)
    spatial = {s.name for s in spec if s.role == "spatial"}
    assert tok.spatial_mask().tolist() == [t.name in spatial for t in tok.tokens]
    std = Standardizer.fit(flat, spec)
    torch.testing.assert_close(std.inverse_transform(std.transform(flat)), flat)



@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("residual", ["none", "seasonal"])
def test_batched_forward_matches_plain_module_with_context(name, residual, context_batch):
    model = get_model(name, ModelConfig(context="daily", residual=residual))
    params = model.init(6, seed=1, shared=False)
    if residual == "none":
        assert [s.name for s in model.spec()][-1] == "context.gain"
        params["context.gain"] = torch.linspace(0.2, 1.0, 6).expand(6, -1).clone()
    out = model.forward(params, context_batch)
    for i in range(6):
        net = model.reference({k: v[i] for k, v in params.items()})
        torch.testing.assert_close(net.forward_batch(context_batch, i), out[i], atol=1e-5, rtol=1e-5)
        back = net.node_params()
        assert list(back) == [s.name for s in model.spec()] and all(torch.equal(back[k], params[k][i]) for k in back)
    torch.testing.assert_close(model.forward(params, trim_slots(context_batch)), out, atol=1e-5, rtol=1e-5)
    # the lag channel is an input: the spec grew by it
    plain = get_model(name, ModelConfig())
    assert model.n_params > plain.n_params and model.n_inputs == plain.n_inputs + 1


@pytest.mark.parametrize("name", list(MODELS))
def test_untrained_residual_model_forecasts_seasonal_naive(name, context_data):
    """residual: seasonal with the read-out at zero is seasonal naive, to 1e-6 (original scale), on
    every window whose value one day earlier is observed."""
    model = get_model(name, ModelConfig(context="daily", residual="seasonal"))
    params = model.init(context_data.n_nodes, seed=3)
    origins = context_data.origins("val")
    pred = forecast_windows(model, params, context_data, origins, model.config.in_channels)
    naive = seasonal_naive(context_data, origins)
    lagged = origins[:, None] + np.arange(context_data.horizon) - 24
    observed = context_data.city.mask[lagged].transpose(2, 0, 1)  # [N, B, H]
    assert observed.mean() > 0.5
    np.testing.assert_allclose(pred[observed], naive[observed], rtol=1e-6, atol=1e-6 * np.abs(naive).max())
    # and it trains: one gradient step moves it
    params = {k: v.requires_grad_() for k, v in params.items()}
    b = context_data.batch(context_data.all_nodes(), torch.from_numpy(origins[:4]).expand(context_data.n_nodes, -1))
    masked_node_mae(model.forward(params, b), b.y, b.y_mask).sum().backward()
    assert any(float(params[k].grad.abs().sum()) > 0 for k in model.output_params)


def test_model_with_context_refuses_windows_without(two_source_cities):
    city = two_source_cities[0]
    plain = CityData(city, source_split(city.n_steps), n_neighbors=7)
    b = plain.batch(torch.arange(2), torch.from_numpy(plain.origins("train")[:2]).expand(2, -1))
    model = get_model("stid", ModelConfig(context="daily"))
    with pytest.raises(GpdiffError, match="carry none"):
        model.forward(model.init(2), b)
