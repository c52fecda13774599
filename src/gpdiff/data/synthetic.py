"""Tiny synthetic cities for tests, examples and sanity checks.

Every node's series is a daily profile (a morning and an evening peak with node-specific heights),
a weekly modulation, spatially smooth node effects and AR(1) noise; the graph is a Gaussian-kernel
kNN graph on random coordinates, and neighbouring nodes have similar profiles, so graph models have
something to use.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from gpdiff.data.city import City
from gpdiff.data.graph import gaussian_knn_adjacency


def synthetic_city(name: str = "synth", n_nodes: int = 12, days: float = 14, interval_minutes: int = 60,
                   seed: int = 0, kind: str = "flow", missing: float = 0.0, k: int = 4,
                   start: str = "2024-01-01") -> City:
    rng = np.random.default_rng(seed)
    spd = 1440 // interval_minutes
    t = np.arange(int(round(days * spd)))
    coords = rng.uniform(0, 10_000, size=(n_nodes, 2))  # metres
    adj = gaussian_knn_adjacency(coords, k=min(k, n_nodes - 1), latlon=False)
    # node effects smoothed over the graph so neighbours look alike
    smooth = adj + np.eye(n_nodes)
    smooth /= smooth.sum(1, keepdims=True)
    eff = rng.normal(size=(n_nodes, 3))
    for _ in range(3):
        eff = smooth @ eff
    level = 50 + 30 * np.abs(eff[:, 0])
    morning, evening = 0.5 + np.abs(eff[:, 1]), 0.5 + np.abs(eff[:, 2])
    hour = (t % spd) / spd * 24
    prof = (morning[None, :] * np.exp(-((hour[:, None] - 8) ** 2) / 4)
            + evening[None, :] * np.exp(-((hour[:, None] - 18) ** 2) / 6))
    dow = ((t // spd) % 7)
    week = np.where(dow >= 5, 0.6, 1.0)[:, None]
    noise = np.zeros((t.size, n_nodes))
    e = rng.normal(scale=0.05, size=(t.size, n_nodes))
    for i in range(1, t.size):
        noise[i] = 0.7 * noise[i - 1] + e[i]
    values = level[None, :] * (0.3 + week * prof + noise)
    if kind == "flow":
        values = np.maximum(np.round(values), 0)
    mask = np.ones(values.shape, dtype=bool)
    if missing > 0:
        mask &= rng.random(values.shape) >= missing
        mask[0] = True  # every node keeps at least one observation
    values = np.where(mask, values, 0.0)
    return City(
        name=name, values=values[:, :, None].astype(np.float32), mask=mask, start=pd.Timestamp(start),
        interval_minutes=interval_minutes, adjacency=adj, kind=kind,
        units="vehicles/h" if kind == "flow" else "mph", node_ids=[f"n{i}" for i in range(n_nodes)],
        channels=["target"], coords=coords, coord_kind="xy", source=f"synthetic(seed={seed})",
    )
