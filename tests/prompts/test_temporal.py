"""The temporal encoders: short inputs, outages at a segment's end, patches that mean the same at any interval,
segments shorter than one patch."""

import numpy as np
import pytest
import torch

from gpdiff.data.splits import Segment
from gpdiff.data.synthetic import synthetic_city
from gpdiff.prompts.temporal import patchify
from gpdiff.utils.errors import GpdiffError
from tests.prompts.conftest import city_with


@pytest.mark.parametrize("steps", [30, 6, 1], ids=["over-a-day", "quarter-day", "one-patch"])
def test_short_inputs_work_and_are_noted(encoders, steps):
    city = synthetic_city("target", n_nodes=5, days=10, interval_minutes=60, seed=3)
    ps = encoders.encode(city, Segment(city.n_steps - steps, city.n_steps))
    assert ps.temporal.shape == (5, 32) and torch.isfinite(ps.temporal).all()
    assert any("shorter than" in n for n in ps.meta["notes"])


def test_outage_at_segment_end_uses_an_earlier_window(encoders):
    city = synthetic_city("outage", n_nodes=4, days=12, interval_minutes=60, seed=2)
    seg = Segment(0, 200)
    mask = city.mask.copy()
    mask[150:200, 1] = False  # node n1 is dark for the last two days of the segment
    ps = encoders.encode(city_with(city, mask=mask), seg)
    assert any("earlier window" in n and "n1" in n for n in ps.meta["notes"])
    ref = encoders.encode(city, seg)
    assert torch.equal(ps.temporal[0], ref.temporal[0]) and not torch.equal(ps.temporal[1], ref.temporal[1])


def test_patches_mean_the_same_at_any_interval():
    rng = np.random.default_rng(0)
    hourly = rng.normal(size=(3, 48))
    tenmin = np.repeat(hourly, 6, axis=1)  # the same signal, held over 10-minute steps
    a = patchify(hourly, np.ones_like(hourly, bool), 0, 60, 60, 12)
    b = patchify(tenmin, np.ones_like(tenmin, bool), 0, 10, 60, 12)
    np.testing.assert_allclose(a.x, b.x, atol=1e-6)
    np.testing.assert_array_equal(a.t, b.t)
    assert a.x.shape == (3, 48, 12)


def test_segment_shorter_than_one_patch(encoders):
    city = synthetic_city("gappy", n_nodes=4, days=6, interval_minutes=10, seed=4)
    with pytest.raises(GpdiffError, match="shorter than one patch"):
        encoders.encode(city, Segment(city.n_steps - 3, city.n_steps))
