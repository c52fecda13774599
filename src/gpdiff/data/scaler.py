"""Per-node standard scaling, fitted on a training segment only.

Crowd flow differs by orders of magnitude between cities and nodes, so every node and channel gets
its own mean and standard deviation, computed from the observed training values alone. Validation
and test values never touch the statistics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from gpdiff.data.city import City
from gpdiff.data.splits import Segment

MIN_STD = 1e-3
TARGET_SCALE_FLOOR = 0.05  # a few-shot target node's std >= this x the pooled std (RunConfig / ForecasterConfig)


@dataclass
class NodeScaler:
    mean: np.ndarray  # [N, C]
    std: np.ndarray  # [N, C]
    # What :meth:`fit` worked around, per node of the target channel (``[N]`` bool; None when not fitted here):
    # no observation in the segment (pooled mean and std), fewer than 2 or constant (pooled std around its
    # own mean), std raised to ``min_rel_std`` x the pooled one. The run report names these nodes.
    unobserved: np.ndarray | None = field(default=None, compare=False, repr=False)
    pooled_std: np.ndarray | None = field(default=None, compare=False, repr=False)
    floored: np.ndarray | None = field(default=None, compare=False, repr=False)

    @classmethod
    def fit(cls, city: City, segment: Segment, min_rel_std: float = 0.0) -> NodeScaler:
        """Per-node statistics of the observed values in ``segment``.

        A node with fewer than 2 observations there, or a (near-)constant series, has no usable
        scale of its own (its later values would be scaled by 1, i.e. left in raw units, and flood
        every neighbour's graph convolution). It gets the city's pooled standard deviation over all
        observed values of the segment, and its own mean where it has one (else the pooled mean).
        ``min_rel_std`` floors every node's std at that fraction of the pooled std. It is for
        few-shot targets: with a few days of data a sensor can look almost idle (a pedestrian
        counter reading 0-6 for three days in melbourne-ped, against a city std of 550) and then
        read hundreds, hundreds of its own standard deviations, which no model survives. Sources,
        with months of training data, keep 0: there a small std is real (a quiet taxi-grid cell),
        and flooring it costs accuracy.
        """
        vals = city.values[segment.as_slice()].astype(np.float64)  # [t, N, C]
        obs = np.ones(vals.shape, dtype=bool)
        obs[:, :, 0] = city.mask[segment.as_slice()]
        cnt = obs.sum(axis=0)
        safe = np.maximum(cnt, 1)
        sums = np.where(obs, vals, 0.0).sum(axis=0)  # [N, C]
        mean = sums / safe
        var = np.where(obs, (vals - mean) ** 2, 0.0).sum(axis=0) / safe
        std = np.sqrt(var)
        total = np.maximum(cnt.sum(axis=0), 1)  # [C]
        pooled_mean = sums.sum(axis=0) / total
        pooled_std = np.sqrt(np.where(obs, (vals - pooled_mean) ** 2, 0.0).sum(axis=(0, 1)) / total)
        pooled_std = np.where(pooled_std < MIN_STD, 1.0, pooled_std)
        mean = np.where(cnt == 0, pooled_mean, mean)
        no_scale = (cnt < 2) | (std < MIN_STD)
        floored = ~no_scale & (std < min_rel_std * pooled_std)
        std = np.where(no_scale, pooled_std, np.maximum(std, min_rel_std * pooled_std))
        return cls(mean.astype(np.float32), std.astype(np.float32), unobserved=cnt[:, 0] == 0,
                   pooled_std=no_scale[:, 0], floored=floored[:, 0])

    def transform(self, values: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
        """Scale ``[T, N, C]``; missing channel-0 values (``mask`` False) become 0 (the mean)."""
        out = ((values - self.mean) / self.std).astype(np.float32)
        if mask is not None:
            out[:, :, 0] = np.where(mask, out[:, :, 0], 0.0)
        return out

    def inverse_transform(self, scaled: np.ndarray, nodes: np.ndarray | None = None) -> np.ndarray:
        """Undo the scaling of channel 0, the forecasting target (the sklearn / tsl name).

        ``scaled[..., n]`` is broadcast over the node axis last, or pass ``nodes`` (indices)
        aligned with the leading axis of ``scaled``."""
        mean, std = self.mean[:, 0], self.std[:, 0]
        if nodes is not None:
            shape = (-1,) + (1,) * (scaled.ndim - 1)
            return scaled * std[nodes].reshape(shape) + mean[nodes].reshape(shape)
        return scaled * std + mean
