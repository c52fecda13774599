"""gpdiff.zoo.nodelayout: the node table, blocks, shards and batches of the batched per-node trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpdiff.data.splits import SourceSplit
from gpdiff.data.windows import WindowConfig
from gpdiff.models.config import BaseModelConfig
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.nodelayout import BLOCK_CHUNKS, CPU_CHUNK, NodeLayout
from gpdiff.zoo.sourcepool import prepare_cities

WINDOW = WindowConfig(history=12, horizon=3, n_neighbors=3)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def data(two_source_cities):
    return prepare_cities(two_source_cities, WINDOW, SourceSplit(), BaseModelConfig().build(WINDOW))


def test_the_node_table_follows_the_cities_in_order(data) -> None:
    layout = NodeLayout.build(data, 0, CPU)
    assert layout.offsets.tolist() == [0, 6, 11] and layout.n_nodes == 11
    assert layout.node_city.tolist() == [0] * 6 + [1] * 5
    assert layout.chunk == CPU_CHUNK and layout.rows.tolist() == list(range(11))
    assert NodeLayout.build(data, 3, CPU).chunk == 3


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_ranks_share_whole_blocks_that_cover_every_node_once(data, world: int) -> None:
    layouts = [NodeLayout.build(data, 1, CPU, (r, world)) for r in range(world)]
    rows = np.concatenate([lay.rows for lay in layouts])
    assert sorted(rows.tolist()) == list(range(11))
    for lay in layouts:
        assert (np.diff(lay.rows) > 0).all()  # ascending: the training state's row order
        walked = np.concatenate([lay.rows[b] for b in lay.blocks]) if lay.blocks else np.zeros(0)
        assert sorted(walked.tolist()) == lay.rows.tolist() and all(b.size <= BLOCK_CHUNKS for b in lay.blocks)
        for b in lay.blocks:  # inside a block: grouped by city, then by ego-graph size
            g = lay.rows[b]
            assert (np.diff(lay.node_city[g]) >= 0).all()


def test_a_rank_outside_the_world_is_refused(data) -> None:
    with pytest.raises(GpdiffError, match=r"shard \(2, 2\): rank must be in 0..world-1"):
        NodeLayout.build(data, 0, CPU, (2, 2))


def test_a_batch_across_two_cities_is_each_citys_own_windows(data) -> None:
    layout = NodeLayout.build(data, 0, CPU)
    rows = np.array([4, 5, 6, 7])  # two nodes of each city
    origins = torch.from_numpy(data[0].origins("train")[:2]).expand(4, -1).contiguous()
    origins[2:] = torch.from_numpy(data[1].origins("train")[:2])
    batch = layout.batch(data, rows, origins, in_channels=1)
    first = data[0].batch(torch.tensor([4, 5]), origins[:2])
    second = data[1].batch(torch.tensor([0, 1]), origins[2:])
    assert torch.equal(batch.y, torch.cat([first.y, second.y]))
    assert batch.x.shape[-1] == 1 and batch.x.shape[0] == 4
