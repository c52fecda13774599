"""mean_params: every target node starts from the mean of the zoo's parameter vectors."""

from __future__ import annotations

import pytest
import torch

from gpdiff.methods import mean_params
from tests.methods.conftest import recording_finetune


def test_every_target_node_starts_from_the_mean_of_the_zoo(method_parts, make_context,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    _, _, zoo, _, target = method_parts
    seen = recording_finetune(monkeypatch, mean_params)
    result = mean_params.run(make_context())
    mean = torch.stack([zoo.params[i] for i in range(len(zoo))]).sum(0) / len(zoo)  # row by row, not .mean(0)
    assert len(seen) == 1 and torch.equal(result.params, seen[0])  # the recording fine-tuning returns its start
    assert seen[0].shape == (target.n_nodes, zoo.params.shape[1])
    torch.testing.assert_close(seen[0], mean.expand(target.n_nodes, -1), rtol=0, atol=1e-6)
    assert not torch.allclose(seen[0][0], zoo.params[0])  # not a row of the zoo
