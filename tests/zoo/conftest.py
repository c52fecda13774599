"""Shared by the zoo tests: the window, a fast zoo config, and two tiny source cities prepared once per module."""
from __future__ import annotations

import pytest

from gpdiff.data.splits import SourceSplit
from gpdiff.data.windows import WindowConfig
from gpdiff.models.config import BaseModelConfig
from gpdiff.zoo.sourcepool import prepare_cities
from gpdiff.zoo.train import ZooConfig

WINDOW = WindowConfig(n_neighbors=3)
ZOO_FAST = {"steps_per_epoch": 3, "batch_size": 16, "val_windows": 16, "node_chunk": 4, "max_epochs": 3}


@pytest.fixture(scope="module")
def cities(two_source_cities):
    return two_source_cities


@pytest.fixture(scope="module")
def setup(cities):
    """A fast zoo config, its model, and the two cities prepared for it."""
    cfg = ZooConfig(**ZOO_FAST)
    model = BaseModelConfig().build(WINDOW)
    return cfg, model, prepare_cities(cities, WINDOW, SourceSplit(), model)
