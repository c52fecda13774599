"""gpdiff.models.config: the run config's model: section and the pretrained folder's architecture record."""

from __future__ import annotations

import pytest

from gpdiff.diffusion.pretrained import ARCHITECTURE
from gpdiff.models.config import BaseModelConfig


def test_a_pretrained_folder_records_every_key_of_the_architecture() -> None:
    """The folder format fixes the record's keys (ARCHITECTURE); a new field of the model: section that is
    not added there would be lost on save."""
    assert tuple(BaseModelConfig().architecture()) == ARCHITECTURE


@pytest.mark.parametrize("record", [
    {"model": "stgcn", "preset": "small", "in_channels": 2, "residual": "none"},
    {"model": "stid", "preset": "paper", "in_channels": 1, "residual": "seasonal"},
])
def test_the_architecture_record_round_trips(record) -> None:
    assert BaseModelConfig.from_architecture(record).architecture() == record
