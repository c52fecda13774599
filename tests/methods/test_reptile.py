"""reptile: the meta-learned start begins at the zoo's shared initialisation and moves towards the mean of the
adapted parameters with a step annealed to zero; every target node starts from it."""

from __future__ import annotations

import pytest
import torch

from gpdiff.methods import reptile
from gpdiff.methods.adapt import shared_init
from tests.methods.conftest import ZOO_SEED, recording_finetune


def test_without_inner_learning_the_start_is_the_zoos_shared_init(method_parts, make_context,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    model, _, _, _, target = method_parts
    seen = recording_finetune(monkeypatch, reptile)
    options = {"max_steps": 2, "nodes_per_step": 4, "inner_steps": 1, "inner_lr": 1e-30, "batch_size": 4}
    result = reptile.run(make_context(options=options))
    start = shared_init(model, ZOO_SEED)  # the zoo's seed (3), not the run's (0)
    assert not torch.equal(start, shared_init(model, 0))
    assert len(seen) == 1 and torch.equal(result.params, seen[0])
    torch.testing.assert_close(seen[0], start.expand(target.n_nodes, -1), rtol=0, atol=1e-6)


def test_each_meta_step_moves_towards_the_mean_of_the_adapted_nodes(method_parts, make_context,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An inner step that puts drawn node i at theta + i: the mean of n of them is theta + (n - 1) / 2, so
    two meta steps of size 1 and 1/2 (meta_lr 1 annealed) end at shared init + 1.5 (n - 1) / 2."""
    model = method_parts[0]
    drawn = []

    def adam_update(params, grads, m1, m2, step, lr):  # type: ignore[no-untyped-def]
        (phi,) = params
        drawn.append(phi.shape[0])
        phi.copy_(phi + torch.arange(phi.shape[0], dtype=phi.dtype).unsqueeze(1))

    monkeypatch.setattr(reptile, "adam_update", adam_update)
    cfg = reptile.ReptileConfig(max_steps=2, nodes_per_step=4, inner_steps=1, batch_size=4, meta_lr=1.0)
    theta = reptile.meta_learn(make_context().source_side(), cfg)
    assert len(drawn) == 2 and drawn[0] == drawn[1] >= 2
    expected = shared_init(model, ZOO_SEED) + 1.5 * (drawn[0] - 1) / 2
    torch.testing.assert_close(theta, expected, rtol=0, atol=1e-5)
