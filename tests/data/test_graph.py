"""Graphs: ego-graphs of the strongest neighbours, padded; the adjacency builders."""

import numpy as np
import pytest

from gpdiff.data.graph import ego_graphs, gaussian_knn_adjacency, grid_adjacency


def test_ego_graphs_pick_strongest_neighbours_and_pad():
    a = np.zeros((4, 4), dtype=np.float32)
    a[0, 1], a[2, 0], a[0, 3] = 0.9, 0.5, 0.1
    e = ego_graphs(a, k=3)
    assert list(e.index[0]) == [0, 1, 2, 3]
    assert list(e.valid[1]) == [True, True, False, False]
    assert e.adjacency[0, 0, 1] == pytest.approx(0.9) and e.adjacency[0, 2, 0] == pytest.approx(0.5)
    assert e.adjacency[1, :, 2:].sum() == 0 and np.all(np.diagonal(e.adjacency, axis1=1, axis2=2) == 0)


def test_ego_graphs_with_more_slots_than_nodes():
    e = ego_graphs(np.ones((3, 3), dtype=np.float32), k=5)
    assert e.index.shape == (3, 6) and e.valid.sum(1).tolist() == [3, 3, 3]


def test_graph_builders():
    g = grid_adjacency(2, 3, 4)
    assert g.sum() == 14 and np.array_equal(g, g.T)
    assert grid_adjacency(3, 3, 8)[4].sum() == 8
    coords = np.array([[0, 0], [0, 1], [0, 2], [10, 10]], dtype=float)
    w = gaussian_knn_adjacency(coords, k=1, latlon=False)
    assert np.array_equal(w, w.T) and w[0, 1] > 0 and w[0, 3] == 0
