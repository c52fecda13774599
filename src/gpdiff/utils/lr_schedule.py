"""The learning-rate schedule of every gpdiff trainer: linear warm-up, then cosine decay to a floor.

One factor curve (:func:`warmup_cosine`) applied through PyTorch's ``LambdaLR``
(:func:`warmup_cosine_scheduler`), used by the diffusion trainer and the masked-patch prompt encoder.
"""

from __future__ import annotations

import functools
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

FLOOR = 0.1  # the final learning rate, as a fraction of the base one


def warmup_cosine(step: int, warmup: int, total: int, floor: float = FLOOR) -> float:
    """Learning-rate factor at 0-based ``step``: ``(step + 1) / warmup`` during the first ``warmup``
    steps, then a half cosine from 1 down to ``floor`` at step ``total`` (and ``floor`` after it)."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def warmup_cosine_scheduler(optimizer: torch.optim.Optimizer, warmup: int, total: int,
                            start: int = 0) -> LambdaLR:
    """``LambdaLR`` over :func:`warmup_cosine`; call its ``step()`` after every optimiser step.

    The optimiser's current learning rates are the base ones. ``start``: the step a resumed run
    continues at; its learning rate is set at once (``LambdaLR``'s ``last_epoch = start - 1``).
    """
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return LambdaLR(optimizer, functools.partial(warmup_cosine, warmup=warmup, total=total), last_epoch=start - 1)
