"""`gpdiff diffusion pretrain` and `generate` on the command line."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from gpdiff.cli import main
from gpdiff.diffusion import CONDITIONING, DiffusionModel
from gpdiff.prompts import PromptSet
from gpdiff.zoo.params import ParamCollection
from tests.conftest import N_PARAMS, toy

# diffusers' DPM-Solver++ calls np.array on a tensor in a way numpy 2 deprecates (not ours to fix)
pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
              pytest.mark.usefixtures("one_thread")]

CPU = "cpu"  # every training run here: the tensors are tiny


# ----------------------------------------------------------------------------- command line
def test_cli_pretrain_and_generate(tmp_path: Path) -> None:
    zoo, prompts = toy()
    zoo.save(tmp_path / "zoo" / "zoo.safetensors")
    prompts.save(tmp_path / "prompts" / "prompts.safetensors")
    target = PromptSet(prompts.spatial[:5], prompts.temporal[:5], [f"t{i}" for i in range(5)], ["tgt"] * 5)
    target.save(tmp_path / "target.safetensors")
    runner = CliRunner()
    (tmp_path / "d.yaml").write_text("preset: small\ndenoiser:\n  n_heads: 2\n  mlp_ratio: 2.0\nschedule:\n"
                                     "  beta_end: 0.01\nlr: 0.001\n")
    res = runner.invoke(main, ["pretrain", "--zoo", str(tmp_path / "zoo"), "--prompts", str(tmp_path / "prompts"),
                               "--condition", "adanorm", "--out", str(tmp_path / "d"), "--max-steps", "5", "--d-model", "32",
                               "--layers", "1", "--token-dim", "16", "--num-train-timesteps", "400",
                               "--config", str(tmp_path / "d.yaml"), "--seed", "3", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "adanorm" in res.output and "40 nodes" in res.output
    model = DiffusionModel.load(tmp_path / "d", device=CPU)
    c = model.config  # flags over the file over the preset
    assert (c.denoiser.condition, c.denoiser.d_model, c.denoiser.n_heads, c.denoiser.mlp_ratio, c.denoiser.max_tokens,
            c.schedule.num_train_timesteps, c.schedule.beta_end, c.max_steps, c.lr) == (
        "adanorm", 32, 2, 2.0, 64, 400, 0.01, 5, 0.001)
    assert (model.info["seed"], model.info["device"]) == (3, "cpu")
    res = runner.invoke(main, ["generate", "--model", str(tmp_path / "d"), "--prompts", str(tmp_path / "target.safetensors"),
                               "--out", str(tmp_path / "gen.safetensors"), "--num-inference-steps", "5",
                               "--zoo", str(tmp_path / "zoo"), "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    gen = ParamCollection.load(tmp_path / "gen.safetensors")
    assert gen.keys() == target.keys() and gen.params.shape == (5, N_PARAMS)
    assert gen.config["generated"]["num_inference_steps"] == 5
    res = runner.invoke(main, ["generate", "--model", str(tmp_path / "d"), "--prompts", str(tmp_path / "target.safetensors"),
                               "--out", str(tmp_path / "g2.safetensors"), "--sampler", "ddpm", "--num-inference-steps",
                               "50"])
    assert res.exit_code == 2 and "ancestral sampling over all 400" in res.output
    res = runner.invoke(main, ["generate", "--model", str(tmp_path / "d"), "--prompts", str(tmp_path / "target.safetensors"),
                               "--out", str(tmp_path / "g3.safetensors"), "--guidance-scale", "2"])
    assert res.exit_code == 2 and "--guidance-scale 1" in res.output
    res = runner.invoke(main, ["pretrain", "--zoo", str(tmp_path / "zoo"), "--prompts", str(tmp_path / "target.safetensors"),
                               "--out", str(tmp_path / "e"), "--quiet"])
    assert res.exit_code == 2 and "have no prompt" in res.output and "Traceback" not in res.output
    res = runner.invoke(main, ["pretrain", "--help"])
    assert all(name in res.output for name in CONDITIONING)
