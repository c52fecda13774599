"""The spatial encoders: a distance-preserving projection, cities without coordinates, node attributes, graph
structure features and their within-city ranks."""

import networkx as nx
import numpy as np
import pytest
import torch

from gpdiff.data.synthetic import synthetic_city
from gpdiff.prompts import (
    make_encoder,
    source_segment,
)
from gpdiff.prompts.spatial import STRUCTURE, GraphEncoder, structure_features, within_city_rank
from gpdiff.utils.errors import GpdiffError
from tests.prompts.conftest import city_with


def test_spatial_projection_is_distance_preserving(cities):
    segs = [source_segment(c) for c in cities]
    raw = GraphEncoder().fit(cities, segs)
    proj = make_encoder("spatial", "graph", {"dim": 64}).fit(cities, segs)
    a, _ = raw.encode(cities[0], segs[0])
    b, _ = proj.encode(cities[0], segs[0])
    assert b.shape == (cities[0].n_nodes, 64)
    np.testing.assert_allclose(np.linalg.norm(a[0] - a[1]), np.linalg.norm(b[0] - b[1]), rtol=1e-5)


def test_city_without_coordinates_skips_geography(cities, encoders):
    city = city_with(synthetic_city("nocoords", n_nodes=5, days=10, seed=6), coords=None)
    ps = encoders.encode(city, source_segment(city))
    assert "geography skipped for city nocoords: no coordinates" in ps.meta["notes"]
    assert torch.isfinite(ps.spatial).all()


def test_attributes_are_used_and_non_finite_ones_fail(cities):
    base = synthetic_city("attr", n_nodes=6, days=10, seed=7)
    pois = np.arange(6, dtype=np.float32)[:, None] * np.array([[1.0, 2.0]], dtype=np.float32)
    city = city_with(base, attributes=pois, attribute_names=["poi", "shops"])
    enc = GraphEncoder().fit([city, cities[0]], [source_segment(city), source_segment(cities[0])])
    assert enc.config.attribute_names == ["poi", "shops"] and enc.dim == len(STRUCTURE) + 7 + 2
    prompts, notes = enc.encode(cities[1])
    assert prompts.shape[1] == enc.dim and any("attribute 'poi' missing" in n for n in notes)
    bad = pois.copy()
    bad[3, 1] = np.nan
    with pytest.raises(GpdiffError, match="attribute 'shops' is not a finite number for node.*n3"):
        enc.encode(city_with(base, attributes=bad, attribute_names=["poi", "shops"]))


def test_structure_features_match_networkx(cities):
    for c in cities:
        s = np.maximum(c.adjacency, c.adjacency.T).astype(np.float64)
        np.fill_diagonal(s, 0)
        g = nx.from_numpy_array((s > 0).astype(float))
        f = structure_features(c.adjacency)
        n = c.n_nodes
        np.testing.assert_allclose(f["betweenness"], [nx.betweenness_centrality(g)[i] for i in range(n)], atol=1e-12)
        np.testing.assert_allclose(f["clustering"], [nx.clustering(g)[i] for i in range(n)], atol=1e-12)
        hc = nx.harmonic_centrality(g)
        np.testing.assert_allclose(f["closeness"], [hc[i] / (n - 1) for i in range(n)], atol=1e-12)
        sampled = structure_features(c.adjacency, max_exact=2, samples=n)  # all sources "sampled": exact
        np.testing.assert_allclose(sampled["betweenness"], f["betweenness"], atol=1e-12)
        # PageRank (no dangling nodes here) solves r = (1 - d) / n + d P^T r, P the row-normalised weights
        p = s / s.sum(axis=1, keepdims=True)
        exact = np.linalg.solve(np.eye(n) - 0.85 * p.T, np.full(n, 0.15 / n)) * n
        np.testing.assert_allclose(f["pagerank"], exact, rtol=1e-9)


def test_symmetric_nodes_of_a_grid_share_every_structure_rank():
    """On a 5 x 5 grid, nodes mapped onto each other by a symmetry of the grid are structurally
    identical; floating-point noise (e.g. in PageRank's iterations) must not rank them apart."""
    side = 5
    grid = nx.convert_node_labels_to_integers(nx.grid_2d_graph(side, side), ordering="sorted")
    adjacency = nx.to_numpy_array(grid, nodelist=range(side * side))
    ranks = {k: within_city_rank(v) for k, v in structure_features(adjacency).items()}
    r, c = np.divmod(np.arange(side * side), side)
    for image in (r * side + (side - 1 - c), (side - 1 - r) * side + c, c * side + r):  # mirrors, transpose
        for name, rank in ranks.items():
            np.testing.assert_array_equal(rank, rank[image], err_msg=name)
    corners = [0, side - 1, side * (side - 1), side * side - 1]
    assert len({ranks["betweenness"][i] for i in corners}) == 1
    assert ranks["betweenness"][side * side // 2] == 1.0  # the centre lies on the most shortest paths
    assert len(set(ranks["pagerank"])) == 6  # orbits of the grid's symmetry group: one rank each


def test_within_city_rank_ties_values_equal_up_to_noise():
    x = np.array([1.0, 1.0 + 1e-15, 2.0, 0.5])
    np.testing.assert_array_equal(within_city_rank(x), [0.5, 0.5, 1.0, 0.0])
    np.testing.assert_array_equal(within_city_rank(np.array([3.0, 3.0 * (1 + 1e-14)])), [0.5, 0.5])
    np.testing.assert_array_equal(within_city_rank(np.array([1e-3, 2e-3, 0.0])), [0.5, 1.0, 0.0])  # scale-free
    np.testing.assert_array_equal(within_city_rank(np.zeros(3)), [0.5, 0.5, 0.5])
