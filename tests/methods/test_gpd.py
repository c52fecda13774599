"""gpd and gpd_zero_shot: the generated start, and ``methods.gpd.shrinkages`` shrinking it toward the anchor
node by node on the few-shot windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpdiff.methods import check_settings, gpd
from gpdiff.methods.adapt import forecast
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.nodetrain import validation_loss
from gpdiff.zoo.params import ParamCollection, unflatten
from tests.methods.conftest import recording_finetune


@pytest.fixture
def generated(method_parts) -> ParamCollection:
    model, target = method_parts[0], method_parts[4]
    g = torch.Generator().manual_seed(21)
    rows = 0.1 * torch.randn(target.n_nodes, model.n_params, generator=g)
    return ParamCollection(rows, list(target.city.node_ids), [target.city.name] * target.n_nodes, model.name,
                           model.config.to_dict(), model.spec())


@pytest.fixture
def anchor(method_parts) -> torch.Tensor:
    return 0.05 * torch.linspace(-1, 1, method_parts[0].n_params)


def _train_loss(model, params: torch.Tensor, target) -> torch.Tensor:
    n = target.n_nodes
    return validation_loss(model, unflatten(params, model.spec()), np.arange(n), [target], np.zeros(n, dtype=np.int64),
                           np.arange(n), 512, 64, "train")


def test_gpd_starts_from_the_generated_parameters_by_default(method_parts, make_context, generated, anchor,
                                                             monkeypatch) -> None:
    seen = recording_finetune(monkeypatch, gpd)
    result = gpd.run_finetuned(make_context(generated=generated, anchor=anchor))
    assert torch.equal(seen[0], generated.params) and result.notes == {}
    zero = gpd.run_zero_shot(make_context(generated=generated, options={}))
    np.testing.assert_array_equal(zero.pred, forecast(method_parts[0], generated.params.clone(), method_parts[4]))


def test_shrinkage_zero_is_the_anchor_and_one_the_generated_start(make_context, generated, anchor,
                                                                  monkeypatch) -> None:
    seen = recording_finetune(monkeypatch, gpd)
    gpd.run_finetuned(make_context(generated=generated, anchor=anchor, options={"shrinkages": [0.0]}))
    assert torch.equal(seen[0], anchor.expand(len(generated.params), -1))
    result = gpd.run_finetuned(make_context(generated=generated, anchor=anchor, options={"shrinkages": [1.0, 2.0]}))
    assert result.notes["settings"]["shrinkages"] == [1.0, 2.0]


def test_each_node_gets_the_candidate_with_the_lowest_few_shot_loss(method_parts, make_context, generated, anchor,
                                                                   monkeypatch) -> None:
    """Node 0's generated row is poisoned (far off): it takes the anchor; every node's choice is the argmin of
    the candidates' losses on its own training windows, computed here independently."""
    model, target = method_parts[0], method_parts[4]
    rows = generated.params.clone()
    rows[0] += 50.0
    poisoned = ParamCollection(rows, generated.node_ids, generated.cities, model.name, model.config.to_dict(),
                               model.spec())
    shrinkages = [0.0, 0.5, 1.0]
    seen = recording_finetune(monkeypatch, gpd)
    result = gpd.run_finetuned(make_context(generated=poisoned, anchor=anchor, options={"shrinkages": shrinkages}))
    candidates = [anchor + s * (rows - anchor) for s in shrinkages]
    losses = torch.stack([_train_loss(model, c, target) for c in candidates])  # [S, N]
    best = losses.argmin(0)
    assert int(best[0]) == 0
    expected = torch.stack([candidates[int(b)][i] for i, b in enumerate(best)])
    torch.testing.assert_close(seen[0], expected, rtol=0, atol=1e-6)
    counts = result.notes["shrinkage_nodes"]
    assert sum(counts.values()) == target.n_nodes and counts["0"] >= 1
    assert result.notes["shrinkage_mean"] == pytest.approx(float(torch.tensor(shrinkages)[best].mean()), abs=1e-4)
    start, chosen, loss = gpd.shrunk_start(model, rows, anchor, target, shrinkages)
    assert torch.equal(start, seen[0]) and torch.equal(loss, losses)  # deterministic
    assert torch.equal(chosen, torch.tensor(shrinkages)[best])


def test_shrinkages_without_an_anchor_or_with_bad_values_are_named(make_context, generated) -> None:
    with pytest.raises(GpdiffError, match="shrinks toward the anchor, and this run has none"):
        gpd.run_finetuned(make_context(generated=generated, options={"shrinkages": [0.0, 1.0]}))
    for bad in ([], [-0.5, 1.0], [0.5, 0.5], [float("nan")], [float("inf")]):
        with pytest.raises(GpdiffError, match="methods.gpd.shrinkages must be distinct finite values >= 0"):
            check_settings("gpd", {"shrinkages": bad})
    with pytest.raises(GpdiffError, match="methods.gpd.windows"):
        check_settings("gpd", {"windows": 0})
    with pytest.raises(GpdiffError, match="gpd_zero_shot' takes no settings"):
        check_settings("gpd_zero_shot", {"shrinkages": [0.0]})
