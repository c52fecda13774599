"""Per-node standard scaling, fitted on a training segment only.

Crowd flow differs by orders of magnitude between cities and nodes, so every node and channel gets
its own mean and standard deviation, computed from the observed training values alone. Validation
and test values never touch the statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gpdiff.data.city import City
from gpdiff.data.splits import Segment

MIN_STD = 1e-3


@dataclass
class NodeScaler:
    mean: np.ndarray  # [N, C]
    std: np.ndarray  # [N, C]

    @classmethod
    def fit(cls, city: City, segment: Segment) -> NodeScaler:
        vals = city.values[segment.as_slice()].astype(np.float64)  # [t, N, C]
        obs = np.ones(vals.shape, dtype=bool)
        obs[:, :, 0] = city.mask[segment.as_slice()]
        cnt = obs.sum(axis=0)
        safe = np.maximum(cnt, 1)
        mean = np.where(obs, vals, 0.0).sum(axis=0) / safe
        var = np.where(obs, (vals - mean) ** 2, 0.0).sum(axis=0) / safe
        std = np.sqrt(var)
        # A node with no training observation (or a constant series) keeps unit scale around its mean.
        std = np.where((cnt < 2) | (std < MIN_STD), 1.0, std)
        return cls(mean.astype(np.float32), std.astype(np.float32))

    def transform(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Scale ``[T, N, C]``; missing channel-0 values (``mask`` False) become 0 (the mean)."""
        out = ((values - self.mean) / self.std).astype(np.float32)
        if mask is not None:
            out[:, :, 0] = np.where(mask, out[:, :, 0], 0.0)
        return out

    def inverse_target(self, scaled: np.ndarray, nodes: np.ndarray | None = None) -> np.ndarray:
        """Undo the scaling of channel 0. ``scaled[..., n]`` broadcast over the node axis last,
        or pass ``nodes`` (indices) aligned with the leading axis of ``scaled``."""
        mean, std = self.mean[:, 0], self.std[:, 0]
        if nodes is not None:
            shape = (-1,) + (1,) * (scaled.ndim - 1)
            return scaled * std[nodes].reshape(shape) + mean[nodes].reshape(shape)
        return scaled * std + mean
