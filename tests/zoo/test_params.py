"""The parameter collection's standardiser: per coordinate, per tensor, centred or not, and its older saved format."""

from __future__ import annotations

import pytest
import torch

from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.params import Standardizer

pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ residual generation
def test_standardizer_per_coordinate_and_uncentred_round_trip() -> None:
    from gpdiff.models.base import ParamSpec

    spec = [ParamSpec("a", (3, 2), "temporal"), ParamSpec("b", (4,), "temporal")]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 10, generator=g) * torch.linspace(1, 5, 10) + 3
    for per in Standardizer.PER:
        for center in (True, False):
            s = Standardizer.fit(x, spec, per, center)
            torch.testing.assert_close(s.inverse_transform(s.transform(x)), x)
            if not center:
                assert torch.equal(s.inverse_transform(torch.zeros(1, 10)), torch.zeros(1, 10))
    z = Standardizer.fit(x, spec, "coordinate").transform(x)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(10), atol=1e-4, rtol=0)
    still = x.clone()
    still[:, 0] = 3.0  # a coordinate that never moves gets COORD_FLOOR x its tensor's scale, not ~0
    floor = Standardizer.fit(still, spec, "coordinate")
    tensor_scale = float((still[:, :6] - still[:, :6].mean(0)).square().mean().sqrt())
    assert float(floor.std[0]) == pytest.approx(Standardizer.COORD_FLOOR * tensor_scale, rel=1e-5)
    t = Standardizer.fit(x, spec, "tensor").transform(x)
    assert abs(float(t[:, :6].std(unbiased=False)) - 1) < 1e-4 and abs(float(t[:, :6].std(0).std())) > 0.1
    old = {"std_mean": torch.tensor([1.0, 2.0]), "std_std": torch.tensor([3.0, 4.0]), "std_sizes": torch.tensor([6, 4])}
    loaded = Standardizer.from_state(old)  # the per-tensor format written before
    assert loaded.mean.tolist() == [1.0] * 6 + [2.0] * 4 and loaded.std.tolist() == [3.0] * 6 + [4.0] * 4
    with pytest.raises(GpdiffError, match="unknown standardisation"):
        Standardizer.fit(x, spec, "node")
