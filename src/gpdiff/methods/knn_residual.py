"""k-NN residual: the anchor plus a shrunken mean of the k most similar source nodes' differences
from it, then fine-tuned like every other method.

The strongest no-diffusion answer to "what does the diffusion model add?" (the seed paper's first
open question): with an anchored zoo (:mod:`gpdiff.zoo.train`, ``init: anchor``), a target node starts from
``anchor + s * mean(theta_j - anchor for the k source nodes j with the nearest prompts)``. Prompts
are compared as :mod:`gpdiff.methods.retrieval` compares them. ``k`` and the shrinkage ``s`` are
chosen on held-out *source* nodes, never on the target: a random ``holdout`` share of every source
city's nodes is set aside, each held-out node gets the candidate built from its neighbours among
the others, and the pair with the lowest validation loss on the held-out nodes' own windows (scaled
MAE, averaged per city, then over cities, so a large city does not decide alone) wins. ``s = 0`` is
the anchor itself, so the method never selects worse than the anchor on held-out sources.
A zoo without an anchor uses the zoo's mean as the reference point (and says so in the notes), as the
denoiser does (:func:`gpdiff.diffusion.train.reference_vector`, ``auto``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from gpdiff.data.windows import CityData
from gpdiff.diffusion.train import reference_vector
from gpdiff.methods import MethodInputs, MethodResult, SourceSide
from gpdiff.methods.adapt import finetune, forecast, target_start
from gpdiff.methods.retrieval import nearest_sources
from gpdiff.models.base import BaseModel
from gpdiff.prompts import PromptSet
from gpdiff.utils.config import require_at_least_one, to_mapping
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.params import ParamCollection
from gpdiff.zoo.sourcefit import SourceFit
from gpdiff.zoo.train import source_val_loss


@dataclass
class KnnResidualConfig:
    ks: list[int] = field(default_factory=lambda: [1, 3, 5, 10, 20, 50])  # candidate neighbour counts
    shrinkages: list[float] = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])  # candidate s
    holdout: float = 0.2  # share of every source city's nodes held out for the selection
    val_windows: int = 64  # validation windows per held-out node

    def __post_init__(self) -> None:
        require_at_least_one(self, ("val_windows",), "methods.knn_residual.")
        if not self.ks or min(self.ks) < 1 or not self.shrinkages or min(self.shrinkages) < 0:
            raise GpdiffError(f"methods.knn_residual: ks must be counts >= 1 and shrinkages values >= 0, both "
                              f"non-empty; got ks {self.ks}, shrinkages {self.shrinkages}.")
        if not 0 < self.holdout < 1:
            raise GpdiffError(f"methods.knn_residual.holdout must be between 0 and 1, got {self.holdout}.")


def holdout_rows(cities: list[str], fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(kept, held out) row indices: a random ``fraction`` of every city's rows held out (at least one,
    and at least one kept when the city has two rows or more)."""
    g = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for name in dict.fromkeys(cities):
        rows = torch.tensor([i for i, c in enumerate(cities) if c == name])
        rows = rows[torch.randperm(rows.numel(), generator=g)]
        k = min(max(1, round(fraction * rows.numel())), max(rows.numel() - 1, 1))
        held.append(rows[:k])
        kept.append(rows[k:])
    return torch.cat(kept).sort().values, torch.cat(held).sort().values


def select(model: BaseModel, zoo: ParamCollection, prompts: PromptSet, sources: list[CityData],
           cfg: KnnResidualConfig = KnnResidualConfig(), seed: int = 0) -> tuple[int, float, list[dict[str, float]]]:
    """The (k, shrinkage) with the lowest city-averaged held-out loss among ``zoo``'s own nodes
    (``prompts`` aligned with its rows, ``sources`` the data of its cities), and every candidate's score."""
    reference = reference_vector(zoo, "auto")
    deltas = zoo.params - reference
    kept, held = holdout_rows(list(zoo.cities), cfg.holdout, seed)
    keys = [zoo.keys()[i] for i in held.tolist()]
    held_cities = [zoo.cities[i] for i in held.tolist()]
    kept_prompts = prompts.take(kept)
    held_prompts = prompts.take(held)
    ks = sorted({min(k, kept.numel()) for k in cfg.ks})
    order = nearest_sources(kept_prompts, held_prompts, k=max(ks)).reshape(held.numel(), -1)
    scores = []
    for k in ks:
        mean_delta = deltas[kept][order[:, :k]].mean(1)  # [h, P]
        for s in cfg.shrinkages:
            if s == 0 and k != ks[0]:
                continue  # the anchor alone: the same for every k
            loss = source_val_loss(model, reference + s * mean_delta, sources, keys, cfg.val_windows)
            per_city = [float(loss[[c == name for c in held_cities]].nanmean()) for name in dict.fromkeys(held_cities)]
            scores.append({"k": k, "shrinkage": s, "loss": sum(per_city) / len(per_city)})
    best = min(scores, key=lambda r: r["loss"])
    return int(best["k"]), float(best["shrinkage"]), scores


def initial(zoo: ParamCollection, prompts: PromptSet, queries: PromptSet, k: int, shrinkage: float) -> torch.Tensor:
    """``reference + shrinkage * mean delta of the k nearest zoo rows`` for every query prompt ``[n, P]``."""
    reference = reference_vector(zoo, "auto")
    idx = nearest_sources(prompts, queries, k=k).reshape(len(queries), -1)
    return reference + shrinkage * (zoo.params[idx] - reference).mean(1)


def fit_sources(side: SourceSide) -> SourceFit:
    """:data:`gpdiff.methods.SOURCE_FITS` entry: :func:`select` on ``side``'s zoo, prompts and sources with the
    method's settings and seed; the choice and every candidate's score in ``meta`` (no tensors)."""
    if side.zoo is None or side.source_prompts is None:
        raise GpdiffError("knn_residual needs the source zoo and its prompts.")
    cfg = side.settings(KnnResidualConfig)
    k, s, scores = select(side.model, side.zoo, side.source_prompts, side.sources, cfg, side.seed)
    return SourceFit({}, {"k": k, "shrinkage": s, "scores": scores, "settings": to_mapping(cfg), "seed": side.seed})


def run(ctx: MethodInputs) -> MethodResult:
    """The method: ``(k, shrinkage)`` chosen on held-out source nodes (or the choice in ``ctx.fits``, a
    pretrained folder's), every target node started from its neighbours' mean residual, then fine-tuned."""
    zoo = ctx.zoo
    if zoo is None or ctx.source_prompts is None or ctx.target_prompts is None:
        raise GpdiffError("knn_residual needs the source zoo, its prompts and the target's prompts.")
    chosen = ctx.source_fit("knn_residual").meta
    k, s, scores = int(chosen["k"]), float(chosen["shrinkage"]), list(chosen["scores"])
    init = target_start(ctx.model, initial(zoo, ctx.source_prompts, ctx.target_prompts, k, s))
    params = finetune(ctx.model, init, ctx.target, ctx.finetune, ctx.workdir, ctx.seed, ctx.progress, "knn-residual")
    anchor_loss = next(r["loss"] for r in scores if r["shrinkage"] == 0)
    notes = {"k": k, "shrinkage": s, "reference": "anchor" if zoo.anchor is not None else "zoo mean",
             "held_out_loss": round(min(r["loss"] for r in scores), 5), "held_out_loss_anchor": round(anchor_loss, 5)}
    return MethodResult(pred=forecast(ctx.model, params, ctx.target), params=params, notes=notes)
