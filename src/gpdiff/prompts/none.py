"""``none`` prompts: all ones, the same for every node (the ablations without a prompt).

The released GPD code uses all-ones spatial prompts for traffic data; ``none`` as the temporal
encoder removes the temporal prompt the same way. Both are registered in :mod:`gpdiff.prompts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gpdiff.data.city import City
from gpdiff.data.splits import Segment
from gpdiff.prompts.base import PromptEncoder
from gpdiff.utils.config import require_at_least_one


@dataclass
class NoneConfig:
    dim: int = 32  # prompt width, >= 1

    def __post_init__(self) -> None:
        require_at_least_one(self, ("dim",), "prompt config ")


class NoneEncoder(PromptEncoder):
    """``none`` spatial prompts: all ones (the released GPD code's choice for traffic), for the ablation."""

    kind = "spatial"
    name = "none"
    config_class = NoneConfig

    @property
    def dim(self) -> int:
        return self.config.dim

    def _fit(self, cities: Sequence[City], segments: Sequence[Segment], progress: bool) -> None:
        self.info = {"cities": [c.name for c in cities]}

    def encode(self, city: City, segment: Segment | None = None) -> tuple[np.ndarray, list[str]]:
        self._require_fitted()
        return np.ones((city.n_nodes, self.dim), dtype=np.float32), []

    def state(self) -> dict[str, torch.Tensor]:
        return {"dim": torch.tensor([self.dim])}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        pass


class NoneTemporalEncoder(NoneEncoder):
    """``none`` temporal prompts: all ones, for the ablation without a temporal prompt."""

    kind = "temporal"
