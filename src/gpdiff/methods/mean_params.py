"""Mean of the source node parameters as every target node's starting point, then fine-tuned."""

from __future__ import annotations

from gpdiff.methods import MethodInputs, MethodResult
from gpdiff.methods.adapt import expand, finetune, forecast, mean_parameters, target_start


def run(ctx: MethodInputs) -> MethodResult:
    init = target_start(ctx.model, expand(mean_parameters(ctx.zoo), ctx.target.n_nodes))
    params = finetune(ctx.model, init, ctx.target, ctx.finetune, ctx.workdir, ctx.seed, ctx.progress, "mean-params")
    return MethodResult(pred=forecast(ctx.model, params, ctx.target), params=params)
