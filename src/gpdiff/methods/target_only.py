"""Target-only: node models from the zoo's shared initialisation, trained on the few target days."""

from __future__ import annotations

from gpdiff.methods import MethodInputs, MethodResult
from gpdiff.methods.adapt import expand, finetune, forecast, shared_init, target_start


def run(ctx: MethodInputs) -> MethodResult:
    init = target_start(ctx.model, expand(shared_init(ctx.model, int(ctx.zoo.config.get("seed", ctx.seed))),
                                          ctx.target.n_nodes))
    params = finetune(ctx.model, init, ctx.target, ctx.finetune, ctx.workdir, ctx.seed, ctx.progress, "target-only")
    return MethodResult(pred=forecast(ctx.model, params, ctx.target), params=params)
