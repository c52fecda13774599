"""Retrieval: each target node starts from the parameters of the source node with the nearest prompt.

Prompts are compared after z-scoring every feature with the source prompts' statistics, spatial and
temporal parts weighted equally (each divided by the square root of its width). This isolates what
the diffusion model adds over simply looking up a similar node.
"""

from __future__ import annotations

import torch

from gpdiff.methods import MethodInputs, MethodResult
from gpdiff.methods.adapt import finetune, forecast, target_start
from gpdiff.prompts import PromptSet


def _features(prompts: PromptSet, ref: PromptSet) -> torch.Tensor:
    parts = []
    for name in ("spatial", "temporal"):
        x, r = getattr(prompts, name).float(), getattr(ref, name).float()
        mu, sd = r.mean(0), r.std(0).clamp_min(1e-6)
        parts.append((x - mu) / sd / (x.shape[1] ** 0.5))
    return torch.cat(parts, dim=1)


def nearest_sources(source_prompts: PromptSet, target_prompts: PromptSet, k: int = 1) -> torch.Tensor:
    """Indices of the ``k`` nearest source prompts for every target node, nearest first: ``[N_target]``
    for ``k == 1``, ``[N_target, k]`` otherwise (``k`` at most the number of sources)."""
    src = _features(source_prompts, source_prompts)
    tgt = _features(target_prompts, source_prompts)
    dist = torch.cdist(tgt, src)
    if k == 1:
        return dist.argmin(dim=1)
    return dist.topk(min(k, src.shape[0]), dim=1, largest=False).indices


def run(ctx: MethodInputs) -> MethodResult:
    idx = nearest_sources(ctx.source_prompts, ctx.target_prompts)
    init = target_start(ctx.model, ctx.zoo.params[idx].clone())
    params = finetune(ctx.model, init, ctx.target, ctx.finetune, ctx.workdir, ctx.seed, ctx.progress, "retrieval")
    cities = [ctx.zoo.cities[i] for i in idx.tolist()]
    share = {c: round(cities.count(c) / len(cities), 3) for c in dict.fromkeys(cities)}
    return MethodResult(pred=forecast(ctx.model, params, ctx.target), params=params,
                        notes={"retrieved_from": share})
