"""The batched per-node trainer: Adam, early stopping, identity checks, prediction."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpdiff.data.splits import source_split
from gpdiff.data.windows import CityData
from gpdiff.models import ModelConfig, get_model
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import load_tensors
from gpdiff.zoo.checkpoint import CHECKPOINT, TrainState
from gpdiff.zoo.nodetrain import NodeTrainConfig, NodeTrainer, adam_update, masked_node_mae

pytestmark = pytest.mark.usefixtures("one_thread")


def test_adam_update_equals_torch_optim_adam():
    """The hand-vectorised update (on stacked per-node tensors) is torch.optim.Adam, step for step."""
    gen = torch.Generator().manual_seed(0)
    shapes = [(5, 3, 4), (5, 7)]
    ours = [torch.randn(s, generator=gen) for s in shapes]
    theirs = [p.clone().requires_grad_() for p in ours]
    opt = torch.optim.Adam(theirs, lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    m1 = [torch.zeros_like(p) for p in ours]
    m2 = [torch.zeros_like(p) for p in ours]
    for step in range(1, 8):
        grads = [torch.randn(s, generator=gen) * (step % 3 + 0.1) for s in shapes]
        adam_update(ours, grads, m1, m2, step, 0.01)
        for p, g in zip(theirs, grads):
            p.grad = g.clone()
        opt.step()
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b.detach(), rtol=1e-6, atol=1e-7)
    for a, b in zip(m2, theirs):
        torch.testing.assert_close(a, opt.state[b]["exp_avg_sq"], rtol=1e-6, atol=0)


def _trainer(city, out, max_epochs: int, patience: int = 1, seed: int = 0) -> NodeTrainer:
    model = get_model("stid", ModelConfig(history=12, horizon=3, ego_size=4))
    data = CityData(city, source_split(city.n_steps), history=12, horizon=3, n_neighbors=3)
    cfg = NodeTrainConfig(max_epochs=max_epochs, patience=patience, steps_per_epoch=2, batch_size=8, val_windows=16,
                          lr=0.05)
    init = model.init(city.n_nodes, seed=0, shared=True)
    return NodeTrainer(model, [data], cfg, init, out, seed=seed, progress=False)


def test_early_stopping_keeps_the_best_parameters(two_source_cities, tmp_path):
    """After training, every node holds the parameters of its lowest validation loss over all epochs
    (the initial parameters included), and that loss is what the result reports."""
    city = two_source_cities[0]
    first = _trainer(city, tmp_path, max_epochs=1, patience=3)
    history = [first._validate(first.init, np.arange(city.n_nodes))]  # per epoch: every node's validation loss
    for epochs in range(1, 7):  # resuming one epoch at a time gives the same run as training straight through
        trainer = _trainer(city, tmp_path, max_epochs=epochs, patience=3)
        result = trainer.run()
        state, _ = TrainState.load(tmp_path / CHECKPOINT, torch.device("cpu"))
        if state.epoch < epochs:
            break  # every node has stopped
        current = trainer._validate(state.params, np.arange(city.n_nodes))
        # a node that stopped earlier keeps its frozen parameters, whose loss is re-measured identically
        history.append(current)
    losses = torch.stack(history)  # [epochs + 1, N]
    best = losses.min(0)
    torch.testing.assert_close(result.val_loss, best.values, rtol=0, atol=1e-6)
    assert torch.equal(result.best_epoch.long(), best.indices)
    kept = trainer._validate(result.params, np.arange(city.n_nodes))
    torch.testing.assert_close(kept, result.val_loss, rtol=0, atol=1e-6)
    assert (result.best_epoch > 0).any()  # training improved on the initial parameters somewhere


def test_resume_refuses_another_setup(two_source_cities, tmp_path):
    city = two_source_cities[0]
    _trainer(city, tmp_path, max_epochs=1).run()
    with pytest.raises(GpdiffError, match="seed: 0 -> 1"):
        _trainer(city, tmp_path, max_epochs=2, seed=1).run()
    tensors, meta = load_tensors(tmp_path / CHECKPOINT)
    assert meta["epoch"] == 1 and meta["identity"]["seed"] == 0  # the refused run wrote nothing


def test_initial_parameters_must_match_the_nodes(two_source_cities, tmp_path):
    city = two_source_cities[0]
    model = get_model("stid", ModelConfig(history=12, horizon=3, ego_size=4))
    data = CityData(city, source_split(city.n_steps), history=12, horizon=3, n_neighbors=3)
    with pytest.raises(GpdiffError, match="do not match 6 nodes"):
        NodeTrainer(model, [data], NodeTrainConfig(), model.init(city.n_nodes - 1, seed=0), tmp_path)


def test_masked_node_mae_ignores_missing_targets():
    pred = torch.tensor([[[1.0, 2.0]], [[0.0, 0.0]]])
    y = torch.tensor([[[0.0, 0.0]], [[3.0, 5.0]]])
    mask = torch.tensor([[[True, False]], [[False, False]]])
    assert torch.equal(masked_node_mae(pred, y, mask), torch.tensor([1.0, 0.0]))


def test_bad_trainer_config_is_named():
    with pytest.raises(GpdiffError, match="NodeTrainConfig: patience must be at least 1"):
        NodeTrainConfig(patience=0)


def test_a_damaged_checkpoint_is_not_trusted(two_source_cities, tmp_path):
    """A truncated checkpoint (a crash while a copy was made, a full disk) starts the training afresh."""
    city = two_source_cities[0]
    fresh = _trainer(city, tmp_path / "a", max_epochs=2).run()
    _trainer(city, tmp_path / "b", max_epochs=1).run()
    data = (tmp_path / "b" / CHECKPOINT).read_bytes()
    (tmp_path / "b" / CHECKPOINT).write_bytes(data[: len(data) // 2])
    again = _trainer(city, tmp_path / "b", max_epochs=2).run()
    torch.testing.assert_close(again.val_loss, fresh.val_loss)
    assert TrainState.load(tmp_path / "b" / CHECKPOINT, torch.device("cpu"))[0].epoch == 2
