"""Where each node of a batched per-node training lives (:class:`gpdiff.zoo.nodetrain.NodeTrainer`).

The global node table (the cities' nodes one after another), the order the trainer walks them in
(by city, then by ego-graph size, so that a chunk holds similar nodes and :func:`trim_slots` cuts
most padding), the fixed blocks of ``BLOCK_CHUNKS x chunk`` nodes that are the unit of sharding,
this rank's share of them, and the window batches of any set of rows. Nothing here trains; see
:mod:`gpdiff.zoo.nodetrain` for the rules of blocks, chunks and shards.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from gpdiff.data.windows import CityData, WindowBatch
from gpdiff.utils.errors import GpdiffError

BLOCK_CHUNKS = 4  # chunks per block: the unit of sharding and of compacting the still-training nodes
CPU_CHUNK = 32  # nodes per chunk on a CPU when node_chunk is not set (keeps the working set in cache)


@dataclass(frozen=True)
class NodeLayout:
    """The node table of ``data`` and this rank's blocks (:meth:`build`)."""

    offsets: np.ndarray  # [n_cities + 1] global rows [offsets[c], offsets[c + 1]) are city c's nodes
    node_city: np.ndarray  # [n_nodes] city index of every global row
    node_slots: np.ndarray  # [n_nodes] real ego slots of every node
    chunk: int  # nodes trained together (forward, backward, Adam)
    rank: int
    world: int
    rows: np.ndarray  # this rank's global rows, ascending (the training state's row order)
    blocks: list[np.ndarray]  # this rank's blocks, each as local rows (positions in ``rows``)

    @property
    def n_nodes(self) -> int:
        return int(self.offsets[-1])

    @classmethod
    def build(cls, data: Sequence[CityData], node_chunk: int, device: torch.device,
              shard: tuple[int, int] = (0, 1)) -> NodeLayout:
        """The layout of ``data``'s nodes for rank ``shard[0]`` of ``shard[1]``; ``node_chunk`` 0: all of a
        rank's nodes in one chunk on a GPU, :data:`CPU_CHUNK` on a CPU. Raises :class:`GpdiffError` for a
        rank outside ``0 .. world - 1``."""
        rank, world = shard
        if not 0 <= rank < world:
            raise GpdiffError(f"shard {shard}: rank must be in 0..world-1.")
        sizes = [d.n_nodes for d in data]
        offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        n = int(offsets[-1])
        node_city = np.repeat(np.arange(len(data)), sizes)
        node_slots = np.concatenate([d.ego.valid.sum(1) for d in data])
        gpu_auto = device.type == "cuda" and not node_chunk
        chunk = node_chunk or (-(-n // world) if gpu_auto else CPU_CHUNK)
        block = chunk if gpu_auto else chunk * BLOCK_CHUNKS
        order = np.arange(n)[np.lexsort((node_slots, node_city))]
        mine = [order[lo:lo + block] for j, lo in enumerate(range(0, n, block)) if j % world == rank]
        rows = np.sort(np.concatenate(mine)) if mine else np.zeros(0, dtype=np.int64)
        local = np.full(n, -1, dtype=np.int64)
        local[rows] = np.arange(rows.size)
        return cls(offsets, node_city, node_slots, chunk, rank, world, rows, [local[b] for b in mine])

    def batch(self, data: Sequence[CityData], rows: np.ndarray, origins: torch.Tensor, in_channels: int) -> WindowBatch:
        """Windows for global node ``rows`` (grouped by city, as every block is) at per-row origins
        ``[len(rows), B]``, padding slots cut."""
        parts, start = [], 0
        cities = self.node_city[rows]
        for c in np.unique(cities):
            sel = np.flatnonzero(cities == c)
            local = torch.from_numpy(rows[sel] - self.offsets[c]).to(origins.device)
            parts.append(data[c].batch(local, origins[start:start + sel.size]))
            start += sel.size
        return trim_slots(concat_batches(parts, in_channels))


def concat_batches(batches: list[WindowBatch], in_channels: int) -> WindowBatch:
    """Stack the node dimension of batches from different cities (inputs cut to ``in_channels``)."""
    if len(batches) == 1:
        b = batches[0]
        return b if b.x.shape[-1] == in_channels else WindowBatch(**{**vars(b), "x": b.x[..., :in_channels]})
    for b in batches:
        if b.x.shape[-1] < in_channels:
            raise GpdiffError(f"a city has {b.x.shape[-1]} channel(s) but in_channels={in_channels}.")
    def joined(name: str) -> torch.Tensor | None:
        parts = [b.x[..., :in_channels] if name == "x" else getattr(b, name) for b in batches]
        if any(p is None for p in parts):
            if not all(p is None for p in parts):
                raise GpdiffError("cannot stack batches with and without seasonal context.")
            return None
        return torch.cat(parts)

    return WindowBatch(**{f.name: joined(f.name) for f in fields(WindowBatch)})


def trim_slots(batch: WindowBatch) -> WindowBatch:
    """Drop the ego slots that are padding for every node of the batch.

    Real neighbours fill a prefix of the slots (see :func:`gpdiff.data.graph.ego_graphs`) and
    padded slots never reach the centre node in any base model, so cutting them is exact; it saves
    most of the work for sparse graphs (a Montevideo bus stop has three ego slots of eight on average).
    """
    used = int(batch.valid.sum(1).max())
    if used == batch.valid.shape[1]:
        return batch
    slots = {k: None if getattr(batch, k) is None else getattr(batch, k)[:, :, :used]
             for k in ("lag_x", "lags_x", "lags_ok_x")}  # the fields with an ego-slot dimension
    return WindowBatch(**{**vars(batch), "x": batch.x[:, :, :used], "adj": batch.adj[:, :used, :used],
                          "valid": batch.valid[:, :used], **slots})


