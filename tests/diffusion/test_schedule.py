"""The noise schedule and the samplers built from it."""

from __future__ import annotations

import pytest
import torch

from gpdiff.diffusion import SAMPLERS, NoiseSchedule, ScheduleConfig, make_sampler
from gpdiff.utils.errors import GpdiffError

# diffusers' DPM-Solver++ calls np.array on a tensor in a way numpy 2 deprecates (not ours to fix)
pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
              pytest.mark.usefixtures("one_thread")]


# ----------------------------------------------------------------------------- schedule
def test_schedule_defaults_are_the_papers_and_never_clip() -> None:
    cfg = ScheduleConfig()
    assert (cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end, cfg.beta_schedule, cfg.prediction_type) == (
        500, 1e-5, 0.02, "linear", "v_prediction")
    sched = NoiseSchedule(cfg).scheduler
    assert torch.allclose(sched.betas, torch.linspace(1e-5, 0.02, 500))
    assert set(SAMPLERS) == {"ddpm", "ddim", "dpm++"}
    assert len(make_sampler("ddpm", cfg).timesteps) == 500
    assert len(make_sampler("ddim", cfg, 20).timesteps) == 20
    assert make_sampler("dpm++", cfg, 10).config.algorithm_type == "dpmsolver++"
    with pytest.raises(GpdiffError, match="all 500 training steps; got --num-inference-steps 50"):
        make_sampler("ddpm", cfg, 50)
    with pytest.raises(GpdiffError, match="unknown sampler"):
        make_sampler("euler", cfg)
    cos = NoiseSchedule(ScheduleConfig(beta_schedule="squaredcos_cap_v2", prediction_type="epsilon"))
    x0, eps, t = torch.randn(4, 3, 2), torch.randn(4, 3, 2), torch.tensor([0, 10, 100, 499])
    assert torch.equal(cos.target(x0, eps, t), eps)
    v = NoiseSchedule(cfg)
    ab = v.scheduler.alphas_cumprod[t][:, None, None]
    assert torch.allclose(v.target(x0, eps, t), ab.sqrt() * eps - (1 - ab).sqrt() * x0, atol=1e-6)
    assert torch.allclose(v.add_noise(x0, eps, t), ab.sqrt() * x0 + (1 - ab).sqrt() * eps, atol=1e-6)


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_every_sampler_predicts_v_and_never_clips(name: str) -> None:
    s = make_sampler(name, ScheduleConfig())
    assert not getattr(s.config, "clip_sample", False) and not s.config.thresholding
    assert s.config.prediction_type == "v_prediction"
