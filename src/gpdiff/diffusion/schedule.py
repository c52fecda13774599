"""Noise schedules, training targets and samplers, all from diffusers' maintained schedulers.

:class:`NoiseSchedule` holds the training side: the forward (noising) process and the regression
target of the chosen prediction type, both computed by :class:`diffusers.DDPMScheduler`
(``add_noise``, ``get_velocity``). :data:`SAMPLERS` maps a sampler name to a factory that builds a
diffusers scheduler with exactly the same betas, for the reverse process:

- ``ddpm``: ancestral sampling over every training step (the paper's sampler);
- ``ddim``: deterministic DDIM (eta = 0) over a few steps;
- ``dpm++``: DPM-Solver++ (2nd-order multistep) over a few steps.

Clipping of samples to [-1, 1] is off everywhere: the denoiser works on standardised parameters,
which are unbounded (the released GPD code clamps them, see DESIGN.md section 4).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from gpdiff.utils.config import require_range
from gpdiff.utils.errors import GpdiffError, unknown_name

PREDICTION_TYPES = ("v_prediction", "epsilon", "sample")
BETA_SCHEDULES = ("linear", "squaredcos_cap_v2")


@dataclass(frozen=True)
class ScheduleConfig:
    """The forward process. Defaults are the paper's: linear betas 1e-5..0.02 over 500 steps, v-prediction."""

    num_train_timesteps: int = 500
    beta_start: float = 1e-5
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    prediction_type: str = "v_prediction"

    def __post_init__(self) -> None:
        if self.prediction_type not in PREDICTION_TYPES:
            raise unknown_name("prediction type", self.prediction_type, PREDICTION_TYPES)
        if self.beta_schedule not in BETA_SCHEDULES:
            raise unknown_name("beta schedule", self.beta_schedule, BETA_SCHEDULES)
        if self.num_train_timesteps < 2:
            raise GpdiffError(f"num_train_timesteps must be at least 2, got {self.num_train_timesteps}.")
        require_range(self, ("beta_start", "beta_end"), "diffusion.schedule.", above=0, below=1)
        if self.beta_start >= self.beta_end:
            raise GpdiffError(f"diffusion.schedule.beta_start ({self.beta_start}) must be below beta_end "
                              f"({self.beta_end}): the noise grows over the steps.")

    def scheduler_kwargs(self) -> dict[str, Any]:
        return {"num_train_timesteps": self.num_train_timesteps, "beta_start": self.beta_start,
                "beta_end": self.beta_end, "beta_schedule": self.beta_schedule,
                "prediction_type": self.prediction_type}


class NoiseSchedule:
    """Training side of the diffusion: noising and targets, via ``DDPMScheduler``."""

    def __init__(self, config: ScheduleConfig) -> None:
        self.config = config
        self.scheduler = DDPMScheduler(**config.scheduler_kwargs(), clip_sample=False)

    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.scheduler.add_noise(x0, noise, t)

    def target(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """What the denoiser regresses on for the configured prediction type."""
        kind = self.config.prediction_type
        if kind == "epsilon":
            return noise
        if kind == "sample":
            return x0
        return self.scheduler.get_velocity(x0, noise, t)

    def predict_x0(self, pred: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The clean sample implied by the denoiser's output ``pred`` at noisy ``xt`` and steps ``t``
        ``[B]`` (the inverse of :meth:`target` given :meth:`add_noise`; differentiable in ``pred``):
        v: ``sqrt(a) xt - sqrt(1 - a) v``; epsilon: ``(xt - sqrt(1 - a) eps) / sqrt(a)``; sample:
        ``pred`` (``a`` = the cumulative product of alphas at ``t``, DDPM eq. 4 / Salimans & Ho 2022)."""
        kind = self.config.prediction_type
        if kind == "sample":
            return pred
        a = self.alpha_bar(t).to(pred.dtype).reshape(-1, *([1] * (pred.dim() - 1)))
        if kind == "epsilon":
            return (xt - (1 - a).sqrt() * pred) / a.sqrt()
        return a.sqrt() * xt - (1 - a).sqrt() * pred

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        """Cumulative product of alphas at steps ``t`` ``[B]`` (the signal's share of the variance), on ``t``'s device."""
        return self.scheduler.alphas_cumprod.to(t.device)[t]


DEFAULT_FEW_STEPS = 20  # DDIM-20 matched DDIM-50 on held-out nodes (BENCHMARKS.md, sampler speed)


def _few_steps(config: ScheduleConfig, num_inference_steps: int | None) -> int:
    steps = DEFAULT_FEW_STEPS if num_inference_steps is None else int(num_inference_steps)
    if not 1 <= steps <= config.num_train_timesteps:
        raise GpdiffError(f"--num-inference-steps must be between 1 and the {config.num_train_timesteps} training "
                          f"steps, got {steps}.")
    return steps


def _ddpm(config: ScheduleConfig, num_inference_steps: int | None) -> SchedulerMixin:
    if num_inference_steps is not None and num_inference_steps != config.num_train_timesteps:
        raise GpdiffError(
            f"the ddpm sampler is ancestral sampling over all {config.num_train_timesteps} training steps; "
            f"got --num-inference-steps {num_inference_steps}. Leave --num-inference-steps out, or use "
            "--sampler ddim / dpm++ for fewer steps."
        )
    s = DDPMScheduler(**config.scheduler_kwargs(), clip_sample=False)
    s.set_timesteps(config.num_train_timesteps)
    return s


def _ddim(config: ScheduleConfig, num_inference_steps: int | None) -> SchedulerMixin:
    s = DDIMScheduler(**config.scheduler_kwargs(), clip_sample=False, set_alpha_to_one=True,
                      timestep_spacing="trailing")
    s.set_timesteps(_few_steps(config, num_inference_steps))
    return s


def _dpmpp(config: ScheduleConfig, num_inference_steps: int | None) -> SchedulerMixin:
    s = DPMSolverMultistepScheduler(**config.scheduler_kwargs(), algorithm_type="dpmsolver++", solver_order=2,
                                    thresholding=False, timestep_spacing="trailing")
    s.set_timesteps(_few_steps(config, num_inference_steps))
    return s


# name -> factory(config, num_inference_steps or None) returning a diffusers scheduler with its timesteps set.
SAMPLERS: dict[str, Callable[[ScheduleConfig, int | None], SchedulerMixin]] = {
    "ddpm": _ddpm,
    "ddim": _ddim,
    "dpm++": _dpmpp,
}


def sampling_steps(name: str, config: ScheduleConfig, num_inference_steps: int | None = None) -> int:
    """The number of denoiser evaluations ``name`` makes with ``num_inference_steps`` (``None``: its default)."""
    if num_inference_steps is not None:
        return int(num_inference_steps)
    return config.num_train_timesteps if name == "ddpm" else DEFAULT_FEW_STEPS


def make_sampler(name: str, config: ScheduleConfig, num_inference_steps: int | None = None) -> SchedulerMixin:
    """A diffusers scheduler for ``name`` with its timesteps set (``None``: the sampler's default number)."""
    if name not in SAMPLERS:
        raise unknown_name("sampler", name, SAMPLERS)
    return SAMPLERS[name](config, num_inference_steps)
