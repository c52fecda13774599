"""Transfer: one model of the same architecture trained on all source nodes, then fine-tuned per
target node. The usual pooled pre-training baseline: it learns what is common, not what differs."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from gpdiff.adapt import SourcePool, expand, finetune, forecast, shared_init
from gpdiff.data.windows import WindowBatch
from gpdiff.methods import Context, MethodResult
from gpdiff.models.base import BaseModel
from gpdiff.nodetrain import masked_node_mae
from gpdiff.params import unflatten


@dataclass
class TransferConfig:
    lr: float = 0.005
    max_steps: int = 1500
    nodes_per_step: int = 128
    batch_size: int = 16
    eval_every: int = 50
    patience: int = 6  # evaluations without improvement


def _loss(model: BaseModel, theta: torch.Tensor, batch: WindowBatch) -> torch.Tensor:
    n = batch.x.shape[0]
    pred = model.forward(unflatten(theta.expand(n, -1), model.spec()), batch)
    return masked_node_mae(pred, batch.y, batch.y_mask).mean()


def train_shared(ctx: Context, cfg: TransferConfig = TransferConfig()) -> torch.Tensor:
    """The pooled model's parameters ``[P]``, best by source validation loss."""
    model, device = ctx.model, ctx.target.device
    pool = SourcePool(ctx.sources, model.config.in_channels)
    gen = torch.Generator().manual_seed(ctx.seed)
    val_batch = pool.sample(min(512, int(pool.sizes.sum())), 32, torch.Generator().manual_seed(ctx.seed + 1), "val")
    theta = shared_init(model, int(ctx.zoo.config.get("seed", ctx.seed))).to(device).reshape(1, -1).requires_grad_()
    opt = torch.optim.Adam([theta], lr=cfg.lr)
    best, best_val, bad = theta.detach().clone(), float("inf"), 0
    bar = tqdm(range(cfg.max_steps), desc="transfer (pooled)", disable=not ctx.progress, dynamic_ncols=True)
    for step in bar:
        loss = _loss(model, theta, pool.sample(cfg.nodes_per_step, cfg.batch_size, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % cfg.eval_every == 0:
            with torch.no_grad():
                v = float(_loss(model, theta, val_batch))
            bar.set_postfix(val=f"{v:.4f}")
            if v < best_val:
                best, best_val, bad = theta.detach().clone(), v, 0
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
    bar.close()
    return copy.deepcopy(best[0]).cpu()


def run(ctx: Context) -> MethodResult:
    init = expand(train_shared(ctx, ctx.settings(TransferConfig)), ctx.target.n_nodes)
    params = finetune(ctx.model, init, ctx.target, ctx.finetune, ctx.workdir, ctx.seed, ctx.progress, "transfer")
    return MethodResult(pred=forecast(ctx.model, params, ctx.target), params=params, init=init)
