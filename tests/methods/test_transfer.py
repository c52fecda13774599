"""transfer and transfer_zero_shot: every target node starts from the anchor's parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpdiff.methods import transfer
from gpdiff.methods.adapt import forecast
from gpdiff.utils.errors import GpdiffError
from tests.methods.conftest import recording_finetune


@pytest.fixture
def anchor(method_parts) -> torch.Tensor:
    """An anchor unlike every zoo row and unlike their mean."""
    model = method_parts[0]
    return torch.linspace(-1, 1, model.n_params)


def test_transfer_starts_every_target_node_from_the_anchor(method_parts, make_context, anchor,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    target = method_parts[4]
    seen = recording_finetune(monkeypatch, transfer)
    result = transfer.run(make_context(anchor=anchor))
    expected = anchor.expand(target.n_nodes, -1)
    assert len(seen) == 1 and torch.equal(seen[0], expected) and torch.equal(result.params, expected)


def test_transfer_zero_shot_forecasts_with_the_anchor_as_it_is(method_parts, make_context, anchor) -> None:
    model, target = method_parts[0], method_parts[4]
    result = transfer.run_zero_shot(make_context(anchor=anchor))
    expected = anchor.expand(target.n_nodes, -1)
    assert torch.equal(result.params, expected)
    np.testing.assert_array_equal(result.pred, forecast(model, expected.clone(), target))


def test_transfer_without_an_anchor_is_named(make_context) -> None:
    with pytest.raises(GpdiffError, match="the transfer methods need the anchor"):
        transfer.run(make_context())
