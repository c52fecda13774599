"""Do the prompts carry what the parameter generator needs? Two checks over a trained zoo's source nodes.

1. **Rank correlation.** Over node pairs, Spearman's rho between prompt distance and parameter
   distance (all pairs, pairs within a city, pairs across cities). Prompt distance: Euclidean on
   columns z-scored over the nodes, each of the spatial and temporal blocks scaled to equal weight.
   Parameter distance: Euclidean on the per-tensor standardised parameters (as the diffusion model
   sees them).
2. **Transfer.** For every node, forecast its validation windows with the parameters of its
   nearest prompt neighbour in *another* city, and with those of random nodes of other cities.
   If the prompts are informative, the neighbour's parameters forecast better. The node's own
   parameters are the reference. Errors are MAE in units of the node's training standard deviation
   (comparable across cities of any magnitude); ``gap_closed`` = (random - neighbour) / (random - own).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from gpdiff.data.city import City
from gpdiff.data.splits import source_split
from gpdiff.data.windows import CityData
from gpdiff.prompts import PromptSet
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.params import ParamCollection, Standardizer, unflatten

PARTS = ("both", "spatial", "temporal")


def _zscore(x: np.ndarray) -> np.ndarray:
    """Columns z-scored over rows (constant columns dropped), scaled so the block's mean squared norm is 1."""
    sd = x.std(axis=0)
    keep = sd > 1e-8
    if not keep.any():
        return np.zeros((x.shape[0], 0))
    z = (x[:, keep] - x[:, keep].mean(axis=0)) / sd[keep]
    return z / np.sqrt(keep.sum())


def prompt_matrix(prompts: PromptSet, part: str = "both") -> np.ndarray:
    """Rows to measure prompt distance on: z-scored ``spatial``, ``temporal`` or ``both`` (equal weight)."""
    if part not in PARTS:
        raise GpdiffError(f"prompt part must be one of {PARTS}, got {part!r}.")
    blocks = []
    if part in ("spatial", "both"):
        blocks.append(_zscore(prompts.spatial.double().numpy()))
    if part in ("temporal", "both"):
        blocks.append(_zscore(prompts.temporal.double().numpy()))
    return np.concatenate(blocks, axis=1)


def param_matrix(collection: ParamCollection) -> np.ndarray:
    """Per-tensor standardised parameter vectors ``[n, P]``."""
    std = Standardizer.fit(collection.params, collection.spec)
    return std.transform(collection.params.double()).numpy()


def _subsample(collection: ParamCollection, max_nodes: int | None, seed: int) -> ParamCollection:
    if max_nodes is None or len(collection) <= max_nodes:
        return collection
    idx = np.sort(np.random.default_rng(seed).choice(len(collection), size=max_nodes, replace=False))
    return collection.take(torch.from_numpy(idx))


def rank_correlation(prompts: PromptSet, collection: ParamCollection, parts: tuple[str, ...] = PARTS,
                     max_nodes: int | None = 1500, seed: int = 0) -> dict[str, dict[str, float]]:
    """Spearman's rho of prompt vs parameter distance: ``{part: {"all", "within", "cross": rho}}``.

    NaN where undefined (constant prompt distances, e.g. the ``none`` spatial encoder, or no such pairs).
    ``max_nodes`` caps the node count (seeded subsample) so the pair count stays manageable.
    """
    coll = _subsample(collection, max_nodes, seed)
    ps = prompts.select(coll.keys())
    dq = pdist(param_matrix(coll))
    cities = np.array(coll.cities)
    ii, jj = np.triu_indices(len(coll), k=1)
    same = cities[ii] == cities[jj]
    out: dict[str, dict[str, float]] = {}
    for part in parts:
        x = prompt_matrix(ps, part)
        dp = pdist(x) if x.shape[1] else np.zeros_like(dq)
        out[part] = {name: _spearman(dp[sel], dq[sel])
                     for name, sel in (("all", np.ones_like(same)), ("within", same), ("cross", ~same))}
    return out


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


