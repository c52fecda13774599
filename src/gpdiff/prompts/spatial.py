"""Spatial prompts: where a node is and what surrounds it, from data every city has.

``graph`` builds, for every node, features that compare across cities of different size:

- structure (on the undirected, symmetrised graph): degree, weighted degree, clustering, 2- and
  3-hop neighbourhood sizes, harmonic closeness, betweenness (unweighted; networkx), PageRank
  (weighted; networkx) and the size of its connected component, each as a percentile rank *within
  the city* (ties share a rank; 0.5 when all tie), plus the scale-free absolutes log(1 + degree),
  clustering, log(1 + 2-/3-hop size) and the in/out weight asymmetry of directed graphs;
- geography, when the city has coordinates (lat/lon via haversine, or projected x/y): distance to the
  city's centre of mass relative to its RMS radius, nearest-neighbour distance and local density
  (nodes within the city's median distance to the 5th neighbour) relative to the city's typical
  value (logs), and the ranks of these; without coordinates these are neutral (ratio 1, log 0,
  rank 0.5), ``has_geo`` is 0 and the notes say so;
- node attributes (``City.attributes``, e.g. point-of-interest counts), z-scored within the city;
  the attribute names are fixed at fit time (the union over the source cities), so every city's
  prompt has the same columns (an attribute a city lacks is 0 and noted).

``fit`` learns each column's mean and standard deviation over the source nodes. By default the
prompt is the standardised feature vector itself (``dim = None``: 21 columns plus one per
attribute): it is interpretable, and the diffusion model embeds prompts with its own learned layer,
to which a fixed projection would add nothing. ``dim = D`` maps it through a random matrix with
orthonormal rows (distance-preserving when ``D`` >= the number of features) drawn with the fit's
``seed``, which also picks the sampled betweenness sources of graphs above ``max_exact_betweenness``
nodes.

``none`` gives all-ones prompts (what the released GPD code uses for traffic data), for the ablation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import networkx as nx
import numpy as np
import torch
from scipy import sparse
from scipy.sparse.csgraph import dijkstra
from scipy.stats import rankdata

from gpdiff.data.city import City
from gpdiff.data.graph import EARTH_RADIUS_M
from gpdiff.data.splits import Segment
from gpdiff.prompts.base import PromptEncoder
from gpdiff.utils.config import require_at_least_one, require_range
from gpdiff.utils.errors import GpdiffError

STRUCTURE = ["rank_degree", "rank_wdegree", "rank_clustering", "rank_hop2", "rank_hop3", "rank_closeness",
             "rank_betweenness", "rank_pagerank", "rank_component", "log_degree", "clustering", "log_hop2",
             "log_hop3", "asymmetry"]
GEOGRAPHY = ["centre_distance", "rank_centre_distance", "log_nn_distance", "rank_nn_distance",
             "log_density", "rank_density", "has_geo"]
_NO_GEO = {"centre_distance": 1.0, "has_geo": 0.0, **{k: 0.5 for k in GEOGRAPHY if k.startswith("rank_")},
           "log_nn_distance": 0.0, "log_density": 0.0}
_CHUNK = 512
RANK_DIGITS = 9  # significant digits (of the column's largest magnitude) kept before ranking
PAGERANK_DAMPING = 0.85
PAGERANK_TOL = 1e-12  # stop when the L1 change of the rank vector (summing to 1) falls below this


# --------------------------------------------------------------------------- features
def within_city_rank(x: np.ndarray, digits: int = RANK_DIGITS) -> np.ndarray:
    """Percentile ranks in [0, 1] of ``x`` ``[N]`` (average ranks for ties; 0.5 for one node or all ties).

    Values are first rounded to ``digits`` significant digits of the column's largest magnitude, so
    values that are equal mathematically but differ by floating-point noise (symmetric nodes of a
    grid, iterative solvers) tie as they should.
    """
    n = x.shape[0]
    scale = float(np.abs(x).max()) if n else 0.0
    if n < 2 or scale == 0.0:
        return np.full(n, 0.5)
    q = np.round(x / scale, digits)
    if np.ptp(q) == 0:
        return np.full(n, 0.5)
    return (rankdata(q, method="average") - 1) / (n - 1)


def structure_features(adjacency: np.ndarray, max_exact: int = 2000, samples: int = 500,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """Raw structural features ``{name: [N]}`` of every node of ``adjacency`` ``[N, N]`` (module docstring).

    Betweenness: ``networkx.betweenness_centrality`` of the unweighted undirected graph, normalised
    by the ``(N - 1)(N - 2) / 2`` pairs; above ``max_exact`` nodes networkx estimates it from
    ``samples`` source nodes drawn with ``seed``. PageRank: :func:`pagerank` of the weighted
    symmetrised graph.
    """
    a = np.asarray(adjacency, dtype=np.float64).copy()
    np.fill_diagonal(a, 0.0)
    n = a.shape[0]
    s = np.maximum(a, a.T)
    b = sparse.csr_matrix((s > 0).astype(np.float64))
    deg = np.asarray(b.sum(axis=1)).ravel()
    wdeg = s.sum(axis=1)
    out_w, in_w = a.sum(axis=1), a.sum(axis=0)
    tot = out_w + in_w
    asym = np.divide(out_w - in_w, tot, out=np.zeros(n), where=tot > 0)
    tri = np.asarray((b @ b).multiply(b).sum(axis=1)).ravel()  # (B^3)_ii
    clustering = np.divide(tri, deg * (deg - 1), out=np.zeros(n), where=deg > 1)

    hop2, hop3 = np.zeros(n), np.zeros(n)
    closeness, component = np.zeros(n), np.zeros(n)
    for lo in range(0, n, _CHUNK):
        idx = np.arange(lo, min(n, lo + _CHUNK))
        d = dijkstra(b, directed=False, unweighted=True, indices=idx)  # [c, N]
        hop2[idx] = (d <= 2).sum(axis=1) - 1
        hop3[idx] = (d <= 3).sum(axis=1) - 1
        inv = np.divide(1.0, d, out=np.zeros_like(d), where=np.isfinite(d) & (d > 0))
        closeness[idx] = inv.sum(axis=1) / max(1, n - 1)
        component[idx] = np.isfinite(d).sum(axis=1) / n
    graph = nx.from_scipy_sparse_array(b)  # nodes 0..N-1; betweenness ignores the (unit) weights
    sampled = min(samples, n) if n > max_exact else None
    bc = nx.betweenness_centrality(graph, k=sampled, normalized=True, seed=seed)
    between = np.array([bc[i] for i in range(n)])
    return {
        "degree": deg, "wdegree": wdeg, "clustering": clustering, "hop2": hop2, "hop3": hop3,
        "closeness": closeness, "betweenness": between, "pagerank": pagerank(s), "component": component,
        "asymmetry": asym,
    }


def pagerank(weights: np.ndarray, damping: float = PAGERANK_DAMPING, tol: float = PAGERANK_TOL,
             max_iter: int = 1000) -> np.ndarray:
    """PageRank ``[N]`` of the weighted undirected graph ``weights`` ``[N, N]`` (symmetric), scaled so
    the mean is 1.

    ``networkx.pagerank`` (power iteration; dangling nodes jump uniformly), stopped when the L1
    change of the rank vector is below ``tol`` (networkx stops at ``N`` times its ``tol`` argument).
    """
    n = weights.shape[0]
    rank = nx.pagerank(nx.from_numpy_array(weights), alpha=damping, weight="weight", tol=tol / max(1, n),
                       max_iter=max_iter)
    return np.array([rank[i] for i in range(n)]) * n


def _cross_distances(a: np.ndarray, b: np.ndarray, latlon: bool) -> np.ndarray:
    """Distances ``[len(a), len(b)]`` in metres (haversine) or coordinate units (Euclidean)."""
    if not latlon:
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    la, lb = np.radians(a[:, 0])[:, None], np.radians(b[:, 0])[None, :]
    dlat = lb - la
    dlon = np.radians(b[:, 1])[None, :] - np.radians(a[:, 1])[:, None]
    h = np.sin(dlat / 2) ** 2 + np.cos(la) * np.cos(lb) * np.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS_M * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))


def geography_features(coords: np.ndarray, latlon: bool, neighbours: int = 5) -> dict[str, np.ndarray]:
    """Raw geographic features of every node (see the module docstring)."""
    c = np.asarray(coords, dtype=np.float64)
    n = c.shape[0]
    if latlon:  # centre of mass on the unit sphere, back to lat/lon
        lat, lon = np.radians(c[:, 0]), np.radians(c[:, 1])
        v = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], 1).mean(0)
        centre = np.degrees([np.arctan2(v[2], np.hypot(v[0], v[1])), np.arctan2(v[1], v[0])])[None, :]
    else:
        centre = c.mean(axis=0, keepdims=True)
    d_centre = _cross_distances(c, centre, latlon)[:, 0]
    spread = float(np.sqrt(np.mean(d_centre**2)))
    eps = 1e-9 + 1e-6 * spread
    k = min(neighbours, n - 1)
    nn, kth = np.zeros(n), np.zeros(n)
    for lo in range(0, n, _CHUNK):
        d = _cross_distances(c[lo : lo + _CHUNK], c, latlon)
        d[np.arange(d.shape[0]), np.arange(lo, lo + d.shape[0])] = np.inf
        if k >= 1:
            part = np.sort(d, axis=1)
            nn[lo : lo + d.shape[0]], kth[lo : lo + d.shape[0]] = part[:, 0], part[:, k - 1]
    radius = float(np.median(kth)) if k >= 1 else 0.0
    density = np.zeros(n)
    if k >= 1:
        for lo in range(0, n, _CHUNK):
            d = _cross_distances(c[lo : lo + _CHUNK], c, latlon)
            density[lo : lo + d.shape[0]] = (d <= radius).sum(axis=1) - 1
    log_nn = np.log((nn + eps) / (np.median(nn) + eps)) if k >= 1 else np.zeros(n)
    log_density = np.log((density + 1) / (density.mean() + 1))
    return {
        "centre_distance": d_centre / (spread + eps), "rank_centre_distance": within_city_rank(d_centre),
        "log_nn_distance": log_nn, "rank_nn_distance": within_city_rank(nn),
        "log_density": log_density, "rank_density": within_city_rank(density), "has_geo": np.ones(n),
    }


# --------------------------------------------------------------------------- encoders
@dataclass
class GraphConfig:
    dim: int | None = None  # None: the standardised features themselves; D: a fixed orthonormal projection
    geography: bool = True
    attributes: bool = True
    attribute_names: list[str] | None = None  # None: the union over the cities it is fitted on
    density_neighbours: int = 5
    max_exact_betweenness: int = 2000  # larger graphs: betweenness from sampled sources
    betweenness_samples: int = 500

    def __post_init__(self) -> None:
        if self.dim is not None and self.dim < 1:
            raise GpdiffError(f"spatial prompt dim must be >= 1 or None, got {self.dim}.")
        require_at_least_one(self, ("density_neighbours", "betweenness_samples"), "prompts.spatial_config.")
        require_range(self, ("max_exact_betweenness",), "prompts.spatial_config.", at_least=0)


class GraphEncoder(PromptEncoder):
    """``graph``: structure + geography + attributes, standardised over the source nodes."""

    kind = "spatial"
    name = "graph"
    config_class = GraphConfig

    def __init__(self, config: GraphConfig | None = None) -> None:
        super().__init__(config)
        self.mean = np.zeros(0)
        self.std = np.ones(0)
        self.projection: np.ndarray | None = None

    @property
    def feature_names(self) -> list[str]:
        names = STRUCTURE + (GEOGRAPHY if self.config.geography else [])
        if self.config.attributes:
            names += [f"attr_{a}" for a in (self.config.attribute_names or [])]
        return names

    @property
    def dim(self) -> int:
        return self.config.dim if self.config.dim is not None else len(self.feature_names)

    def raw_features(self, city: City) -> tuple[np.ndarray, list[str]]:
        """Unstandardised features ``[N, F]`` and notes."""
        cfg, notes = self.config, []
        st = structure_features(city.adjacency, cfg.max_exact_betweenness, cfg.betweenness_samples, self.seed)
        cols: dict[str, np.ndarray] = {f"rank_{k}": within_city_rank(v) for k, v in st.items() if k != "asymmetry"}
        cols.update(log_degree=np.log1p(st["degree"]), clustering=st["clustering"], log_hop2=np.log1p(st["hop2"]),
                    log_hop3=np.log1p(st["hop3"]), asymmetry=st["asymmetry"])
        if city.n_edges == 0:
            notes.append(f"{city.name}: the graph has no edges; structural features are constant")
        if cfg.geography:
            if city.coords is None:
                notes.append(f"geography skipped for city {city.name}: no coordinates")
                cols.update({k: np.full(city.n_nodes, v) for k, v in _NO_GEO.items()})
            else:
                if not np.all(np.isfinite(city.coords)):
                    bad = np.flatnonzero(~np.isfinite(city.coords).all(axis=1))
                    raise GpdiffError(f"{city.name}: coordinates of node(s) {_ids(city, bad)} are NaN or infinite; "
                                      "fix them in nodes.csv or drop the coordinates.")
                cols.update(geography_features(city.coords, city.coord_kind == "latlon", cfg.density_neighbours))
        if cfg.attributes:
            cols.update(self._attributes(city, notes))
        return np.stack([cols[k] for k in self.feature_names], axis=1), notes

    def _attributes(self, city: City, notes: list[str]) -> dict[str, np.ndarray]:
        names = self.config.attribute_names or []
        have = list(city.attribute_names) if city.attributes is not None else []
        out: dict[str, np.ndarray] = {}
        for name in names:
            if name not in have:
                notes.append(f"{city.name}: attribute {name!r} missing, set to the city mean (0)")
                out[f"attr_{name}"] = np.zeros(city.n_nodes)
                continue
            col = city.attributes[:, have.index(name)].astype(np.float64)
            bad = np.flatnonzero(~np.isfinite(col))
            if bad.size:
                raise GpdiffError(f"{city.name}: attribute {name!r} is not a finite number for node(s) "
                                  f"{_ids(city, bad)}; attributes must be numeric (fill or drop the column in "
                                  "nodes.csv).")
            sd = col.std()
            out[f"attr_{name}"] = np.clip((col - col.mean()) / sd, -5, 5) if sd > 0 else np.zeros(city.n_nodes)
        extra = [a for a in have if a not in names]
        if extra:
            notes.append(f"{city.name}: attribute(s) {extra} not known to the fitted encoder, ignored")
        return out

    def _fit(self, cities: Sequence[City], segments: Sequence[Segment], progress: bool) -> None:
        if self.config.attributes and self.config.attribute_names is None:
            union: list[str] = []
            for c in cities:
                if c.attributes is not None:
                    union += [a for a in c.attribute_names if a not in union]
            self.config.attribute_names = union
        feats, notes = [], []
        for c in cities:
            f, nt = self.raw_features(c)
            feats.append(f)
            notes += nt
        allf = np.concatenate(feats)
        self.mean = allf.mean(axis=0)
        sd = allf.std(axis=0)
        self.std = np.where(sd < 1e-8, 1.0, sd)
        self.projection = None
        if self.config.dim is not None:
            f = allf.shape[1]
            g = np.random.default_rng(self.seed).normal(size=(max(f, self.config.dim), min(f, self.config.dim)))
            q, _ = np.linalg.qr(g)
            self.projection = q.T if self.config.dim >= f else q  # [F, dim]
        self.info = {"cities": [c.name for c in cities], "nodes": int(allf.shape[0]),
                     "features": self.feature_names, "notes": notes}

    def encode(self, city: City, segment: Segment | None = None) -> tuple[np.ndarray, list[str]]:
        """Spatial prompts of all nodes; ``segment`` is ignored (no time series is used)."""
        self._require_fitted()
        raw, notes = self.raw_features(city)
        z = (raw - self.mean) / self.std
        if self.projection is not None:
            z = z @ self.projection
        return z.astype(np.float32), notes

    def state(self) -> dict[str, torch.Tensor]:
        out = {"mean": torch.from_numpy(self.mean.copy()), "std": torch.from_numpy(self.std.copy())}
        if self.projection is not None:
            out["projection"] = torch.from_numpy(self.projection.copy())
        return out

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        self.mean, self.std = tensors["mean"].double().numpy(), tensors["std"].double().numpy()
        proj = tensors.get("projection")
        self.projection = proj.double().numpy() if proj is not None else None
        if self.mean.shape != (len(self.feature_names),):
            raise GpdiffError(f"the graph encoder's statistics cover {self.mean.shape[0]} features but its config "
                              f"names {len(self.feature_names)}; refit it.")


def _ids(city: City, idx: np.ndarray) -> str:
    shown = ", ".join(city.node_ids[i] for i in idx[:5])
    return shown + (f" and {idx.size - 5} more" if idx.size > 5 else "")

