"""Generative pre-training: a Transformer diffusion model over parameter tokens, conditioned on prompts.

- :mod:`~gpdiff.diffusion.denoiser`: the Transformer denoiser (``DenoiserConfig``, ``TokenShape``);
- :mod:`~gpdiff.diffusion.conditioning`: the five conditioning strategies (registry ``CONDITIONING``);
- :mod:`~gpdiff.diffusion.schedule`: noise schedule, training targets and samplers (diffusers; ``SAMPLERS``);
- :mod:`~gpdiff.diffusion.train`: ``DiffusionConfig``, ``DiffusionModel`` (save / load) and training;
- :mod:`~gpdiff.diffusion.functional`: the optional functional loss (estimates scored as forecasters);
- :mod:`~gpdiff.diffusion.sample`: generation of parameter collections from prompts.
"""

from gpdiff.diffusion.conditioning import CONDITIONING
from gpdiff.diffusion.denoiser import Denoiser, DenoiserConfig, TokenShape
from gpdiff.diffusion.sample import generate, generate_tensors, sample_tokens
from gpdiff.diffusion.schedule import (
    SAMPLERS,
    NoiseSchedule,
    ScheduleConfig,
    make_sampler,
)
from gpdiff.diffusion.train import (
    PRESETS,
    DiffusionConfig,
    DiffusionModel,
    align_prompts,
    fit,
    train_denoiser,
)

__all__ = [
    "CONDITIONING",
    "PRESETS",
    "SAMPLERS",
    "Denoiser",
    "DenoiserConfig",
    "DiffusionConfig",
    "DiffusionModel",
    "NoiseSchedule",
    "ScheduleConfig",
    "TokenShape",
    "align_prompts",
    "fit",
    "generate",
    "generate_tensors",
    "make_sampler",
    "sample_tokens",
    "train_denoiser",
]