# --------------------------------------------------------------------------- transfer
@dataclass
class TransferResult:
    """Per-node errors (MAE in units of the node's training std) of own / neighbour / random parameters."""

    cities: list[str]
    node_ids: list[str]
    own: np.ndarray  # [n]
    neighbour: np.ndarray  # [n]
    random: np.ndarray  # [n] mean over the random draws
    neighbour_key: list[tuple[str, str]]

    def summary(self) -> dict[str, float]:
        ok = np.isfinite(self.own) & np.isfinite(self.neighbour) & np.isfinite(self.random)
        own, nb, rnd = self.own[ok].mean(), self.neighbour[ok].mean(), self.random[ok].mean()
        return {"nodes": int(ok.sum()), "own": float(own), "neighbour": float(nb), "random": float(rnd),
                "win_rate": float((self.neighbour[ok] < self.random[ok]).mean()),
                "gap_closed": float((rnd - nb) / (rnd - own)) if rnd > own else float("nan")}

    def per_city(self) -> list[dict[str, Any]]:
        rows = []
        cities = np.array(self.cities)
        for c in dict.fromkeys(self.cities):
            sel = (cities == c) & np.isfinite(self.own) & np.isfinite(self.neighbour) & np.isfinite(self.random)
            rows.append({"city": c, "nodes": int(sel.sum()), "own": float(self.own[sel].mean()),
                         "neighbour": float(self.neighbour[sel].mean()), "random": float(self.random[sel].mean()),
                         "win_rate": float((self.neighbour[sel] < self.random[sel]).mean())})
        return rows


def nearest_other_city(prompts: PromptSet, part: str = "both", seed: int = 0) -> np.ndarray:
    """Index of every row's nearest prompt neighbour among rows of *other* cities (-1 if none).

    Ties (e.g. identical prompts) are broken at random, so uninformative prompts pick a random node.
    """
    x = torch.from_numpy(prompt_matrix(prompts, part))
    cities = np.array(prompts.cities)
    rng = np.random.default_rng(seed)
    out = np.full(len(prompts), -1, dtype=np.int64)
    for lo in range(0, len(prompts), 1024):
        d = torch.cdist(x[lo : lo + 1024], x).numpy() if x.shape[1] else np.zeros((min(1024, len(prompts) - lo),
                                                                                   len(prompts)))
        d[cities[lo : lo + 1024, None] == cities[None, :]] = np.inf
        best = d.min(axis=1)
        for i, row in enumerate(d):
            if np.isfinite(best[i]):
                ties = np.flatnonzero(row <= best[i] * (1 + 1e-9) + 1e-12)
                out[lo + i] = ties[0] if ties.size == 1 else rng.choice(ties)
    return out


