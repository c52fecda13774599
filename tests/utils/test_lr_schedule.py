"""The warm-up cosine learning-rate factor and its LambdaLR scheduler."""

from __future__ import annotations

import pytest
import torch

from gpdiff.utils.lr_schedule import warmup_cosine, warmup_cosine_scheduler


def test_lambda_lr_schedule_follows_the_warmup_cosine_factor() -> None:
    warmup, total, base = 5, 30, 0.01
    assert [warmup_cosine(i, warmup, total) for i in (0, 4, 5)] == [0.2, 1.0, 1.0]
    assert warmup_cosine(total, warmup, total) == pytest.approx(0.1) and warmup_cosine(total + 7, warmup, total) == (
        warmup_cosine(total, warmup, total))
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=base)
    sched = warmup_cosine_scheduler(opt, warmup, total)
    seen = []
    for _ in range(total):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == [base * warmup_cosine(i, warmup, total) for i in range(total)]
    assert all(a >= b for a, b in zip(seen[warmup - 1 :], seen[warmup:]))  # decays after the warm-up
    resumed = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=base)
    warmup_cosine_scheduler(resumed, warmup, total, start=12)
    assert resumed.param_groups[0]["lr"] == seen[12]
