"""Reptile (Nichol et al., 2018): a meta-learned initialisation, then fine-tuned per target node.

Every outer step draws a batch of source nodes (every source city equally likely, ``balance``),
runs ``inner_steps`` of Adam on each node's own windows from the current initialisation (all nodes
at once, node-batched), and moves the initialisation towards the mean of the adapted parameters
with a step size annealed to zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from gpdiff.methods import MethodInputs, MethodResult, SourceSide
from gpdiff.methods.adapt import expand, finetune, forecast, shared_init, target_start
from gpdiff.utils.config import require_at_least_one, to_mapping
from gpdiff.utils.errors import GpdiffError, unknown_name
from gpdiff.utils.progress import progress_bar
from gpdiff.zoo.nodetrain import adam_update
from gpdiff.zoo.params import unflatten
from gpdiff.zoo.sourcefit import SourceFit
from gpdiff.zoo.sourcepool import BALANCES, SourcePool


@dataclass
class ReptileConfig:
    RENAMED: ClassVar[dict[str, str]] = {"meta_steps": "max_steps"}  # gpdiff 0.1.0 before issue 26
    max_steps: int = 150  # meta-steps (outer updates)
    nodes_per_step: int = 64
    inner_steps: int = 5
    inner_lr: float = 0.005
    batch_size: int = 16
    meta_lr: float = 1.0  # annealed linearly to 0
    balance: str = "city"  # source nodes drawn with every city equally likely, or proportional to its size

    def __post_init__(self) -> None:
        require_at_least_one(self, ("max_steps", "nodes_per_step", "inner_steps", "batch_size"), "methods.reptile.")
        if not (math.isfinite(self.inner_lr) and self.inner_lr > 0 and math.isfinite(self.meta_lr) and self.meta_lr > 0):
            raise GpdiffError(f"methods.reptile: inner_lr and meta_lr must be numbers > 0, got {self.inner_lr} and "
                              f"{self.meta_lr}.")
        if self.balance not in BALANCES:
            raise unknown_name("methods.reptile.balance", self.balance, BALANCES)


def meta_learn(ctx: SourceSide, cfg: ReptileConfig = ReptileConfig()) -> torch.Tensor:
    """The meta-learned start ``[P]`` (on the CPU), from the zoo's shared initialisation, on ``ctx.sources``.
    Raises :class:`GpdiffError` without source data."""
    if not ctx.sources:
        raise GpdiffError("reptile meta-learns on the source cities' data; none given.")
    model, device = ctx.model, ctx.sources[0].device
    spec = model.spec()
    pool = SourcePool(ctx.sources, model.config.in_channels, cfg.balance)
    gen = torch.Generator().manual_seed(ctx.seed)
    zoo_seed = ctx.zoo.config.get("seed", ctx.seed) if ctx.zoo is not None else ctx.seed
    theta = shared_init(model, int(zoo_seed)).to(device)
    for it in progress_bar(range(cfg.max_steps), desc="reptile", disable=not ctx.progress, unit="step"):
        drawn = pool.draw_nodes(cfg.nodes_per_step, gen)
        n = sum(int(nodes.numel()) for _, nodes in drawn)
        phi = theta.reshape(1, -1).repeat(n, 1)
        m1, m2 = torch.zeros_like(phi), torch.zeros_like(phi)
        for k in range(cfg.inner_steps):
            batch = pool.batch(drawn, cfg.batch_size, gen)
            leaf = phi.detach().requires_grad_()
            loss = model.training_loss(unflatten(leaf, spec), batch).sum()
            (grad,) = torch.autograd.grad(loss, [leaf])
            with torch.no_grad():
                adam_update([phi], [grad], [m1], [m2], k + 1, cfg.inner_lr)
        step = cfg.meta_lr * (1 - it / cfg.max_steps)
        theta = theta + step * (phi.mean(0) - theta)
    return theta.cpu()


def fit_sources(side: SourceSide) -> SourceFit:
    """:data:`gpdiff.methods.SOURCE_FITS` entry: :func:`meta_learn` with the method's settings and seed, the
    start as tensor ``init [P]``."""
    cfg = side.settings(ReptileConfig)
    return SourceFit({"init": meta_learn(side, cfg).float()}, {"settings": to_mapping(cfg), "seed": side.seed})


def run(ctx: MethodInputs) -> MethodResult:
    """The method: the meta-learned start (or the one in ``ctx.fits``, a pretrained folder's) for every
    target node, fine-tuned."""
    init = target_start(ctx.model, expand(ctx.source_fit("reptile").tensors["init"], ctx.target.n_nodes))
    params = finetune(ctx.model, init, ctx.target, ctx.finetune, ctx.workdir, ctx.seed, ctx.progress, "reptile")
    return MethodResult(pred=forecast(ctx.model, params, ctx.target), params=params)
