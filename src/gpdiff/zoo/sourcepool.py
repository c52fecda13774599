"""Random training windows from random nodes of the source cities.

The pooled models (the anchor of :mod:`gpdiff.zoo.anchor`, Reptile's meta-learned initialisation) train
on windows of many source nodes at once. Which nodes a step sees matters when cities differ in
size: the bundled sources are dominated by one sparse city (montevideo-bus is 675 of the default
run's 883 source nodes), so drawing nodes in proportion to city size lets it decide what the pooled
model learns. ``balance="city"`` (the default) gives every city the same share of draws;
``"proportional"`` draws every node equally often.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from gpdiff.data.city import City
from gpdiff.data.splits import SourceSplit
from gpdiff.data.windows import CityData, WindowBatch, WindowConfig
from gpdiff.models import BaseModel, require_graph
from gpdiff.utils.errors import GpdiffError, unknown_name
from gpdiff.zoo.nodelayout import concat_batches

BALANCES = ("city", "proportional")


def city_weights(sizes: np.ndarray | list[int], balance: str) -> np.ndarray:
    """The probability of drawing each city ``[n_cities]``: equal (``city``) or by node count
    (``proportional``)."""
    if balance not in BALANCES:
        raise unknown_name("balance", balance, BALANCES)
    s = np.asarray(sizes, dtype=np.float64)
    if s.size == 0 or (s <= 0).any():
        raise GpdiffError(f"every source city needs at least one node, got sizes {s.tolist()}.")
    w = np.ones_like(s) if balance == "city" else s
    return w / w.sum()


def locate_rows(data: list[CityData], keys: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    """Where each row's node lies in ``data``: its city's position ``[n]`` and the node's index in
    that city ``[n]``, for rows named by ``keys`` ((city, node id) per row, repeats allowed).
    Raises :class:`GpdiffError` naming the rows whose city was not given or whose node is not in it."""
    names = {d.city.name: c for c, d in enumerate(data)}
    where = [{str(n): i for i, n in enumerate(d.city.node_ids)} for d in data]
    city_row, node_row = np.empty(len(keys), dtype=np.int64), np.empty(len(keys), dtype=np.int64)
    bad = []
    for r, (city, node) in enumerate(keys):
        c = names.get(str(city))
        i = where[c].get(str(node)) if c is not None else None
        if c is None or i is None:
            bad.append(f"{city}/{node} ({'city not given' if c is None else 'not in that city'})")
            continue
        city_row[r], node_row[r] = c, i
    if bad:
        raise GpdiffError(f"{len(bad)} parameter row(s) belong to no node of the source cities given "
                          f"{sorted(names)}: {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}; pass the zoo's "
                          "own cities, from the data it was trained on.")
    return city_row, node_row


def row_weights(cities: list[str], balance: str) -> torch.Tensor:
    """Sampling weight of every row of a collection ``[n]`` whose rows belong to ``cities`` (one
    name per row), such that each city's total is its :func:`city_weights` share."""
    names = list(dict.fromkeys(cities))
    counts = np.array([cities.count(c) for c in names])
    share = dict(zip(names, city_weights(counts, balance) / counts))
    return torch.tensor([share[c] for c in cities], dtype=torch.float64)


class SourcePool:
    """Random windows of random source nodes, cities weighted by ``balance`` (see the module docstring)."""

    def __init__(self, sources: list[CityData], in_channels: int, balance: str = "city") -> None:
        self.sources, self.in_channels = sources, in_channels
        self.sizes = np.array([d.n_nodes for d in sources])
        self.probs = torch.from_numpy(city_weights(self.sizes, balance))
        self.train = [torch.from_numpy(d.origins("train")) for d in sources]
        self.val = [torch.from_numpy(d.origins("val")) for d in sources]

    def draw_nodes(self, n_nodes: int, generator: torch.Generator) -> list[tuple[int, torch.Tensor]]:
        """``n_nodes`` (city index, node indices) pairs: a city by the pool's weights, then a node of it
        uniformly."""
        city = torch.multinomial(self.probs, n_nodes, replacement=True, generator=generator).numpy()
        return [(int(c), torch.randint(int(self.sizes[c]), (int((city == c).sum()),), generator=generator))
                for c in np.unique(city)]

    def batch(self, drawn: list[tuple[int, torch.Tensor]], batch_size: int, generator: torch.Generator,
              segment: str = "train") -> WindowBatch:
        """``batch_size`` random windows of ``segment`` for each drawn node."""
        pools = self.train if segment == "train" else self.val
        parts = []
        for c, nodes in drawn:
            o = pools[c][torch.randint(pools[c].numel(), (nodes.numel(), batch_size), generator=generator)]
            parts.append(self.sources[c].batch(nodes, o))
        return concat_batches(parts, self.in_channels)

    def sample(self, n_nodes: int, batch_size: int, generator: torch.Generator, segment: str = "train"
               ) -> WindowBatch:
        return self.batch(self.draw_nodes(n_nodes, generator), batch_size, generator, segment)


def prepare_cities(cities: Sequence[City], window: WindowConfig, split: SourceSplit, model: BaseModel,
                   device: torch.device | str = "cpu") -> list[CityData]:
    """One :class:`CityData` per source city, split chronologically by ``split``, with the checks that give
    the user a clear error (no or repeated cities, no graph for a graph model, too few windows)."""
    names = [c.name for c in cities]
    if not cities:
        raise GpdiffError("no source cities given; pass at least one with --cities.")
    if len(set(names)) != len(names):
        raise GpdiffError(f"source cities {names} contain duplicates; list every city once.")
    out = []
    for city in cities:
        require_graph(city, model.name)
        data = CityData(city, split.of(city.n_steps, city.name), history=window.history, horizon=window.horizon, n_neighbors=window.n_neighbors,
                        device=device, context=window.context)
        data.require_windows("train")
        data.require_windows("val")
        out.append(data)
    return out
