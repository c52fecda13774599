"""Transfer: the anchor (one model of the same architecture trained on all source nodes with
city-balanced sampling, :mod:`gpdiff.zoo.anchor`) as every target node's starting point.

``transfer`` fine-tunes it per target node; ``transfer_zero_shot`` forecasts with it as it is, the
zero-shot peer of ``gpd_zero_shot``. The usual pooled pre-training baseline: it learns what is
common, not what differs. The anchor is trained once per run (its own stage) and shared with the
anchored zoo, so its settings live in the run config's ``anchor`` section.
"""

from __future__ import annotations

import torch

from gpdiff.methods import MethodInputs, MethodResult
from gpdiff.methods.adapt import expand, finetune, forecast, target_start
from gpdiff.utils.errors import GpdiffError


def _anchor(ctx: MethodInputs) -> torch.Tensor:
    if ctx.anchor is None:
        raise GpdiffError("the transfer methods need the anchor; run them through `gpdiff run`, which trains it.")
    return target_start(ctx.model, expand(ctx.anchor, ctx.target.n_nodes))


def run(ctx: MethodInputs) -> MethodResult:
    init = _anchor(ctx)
    params = finetune(ctx.model, init, ctx.target, ctx.finetune, ctx.workdir, ctx.seed, ctx.progress, "transfer")
    return MethodResult(pred=forecast(ctx.model, params, ctx.target), params=params)


def run_zero_shot(ctx: MethodInputs) -> MethodResult:
    init = _anchor(ctx)
    return MethodResult(pred=forecast(ctx.model, init, ctx.target), params=init)
