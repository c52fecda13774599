"""The source pool: city-balanced weights and the draws of nodes by city."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.sourcepool import SourcePool, city_weights, row_weights

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ balanced sampling
def test_city_weights_and_row_weights_are_exact() -> None:
    np.testing.assert_allclose(city_weights([675, 66, 80], "city"), [1 / 3] * 3)
    np.testing.assert_allclose(city_weights([3, 1], "proportional"), [0.75, 0.25])
    w = row_weights(["a", "a", "a", "b"], "city")
    torch.testing.assert_close(w, torch.tensor([1 / 6, 1 / 6, 1 / 6, 1 / 2], dtype=torch.float64))
    torch.testing.assert_close(row_weights(["a", "a", "b"], "proportional"), torch.full((3,), 1 / 3, dtype=torch.float64))
    with pytest.raises(GpdiffError, match="balance"):
        city_weights([1, 2], "even")


@pytest.mark.parametrize("balance, expected", [("city", [0.5, 0.5]), ("proportional", [6 / 11, 5 / 11])],
                         ids=["city", "proportional"])
def test_source_pool_draws_cities_by_balance(setup, balance: str, expected: list[float]) -> None:
    _, model, data = setup
    pool = SourcePool(data, model.config.in_channels, balance)
    drawn = pool.draw_nodes(4000, torch.Generator().manual_seed(0))
    counts = np.array([sum(int(n.numel()) for c, n in drawn if c == i) for i in range(2)])
    np.testing.assert_allclose(counts / counts.sum(), expected, atol=0.03)
