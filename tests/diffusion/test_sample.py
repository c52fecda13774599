"""Sampling: classifier-free guidance."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpdiff.diffusion import fit, generate, generate_tensors
from gpdiff.diffusion.sample import GenerateConfig
from gpdiff.utils.errors import GpdiffError
from tests.conftest import tiny_config, toy

# diffusers' DPM-Solver++ calls np.array on a tensor in a way numpy 2 deprecates (not ours to fix)
pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
              pytest.mark.usefixtures("one_thread")]

CPU = "cpu"  # every training run here: the tensors are tiny


def test_classifier_free_guidance(tmp_path: Path) -> None:
    zoo, prompts = toy()
    plain = fit(zoo, prompts.spatial, prompts.temporal, tiny_config(max_steps=5), progress=False, device=CPU)
    with pytest.raises(GpdiffError, match="without prompt dropout.*--guidance-scale 1.*--cfg-dropout"):
        generate(plain, prompts, GenerateConfig(guidance_scale=2.0))
    model = fit(zoo, prompts.spatial, prompts.temporal, tiny_config(max_steps=5, cfg_dropout=0.3), progress=False,
                device=CPU)
    a = generate_tensors(model, prompts.spatial[:4], prompts.temporal[:4], "ddim", 5, guidance_scale=1.0)
    b = generate_tensors(model, prompts.spatial[:4], prompts.temporal[:4], "ddim", 5, guidance_scale=3.0)
    assert torch.isfinite(b).all() and not torch.allclose(a, b)
