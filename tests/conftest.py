"""Fixtures shared by several test modules: thread settings and small synthetic cities."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpdiff.data.city import City
from gpdiff.data.synthetic import synthetic_city


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: these tensors are tiny, and on a shared CPU extra threads only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def two_channel(city: City) -> City:
    """The same city with an extra input channel (cities with different channels share one zoo)."""
    values = np.concatenate([city.values, city.values * 0.5], axis=2)
    return City(name=city.name, values=values, mask=city.mask, start=city.start,
                interval_minutes=city.interval_minutes, adjacency=city.adjacency, kind=city.kind,
                units=city.units, node_ids=city.node_ids, channels=["target", "half"], coords=city.coords,
                coord_kind=city.coord_kind)


@pytest.fixture(scope="session")
def two_source_cities() -> list[City]:
    """Two tiny source cities of different size, interval (1 h, 30 min) and channel count (1, 2)."""
    return [synthetic_city("alpha", n_nodes=6, days=8, seed=0, k=3),
            two_channel(synthetic_city("beta", n_nodes=5, days=6, interval_minutes=30, seed=1, k=2))]


@pytest.fixture(scope="session")
def small_city() -> City:
    """A tiny hourly city (5 nodes, 3 days, 72 steps) with about 7 % of its values missing.
    Shared by the whole session: do not modify it."""
    return synthetic_city("small", n_nodes=5, days=3, missing=0.1)


@pytest.fixture
def month_city() -> City:
    """A 4-node hourly city of 20 days, long enough for a few-shot target split (days of training,
    a validation day, a test period). A fresh copy per test, so a test may modify it."""
    return synthetic_city("month", n_nodes=4, days=20, seed=1)
