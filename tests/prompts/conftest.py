"""Fixtures of the prompt tests: two small cities (hourly and 10-minute) and the prompt encoders fitted on them,
fitted once for the whole tests/prompts package."""

from __future__ import annotations

import pytest

from gpdiff.data import City
from gpdiff.data.synthetic import synthetic_city
from gpdiff.prompts import PromptEncoders, PromptsConfig, fit_prompts

TINY_MASKED_PATCH = {"max_steps": 12, "d_model": 16, "n_heads": 2, "ff_dim": 32, "batch_size": 16, "days": 2}


def city_with(city: City, **kw) -> City:
    """A copy of ``city`` with some fields replaced (validated again)."""
    fields = {"name": city.name, "values": city.values.copy(), "mask": city.mask.copy(), "start": city.start,
              "interval_minutes": city.interval_minutes, "adjacency": city.adjacency, "kind": city.kind,
              "units": city.units, "node_ids": list(city.node_ids), "channels": list(city.channels),
              "coords": city.coords, "coord_kind": city.coord_kind, "attributes": city.attributes,
              "attribute_names": list(city.attribute_names)}
    fields.update(kw)
    return City(**fields)


@pytest.fixture(scope="package")
def cities() -> list[City]:
    return [synthetic_city("hourly", n_nodes=10, days=12, interval_minutes=60, seed=0),
            synthetic_city("tenmin", n_nodes=7, days=8, interval_minutes=10, seed=1)]


@pytest.fixture(scope="package")
def encoders(cities) -> PromptEncoders:
    return fit_prompts(cities, PromptsConfig(temporal_config=TINY_MASKED_PATCH), progress=False)


@pytest.fixture(scope="package")
def stats_encoders(cities) -> PromptEncoders:
    return fit_prompts(cities, PromptsConfig("stats", "none"), progress=False)
