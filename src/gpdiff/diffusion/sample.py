"""Generation: Gaussian noise + a node's prompts -> that node's base-model parameters.

:func:`generate` samples parameters for every node of a prompt set and returns them as a
:class:`~gpdiff.zoo.params.ParamCollection` in the zoo's format (cities and node ids from the prompts),
so every tool that reads a zoo reads generated parameters too. Sampling is batched over nodes and
seeded: the same model, prompts, sampler, number of steps, seed and batch size give the same
parameters. Argument names follow diffusers' pipelines (``num_inference_steps``, ``guidance_scale``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from gpdiff.diffusion.denoiser import Denoiser
from gpdiff.diffusion.schedule import SAMPLERS, ScheduleConfig, make_sampler, sampling_steps
from gpdiff.diffusion.train import DiffusionModel
from gpdiff.utils.config import require_range
from gpdiff.utils.errors import GpdiffError, unknown_name
from gpdiff.utils.progress import progress_bar
from gpdiff.zoo.params import ParamCollection


@dataclass
class GenerateConfig:
    """Sampling target parameters from the denoiser (diffusers' names)."""

    sampler: str = "ddim"
    num_inference_steps: int = 20
    guidance_scale: float = 1.0  # > 1 needs diffusion.cfg_dropout > 0
    num_samples: int = 4  # samples averaged per node (seeds seed .. seed + num_samples - 1)

    def __post_init__(self) -> None:
        if self.sampler not in SAMPLERS:
            raise unknown_name("sampler", self.sampler, SAMPLERS)
        if self.num_inference_steps < 1:
            raise GpdiffError(f"generate.num_inference_steps must be at least 1, got {self.num_inference_steps}.")
        if self.num_samples < 1:
            raise GpdiffError(f"generate.num_samples must be at least 1, got {self.num_samples}.")
        require_range(self, ("guidance_scale",), "generate.", at_least=0)

    def check_against(self, schedule: ScheduleConfig, cfg_dropout: float) -> None:
        """:class:`GpdiffError` when these settings cannot sample from a denoiser trained with ``schedule``
        and ``cfg_dropout`` (checked when a run config is read, before anything trains): a few-step
        sampler's ``num_inference_steps`` above the training timesteps, ``ddpm`` (ancestral sampling over
        every training step) with another number of steps, guidance without prompt dropout."""
        steps, total = self.num_inference_steps, schedule.num_train_timesteps
        if self.sampler == "ddpm" and steps != total:
            raise GpdiffError(f"generate.sampler ddpm samples over all {total} training steps "
                              f"(diffusion.schedule.num_train_timesteps), but generate.num_inference_steps is "
                              f"{steps}; set it to {total}, or use sampler ddim or dpm++ for fewer steps.")
        if steps > total:
            raise GpdiffError(f"generate.num_inference_steps ({steps}) must be at most the {total} training steps "
                              f"(diffusion.schedule.num_train_timesteps); lower it or train with more.")
        if self.guidance_scale != 1.0 and cfg_dropout <= 0:
            raise GpdiffError(f"generate.guidance_scale {self.guidance_scale} needs an unconditional prediction, which "
                              "a denoiser trained without prompt dropout lacks; set diffusion.cfg_dropout (e.g. 0.1) "
                              "or guidance_scale 1.")


@torch.no_grad()
def sample_tokens(net: Denoiser, schedule: ScheduleConfig, spatial: torch.Tensor, temporal: torch.Tensor,
                  sampler: str = "ddim", num_inference_steps: int | None = None, guidance_scale: float = 1.0,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Run the reverse process for one batch: prompts ``[B, ds]``, ``[B, dt]`` -> tokens ``[B, T, D]``.

    ``num_inference_steps``: denoiser evaluations (``None``: the sampler's default). ``generator`` is
    a CPU generator (noise is drawn on the CPU and moved, so CPU and GPU runs with the same seed
    start from the same noise). ``guidance_scale`` != 1 mixes the conditional and the unconditional
    (null-prompt) predictions: ``u + guidance_scale * (c - u)``.
    """
    shape = net.shape
    dev = next(net.parameters()).device
    sched = make_sampler(sampler, schedule, num_inference_steps)
    b = spatial.shape[0]
    x = torch.randn((b, shape.n_tokens, shape.token_dim), generator=generator).to(dev) * sched.init_noise_sigma
    spatial, temporal = spatial.to(dev), temporal.to(dev)
    keep, drop = torch.zeros(b, dtype=torch.bool, device=dev), torch.ones(b, dtype=torch.bool, device=dev)
    for t in sched.timesteps:
        tt = torch.full((b,), int(t), device=dev, dtype=torch.long)
        inp = sched.scale_model_input(x, t)
        if guidance_scale == 1.0:
            out = net(inp, tt, spatial, temporal)
        else:  # conditional and unconditional in one batch
            both = net(torch.cat([inp, inp]), torch.cat([tt, tt]), torch.cat([spatial, spatial]),
                       torch.cat([temporal, temporal]), torch.cat([keep, drop]))
            cond, uncond = both.chunk(2)
            out = uncond + guidance_scale * (cond - uncond)
        x = sched.step(out, t, x, generator=generator).prev_sample
    return x


def generate_tensors(model: DiffusionModel, spatial: torch.Tensor, temporal: torch.Tensor, sampler: str = "ddim",
                     num_inference_steps: int | None = None, guidance_scale: float = 1.0, seed: int = 0,
                     batch_size: int = 1024, use_ema: bool = True, progress: bool = False) -> torch.Tensor:
    """Parameters ``[n, P]`` (original scale, spec order) for prompt rows ``spatial`` ``[n, ds]`` /
    ``temporal`` ``[n, dt]``; see :func:`sample_tokens` for the sampling arguments."""
    model.check_prompts(spatial, temporal)
    if guidance_scale != 1.0 and model.config.cfg_dropout <= 0:
        raise GpdiffError(f"{model.where()} was trained without prompt dropout, so it has no unconditional "
                          "prediction for guidance; use --guidance-scale 1, or pretrain with --cfg-dropout 0.1.")
    if batch_size < 1:
        raise GpdiffError(f"batch size must be at least 1, got {batch_size}.")
    if not use_ema and not model.raw_weights:
        raise GpdiffError(f"{model.where()} keeps the EMA weights only (no model.safetensors), so it cannot sample "
                          "with the raw weights; drop --no-ema, or train one with `gpdiff pretrain --zoo ... --prompts ...` (it keeps both).")
    net = (model.ema if use_ema else model.denoiser).eval()
    gen = torch.Generator().manual_seed(seed)
    schedule = model.config.schedule
    n = spatial.shape[0]
    chunks = []
    for i in progress_bar(range(0, n, batch_size), disable=not progress, desc=f"generate ({sampler})", unit="batch"):
        tokens = sample_tokens(net, schedule, spatial[i : i + batch_size].float(), temporal[i : i + batch_size].float(),
                               sampler, num_inference_steps, guidance_scale, gen)
        chunks.append(model.decode(tokens))
    return torch.cat(chunks) if chunks else torch.zeros(0, model.n_params)


def generate(model: DiffusionModel, prompts: Any, config: GenerateConfig | None = None, *, seed: int = 0,
             progress: bool = False, batch_size: int = 1024, use_ema: bool = True) -> ParamCollection:
    """The generate stage: parameters for every node of ``prompts`` (a PromptSet), in its node order,
    sampled by ``config`` (default :class:`GenerateConfig`; diffusers' names) from the denoiser ``model``.

    ``config.num_samples`` > 1 averages that many samples per node (seeds ``seed``, ``seed + 1``, ...):
    with an anchored zoo the samples are differences from one point, and their mean forecasts better
    than one sample (BENCHMARKS.md, held-out source nodes). ``batch_size`` prompts are sampled at once;
    ``use_ema``: the EMA weights (default) or the last ones. Raises :class:`GpdiffError` for prompts of
    the wrong size, guidance without prompt dropout, or non-finite samples."""
    g = config or GenerateConfig()
    sampler = g.sampler
    params = torch.stack([generate_tensors(model, prompts.spatial.float(), prompts.temporal.float(), sampler,
                                           g.num_inference_steps, g.guidance_scale, seed + i, batch_size, use_ema,
                                           progress)
                          for i in range(g.num_samples)]).mean(0)
    if not torch.isfinite(params).all():
        raise GpdiffError(f"sampling with {sampler} produced non-finite parameters; try another sampler or more "
                          "steps (this indicates a badly trained denoiser).")
    keys = [tuple(k) for k in prompts.keys()]
    record = {"generated": {"denoiser": str(model.path) if model.path else None, "sampler": sampler,
                            "num_inference_steps": sampling_steps(sampler, model.config.schedule, g.num_inference_steps),
                            "guidance_scale": g.guidance_scale, "seed": seed, "batch_size": batch_size,
                            "ema": use_ema, "num_samples": g.num_samples}}
    return ParamCollection(params, [k[1] for k in keys], [k[0] for k in keys], model.base_model,
                           dict(model.model_config), list(model.spec), {}, record)
