"""Graphs: building adjacencies from coordinates or grids, and node ego-subgraphs.

An ego-subgraph holds a node (always first) and up to ``k`` neighbours, the ones with the largest
edge weight in either direction. Smaller neighbourhoods are padded to ``k + 1`` slots with a
validity mask, so the ego-graphs of all nodes stack into one batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EARTH_RADIUS_M = 6_371_000.0


def pairwise_distances(coords: np.ndarray, latlon: bool) -> np.ndarray:
    """``[N, N]`` distances in metres (haversine for lat/lon) or coordinate units (Euclidean)."""
    c = np.asarray(coords, dtype=np.float64)
    if not latlon:
        return np.sqrt(((c[:, None, :] - c[None, :, :]) ** 2).sum(-1))
    lat, lon = np.radians(c[:, 0]), np.radians(c[:, 1])
    dlat = lat[:, None] - lat[None, :]
    dlon = lon[:, None] - lon[None, :]
    h = np.sin(dlat / 2) ** 2 + np.cos(lat)[:, None] * np.cos(lat)[None, :] * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def gaussian_knn_adjacency(coords: np.ndarray, k: int = 8, latlon: bool = True,
                           threshold: float = 0.1) -> np.ndarray:
    """Symmetric Gaussian-kernel graph on the ``k`` nearest neighbours of every node.

    ``w_ij = exp(-(d_ij / sigma)^2)`` (the Gaussian kernel of DCRNN's sensor graphs) with ``sigma``
    the mean distance to the ``k`` nearest neighbours, so a typical neighbour weighs ``e^-1``; kept when ``j`` is among ``i``'s ``k`` nearest (or vice versa)
    and ``w_ij >= threshold``. Zero diagonal.
    """
    d = pairwise_distances(coords, latlon)
    n = d.shape[0]
    k = min(k, n - 1)
    if k <= 0:
        return np.zeros((n, n), dtype=np.float32)
    dd = d + np.diag(np.full(n, np.inf))
    nn = np.argsort(dd, axis=1)[:, :k]
    rows = np.repeat(np.arange(n), k)
    knn_d = dd[rows, nn.ravel()]
    sigma = float(np.mean(knn_d)) or 1.0
    w = np.zeros((n, n))
    w[rows, nn.ravel()] = np.exp(-((knn_d / sigma) ** 2))
    w = np.maximum(w, w.T)
    w[w < threshold] = 0.0
    np.fill_diagonal(w, 0.0)
    return w.astype(np.float32)


def grid_adjacency(rows: int, cols: int, neighbours: int = 4) -> np.ndarray:
    """0/1 adjacency of a ``rows x cols`` grid (row-major node order), 4- or 8-neighbour."""
    if neighbours not in (4, 8):
        raise ValueError("neighbours must be 4 or 8")
    offsets = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if neighbours == 8:
        offsets += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    n = rows * cols
    a = np.zeros((n, n), dtype=np.float32)
    for r in range(rows):
        for c in range(cols):
            for dr, dc in offsets:
                rr, cc = r + dr, c + dc
                if 0 <= rr < rows and 0 <= cc < cols:
                    a[r * cols + c, rr * cols + cc] = 1.0
    return a


@dataclass
class EgoGraphs:
    """Ego-subgraphs of all nodes of a city.

    ``index[i]`` lists node ``i`` first, then its neighbours (padded with ``i``); ``valid`` marks real
    slots; ``adjacency[i]`` is the city adjacency restricted to those slots (padded rows/cols and
    the diagonal zero).
    """

    index: np.ndarray  # [N, K+1] int64
    valid: np.ndarray  # [N, K+1] bool
    adjacency: np.ndarray  # [N, K+1, K+1] float32

    @property
    def size(self) -> int:
        return int(self.index.shape[1])


def ego_graphs(adjacency: np.ndarray, k: int) -> EgoGraphs:
    """Ego-subgraphs with up to ``k`` neighbours chosen by edge weight (either direction)."""
    a = np.asarray(adjacency, dtype=np.float32)
    n = a.shape[0]
    sym = np.maximum(a, a.T).astype(np.float64)
    np.fill_diagonal(sym, 0.0)
    index = np.repeat(np.arange(n)[:, None], k + 1, axis=1)
    valid = np.zeros((n, k + 1), dtype=bool)
    valid[:, 0] = True
    if k > 0:
        # stable sort on (-weight, node id) so ties resolve deterministically
        m = min(k, n - 1)  # a small city has fewer candidates than slots; the rest stay padded
        order = np.argsort(-sym, axis=1, kind="stable")[:, :m]
        w = np.take_along_axis(sym, order, axis=1)
        ok = w > 0
        index[:, 1 : m + 1] = np.where(ok, order, index[:, 1 : m + 1])
        valid[:, 1 : m + 1] = ok
    sub = a[index[:, :, None], index[:, None, :]]
    sub = sub * (valid[:, :, None] & valid[:, None, :])
    diag = np.arange(k + 1)
    sub[:, diag, diag] = 0.0  # self-loops are the base model's business
    return EgoGraphs(index.astype(np.int64), valid, sub.astype(np.float32))