def transfer_check(prompts: PromptSet, collection: ParamCollection, cities: Mapping[str, City],
                   part: str = "both", n_random: int = 3, max_windows: int = 256, seed: int = 0,
                   device: str = "cpu") -> TransferResult:
    """Forecast each node's validation windows with its nearest other-city prompt neighbour's parameters,
    with random other-city nodes' parameters and with its own; see the module docstring.

    ``cities`` maps the collection's city names to the cities its zoo was trained on; the split, ego-graph
    size and channels are read from the collection's config.
    """
    from gpdiff.models import ModelConfig, get_model

    if len(collection.city_names()) < 2:
        raise GpdiffError("the transfer check needs a zoo of at least two cities (neighbours come from "
                          "another city).")
    missing = [c for c in collection.city_names() if c not in cities]
    if missing:
        raise GpdiffError(f"the transfer check needs the zoo's cities; missing {missing}.")
    ps = prompts.select(collection.keys())
    model = get_model(collection.model, ModelConfig(**collection.model_config))
    zc = collection.config
    fractions = (zc.get("train", 0.7), zc.get("val", 0.1), zc.get("test", 0.2))
    k = int(zc.get("k", model.config.ego_size - 1))
    in_channels = int(model.config.in_channels)
    nb = nearest_other_city(ps, part, seed)
    rng = np.random.default_rng(seed)
    city_arr = np.array(collection.cities)
    n = len(collection)
    rand = np.zeros((n, n_random), dtype=np.int64)
    for i in range(n):
        pool = np.flatnonzero(city_arr != city_arr[i])
        rand[i] = rng.choice(pool, size=n_random, replace=pool.size < n_random)
    errors = {"own": np.full(n, np.nan), "neighbour": np.full(n, np.nan), "random": np.full(n, np.nan)}
    params = collection.params.to(device)
    for name in collection.city_names():
        city = cities[name]
        rows = np.flatnonzero(city_arr == name)
        where = {nid: i for i, nid in enumerate(city.node_ids)}
        lost = [collection.node_ids[r] for r in rows if collection.node_ids[r] not in where]
        if lost:
            raise GpdiffError(f"city {name!r} has no node(s) {lost[:5]} of the zoo; pass the data the zoo was "
                              "trained on.")
        local = np.array([where[collection.node_ids[r]] for r in rows])
        split = source_split(city.n_steps, *fractions, name=name)
        data = CityData(city, split, history=model.config.history, horizon=model.config.horizon, n_neighbors=k, device=device)
        origins = data.origins("val")
        if origins.size == 0:
            continue
        if origins.size > max_windows:
            origins = origins[np.linspace(0, origins.size - 1, max_windows).round().astype(np.int64)]
        for lo in range(0, rows.size, 128):
            r, loc = rows[lo : lo + 128], torch.from_numpy(local[lo : lo + 128]).to(device)
            o = torch.from_numpy(origins).to(device).expand(loc.numel(), -1)
            batch = data.batch(loc, o)
            batch = replace(batch, x=batch.x[..., :in_channels])
            errors["own"][r] = _scaled_mae(model, collection, params, r, batch)
            errors["neighbour"][r] = _scaled_mae(model, collection, params, nb[r], batch)
            errors["random"][r] = np.mean([_scaled_mae(model, collection, params, rand[r, j], batch)
                                           for j in range(n_random)], axis=0)
    return TransferResult(list(collection.cities), list(collection.node_ids), errors["own"], errors["neighbour"],
                          errors["random"], [collection.keys()[j] for j in nb])


def _scaled_mae(model: Any, collection: ParamCollection, params: torch.Tensor, rows: np.ndarray,
                batch: Any) -> np.ndarray:
    """Masked MAE (scaled units) per node of ``batch``, using the parameter rows ``rows``."""
    p = unflatten(params[torch.from_numpy(rows).to(params.device)], collection.spec)
    with torch.no_grad():
        pred = model.forward(p, batch)
    mask = batch.y_mask.float()
    count = mask.sum(dim=(1, 2))
    mae = ((pred - batch.y).abs() * mask).sum(dim=(1, 2)) / count.clamp_min(1.0)
    return torch.where(count > 0, mae, torch.full_like(mae, float("nan"))).cpu().numpy()


# --------------------------------------------------------------------------- stability
def node_identification(encoder: Any, cities: list[City], segments: list[Any], shift_days: float = 7.0
                        ) -> dict[str, float]:
    """Is a temporal prompt a stable signature of its node? Top-1 re-identification rate per city.

    Each node's prompt from the end of its segment is matched (nearest neighbour, z-scored columns)
    against the prompts of all nodes of its city computed ``shift_days`` earlier; the share of nodes
    matched to themselves (chance: 1 / nodes). Cities whose segment is too short are skipped.
    """
    from gpdiff.data.splits import Segment

    out: dict[str, float] = {}
    for city, seg in zip(cities, segments):
        shift = round(shift_days * city.steps_per_day)
        if len(seg) - shift < city.steps_per_day:
            continue
        late, _ = encoder.encode(city, seg)
        early, _ = encoder.encode(city, Segment(seg.start, seg.stop - shift))
        both = np.concatenate([late, early]).astype(np.float64)
        sd = both.std(axis=0)
        keep = sd > 1e-8
        z = (both[:, keep] - both[:, keep].mean(axis=0)) / sd[keep]
        n = city.n_nodes
        d = torch.cdist(torch.from_numpy(z[:n]), torch.from_numpy(z[n:])).numpy()
        out[city.name] = float((d.argmin(axis=1) == np.arange(n)).mean())
    return out
