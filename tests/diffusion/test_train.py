"""Generative pre-training: the config, training, saving, resuming, generating, bad inputs, residual generation
around the anchor, members and tensor subsets, and whether it learns the synthetic prompt-to-parameter mapping."""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from diffusers.training_utils import EMAModel

from gpdiff.diffusion import (
    PRESETS,
    DenoiserConfig,
    DiffusionConfig,
    DiffusionModel,
    fit,
    generate,
    generate_tensors,
    train_denoiser,
)
from gpdiff.diffusion.sample import GenerateConfig
from gpdiff.diffusion.schedule import sampling_steps
from gpdiff.models.base import ParamSpec
from gpdiff.prompts import PromptSet
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import read_yaml, write_yaml
from gpdiff.zoo.params import ParamCollection, Standardizer, flatten
from tests.conftest import REPO, SPEC, tiny_config, toy

# diffusers' DPM-Solver++ calls np.array on a tensor in a way numpy 2 deprecates (not ours to fix)
pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
              pytest.mark.usefixtures("one_thread")]

CPU = "cpu"  # every training run here: the tensors are tiny


# ----------------------------------------------------------------------------- does it learn the mapping?
def _benchmark_module():  # type: ignore[no-untyped-def]
    path = REPO / "benchmarks" / "diffusion_synthetic.py"
    spec = importlib.util.spec_from_file_location("diffusion_synthetic", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["diffusion_synthetic"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def _anchored_toy() -> tuple[ParamCollection, object]:
    zoo, prompts = toy()
    anchor = torch.linspace(-1, 1, zoo.params.shape[1])
    zoo = replace(zoo, params=anchor + 0.1 * zoo.params, anchor=anchor, cities=["c"] * 30 + ["d"] * 10)
    prompts = replace(prompts, cities=zoo.cities)
    return zoo, prompts


# ----------------------------------------------------------------------------- config
def test_nested_config_from_preset_and_overrides() -> None:
    small = DiffusionConfig()
    assert DiffusionConfig.from_dict({}) == DiffusionConfig.from_preset("small") == small
    assert (small.denoiser.d_model, small.denoiser.n_layers, small.denoiser.n_heads, small.denoiser.max_tokens,
            small.schedule.num_train_timesteps, small.max_steps, small.batch_size, small.lr, small.warmup) == (
        128, 4, 4, 64, 500, 400, 64, 5e-3, 50)
    cfg = DiffusionConfig.from_dict({"preset": "paper", "denoiser": {"d_model": 256, "condition": "adanorm"},
                                     "schedule": {"prediction_type": "epsilon"}, "lr": 1e-3})
    assert cfg.preset == "paper" and isinstance(cfg.denoiser, DenoiserConfig)
    assert (cfg.denoiser.d_model, cfg.denoiser.n_heads, cfg.denoiser.max_tokens, cfg.denoiser.condition) == (
        256, 8, 256, "adanorm")  # the override, and the preset's other denoiser sizes
    assert (cfg.schedule.prediction_type, cfg.schedule.num_train_timesteps, cfg.max_steps, cfg.lr) == (
        "epsilon", 500, 80_000, 1e-3)
    assert DiffusionConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["denoiser"]["d_model"] == 256
    assert DiffusionConfig.from_preset("paper", denoiser={"d_model": None, "n_layers": 2}, max_steps=None) == (
        DiffusionConfig.from_dict({"preset": "paper", "denoiser": {"n_layers": 2}}))  # None: not set
    assert set(PRESETS) == {"small", "paper"} and not {"seed", "device"} & set(cfg.to_dict())
    with pytest.raises(GpdiffError, match=r"unknown diffusion config field\(s\) \['denoiser.d_modle'\]"):
        DiffusionConfig.from_dict({"denoiser": {"d_modle": 64}})
    with pytest.raises(GpdiffError, match=r"\['schedule.steps'\]"):
        DiffusionConfig.from_dict({"preset": "paper", "schedule": {"steps": 100}})
    with pytest.raises(GpdiffError, match=r"\['seed'\]"):
        DiffusionConfig.from_dict({"seed": 1})
    with pytest.raises(GpdiffError, match="unknown denoiser preset 'huge'"):
        DiffusionConfig.from_dict({"preset": "huge"})


# ----------------------------------------------------------------------------- training and sampling
def test_train_save_load_generate_deterministic(tmp_path: Path) -> None:
    zoo, prompts = toy()
    model = train_denoiser(zoo, prompts, tiny_config(), workdir=tmp_path / "d", progress=False, device=CPU)
    assert {p.name for p in (tmp_path / "d").iterdir()} == {"config.yaml", "model.safetensors", "ema.safetensors",
                                                          "standardizer.safetensors", "history.csv"}
    saved = read_yaml(tmp_path / "d" / "config.yaml")
    assert saved["diffusion"] == tiny_config().to_dict() and saved["diffusion"]["denoiser"]["d_model"] == 32
    assert (saved["info"]["seed"], saved["info"]["device"]) == (0, "cpu")
    assert saved["token_shape"] == {"n_tokens": model.tokenizer.n_tokens, "token_dim": 16, "spatial_dim": 5,
                                    "temporal_dim": 7}
    assert not torch.equal(model.ema.head.weight, model.denoiser.head.weight)  # the EMA, not the last weights
    tokens = model.encode(zoo.params)
    assert tokens.shape == (40, model.tokenizer.n_tokens, 16)
    assert torch.allclose(model.decode(tokens), zoo.params, atol=1e-5)
    loaded = DiffusionModel.load(tmp_path / "d", device=CPU)
    for a, b in zip(model.ema.state_dict().values(), loaded.ema.state_dict().values()):
        assert torch.equal(a, b)
    five = GenerateConfig("ddim", num_inference_steps=5, num_samples=1)
    g1 = generate(loaded, prompts, five, seed=3)
    g2 = generate(model, prompts, five, seed=3)
    g3 = generate(model, prompts, five, seed=4)
    assert g1.keys() == prompts.keys() and g1.model == "toy" and g1.spec == SPEC
    record = g1.config["generated"]
    assert (record["sampler"], record["num_inference_steps"], record["guidance_scale"], record["seed"]) == (
        "ddim", 5, 1.0, 3)
    assert torch.equal(g1.params, g2.params) and not torch.allclose(g1.params, g3.params)
    for sampler in ("ddpm", "dpm++"):
        g = GenerateConfig(sampler, sampling_steps(sampler, model.config.schedule), num_samples=1)
        assert torch.isfinite(generate(model, prompts.select(prompts.keys()[:4]), g, seed=0).params).all()
    out = g1.save(tmp_path / "gen.safetensors")
    assert ParamCollection.load(out).keys() == prompts.keys()
    # the same command again reuses the finished run; another config or seed in the same folder is refused
    again = train_denoiser(zoo, prompts, tiny_config(), workdir=tmp_path / "d", progress=False, device=CPU)
    assert torch.equal(again.ema.head.weight, model.ema.head.weight)
    with pytest.raises(GpdiffError, match="another config, seed, number of processes or other data"):
        train_denoiser(zoo, prompts, tiny_config(lr=1e-4), workdir=tmp_path / "d", progress=False, device=CPU)
    with pytest.raises(GpdiffError, match="another config, seed, number of processes or other data"):
        train_denoiser(zoo, prompts, tiny_config(), workdir=tmp_path / "d", progress=False, seed=1, device=CPU)


def test_a_folder_with_the_ema_weights_only_generates_the_same_and_refuses_raw_sampling(tmp_path: Path) -> None:
    """What a finished ``gpdiff run`` diffusion stage keeps: no model.safetensors. It loads, generates what the
    full folder generates, finishes a rerun of the trainer, and says so when asked for the raw weights."""
    zoo, prompts = toy()
    model = train_denoiser(zoo, prompts, tiny_config(), workdir=tmp_path / "d", progress=False, device=CPU)
    full = DiffusionModel.load(tmp_path / "d", device=CPU)
    assert full.raw_weights and torch.equal(full.denoiser.head.weight, model.denoiser.head.weight)
    (tmp_path / "d" / "model.safetensors").unlink()
    ema_only = DiffusionModel.load(tmp_path / "d", device=CPU)
    assert not ema_only.raw_weights and torch.equal(ema_only.denoiser.head.weight, model.ema.head.weight)
    five = GenerateConfig("ddim", num_inference_steps=5, num_samples=2)
    assert torch.equal(generate(ema_only, prompts, five, seed=1).params, generate(full, prompts, five, seed=1).params)
    with pytest.raises(GpdiffError, match="keeps the EMA weights only .* drop --no-ema"):
        generate_tensors(ema_only, prompts.spatial, prompts.temporal, use_ema=False)
    again = train_denoiser(zoo, prompts, tiny_config(), workdir=tmp_path / "d", progress=False, device=CPU)
    assert torch.equal(again.ema.head.weight, model.ema.head.weight)


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo, prompts = toy()
    full = train_denoiser(zoo, prompts, tiny_config(), workdir=tmp_path / "a", progress=False, seed=5, device=CPU)
    real_step, calls = EMAModel.step, {"n": 0}

    def crash_at_15(self, parameters):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 15:  # iteration 15 of 20: after the checkpoint at 10
            raise KeyboardInterrupt
        real_step(self, parameters)

    monkeypatch.setattr(EMAModel, "step", crash_at_15)
    with pytest.raises(KeyboardInterrupt):
        train_denoiser(zoo, prompts, tiny_config(), workdir=tmp_path / "b", progress=False, seed=5, device=CPU)
    assert (tmp_path / "b" / "checkpoint.safetensors").is_file() and not (tmp_path / "b" / "config.yaml").exists()
    monkeypatch.setattr(EMAModel, "step", real_step)
    with pytest.raises(GpdiffError, match="checkpoint of a run with another config, seed or other data"):
        train_denoiser(zoo, prompts, tiny_config(), workdir=tmp_path / "b", progress=False, seed=6, device=CPU)
    resumed = train_denoiser(zoo, prompts, tiny_config(), workdir=tmp_path / "b", progress=False, seed=5, device=CPU)
    assert not (tmp_path / "b" / "checkpoint.safetensors").exists()
    for name in ("denoiser", "ema"):
        for (k, a), b in zip(getattr(full, name).state_dict().items(), getattr(resumed, name).state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k} differs after resume"
    assert (tmp_path / "a" / "history.csv").read_text() == (tmp_path / "b" / "history.csv").read_text()


def test_bad_inputs_give_clear_errors(tmp_path: Path) -> None:
    zoo, prompts = toy()
    other = PromptSet(prompts.spatial[:30], prompts.temporal[:30], [f"x{i}" for i in range(30)], ["c"] * 30)
    with pytest.raises(GpdiffError, match=r"40 of 40 zoo nodes have no prompt \(e\.g\. c/n0, c/n1"):
        train_denoiser(zoo, other, tiny_config(), progress=False, device=CPU)
    model = fit(zoo, prompts.spatial, prompts.temporal, tiny_config(max_steps=2), progress=False, device=CPU)
    with pytest.raises(GpdiffError, match="spatial 4 / temporal 7.*trained on spatial 5 / temporal 7"):
        generate_tensors(model, torch.zeros(3, 4), torch.zeros(3, 7))
    model.check_base("toy", {"preset": "small"}, SPEC)
    with pytest.raises(GpdiffError, match="base model 'toy' \\(preset 'small'\\), not 'stgcn'"):
        model.check_base("stgcn", {"preset": "small"}, SPEC)
    with pytest.raises(GpdiffError, match="preset 'paper'"):
        model.check_base("toy", {"preset": "paper"}, SPEC)
    with pytest.raises(GpdiffError, match="different parameter spec"):
        model.check_base("toy", {"preset": "small"}, [*SPEC[:-1], ParamSpec("out", (4, 6), "temporal")])
    with pytest.raises(GpdiffError, match="no trained denoiser"):
        DiffusionModel.load(tmp_path)
    # a folder whose weights come from another preset
    model.save(tmp_path / "m")
    big = fit(zoo, prompts.spatial, prompts.temporal, tiny_config(max_steps=1, denoiser={"d_model": 64}), progress=False,
              device=CPU)
    big.save(tmp_path / "big")
    (tmp_path / "big" / "ema.safetensors").replace(tmp_path / "m" / "ema.safetensors")
    with pytest.raises(GpdiffError, match="does not match the denoiser described in config.yaml"):
        DiffusionModel.load(tmp_path / "m")
    # a folder written before the config became a tree (flat diffusion settings, a "denoiser" section)
    old = read_yaml(tmp_path / "big" / "config.yaml")
    old["diffusion"] = {"d_model": 64, "seed": 0, "device": "cpu"}
    old["denoiser"] = old.pop("token_shape")
    write_yaml(tmp_path / "big" / "config.yaml", old)
    with pytest.raises(GpdiffError, match="does not describe a denoiser of this gpdiff version"):
        DiffusionModel.load(tmp_path / "big")


def test_learns_the_synthetic_prompt_to_parameter_mapping() -> None:
    """Tiny version of benchmarks/diffusion_synthetic.py (default v-prediction, a small denoiser, 300
    iterations): held-out nodes' generated parameters are closer to the truth than the mean vector,
    much closer than parameters generated from shuffled prompts, and forecast like the true ones."""
    bench = _benchmark_module()
    family = bench.build_family(n_nodes=200, model_name="stid", seed=0, pooled_steps=100)
    cfg = DiffusionConfig.from_preset("small", denoiser={"d_model": 64, "n_layers": 2, "token_dim": 256}, max_steps=300,
                                      batch_size=32, lr=1e-2)
    model = train_denoiser(family.collection.take(family.train), family.prompts, cfg, progress=False, device=CPU)
    true = family.collection.params[family.test]
    mean = family.collection.params[family.train].mean(0, keepdim=True).expand_as(true)
    sp, tp = family.prompts.spatial[family.test], family.prompts.temporal[family.test]
    gen = generate_tensors(model, sp, tp, "ddim", 20)
    shuffle = torch.roll(torch.arange(len(family.test)), 1)
    wrong = generate_tensors(model, sp[shuffle], tp[shuffle], "ddim", 20)
    ratio = bench.rel_l2(gen, true) / bench.rel_l2(mean, true)
    ratio_shuffled = bench.rel_l2(wrong, true) / bench.rel_l2(mean, true)
    assert ratio < 0.9 and ratio_shuffled > ratio + 0.3, (ratio, ratio_shuffled)
    init = flatten(family.model.init(len(true), seed=1), family.model.spec())
    mae = {name: bench.forecast_mae(family.model, p, family.data, family.test)
           for name, p in (("true", true), ("gen", gen), ("init", init))}
    assert abs(mae["gen"] / mae["true"] - 1) < 0.1, mae
    assert mae["init"] > 2 * mae["true"], mae  # the forecast check tells bad parameters apart


def test_the_denoiser_trains_on_every_member() -> None:
    zoo, prompts = _anchored_toy()
    g = torch.Generator().manual_seed(3)
    members = zoo.params.unsqueeze(1) + 0.01 * torch.randn(len(zoo), 2, zoo.params.shape[1], generator=g)
    several = replace(zoo, members=members)
    tiny = {"denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2, "token_dim": 16}, "max_steps": 3, "batch_size": 8}
    model = train_denoiser(several, prompts, DiffusionConfig.from_dict(tiny), progress=False, device="cpu")
    assert model.info["n_nodes"] == 3 * len(zoo)
    assert model.info["fingerprint"] != train_denoiser(zoo, prompts, DiffusionConfig.from_dict(tiny), progress=False,
                                                 device="cpu").info["fingerprint"]


def test_residual_generation_a_zero_sample_is_the_anchor(tmp_path: Path) -> None:
    zoo, prompts = _anchored_toy()
    tiny = {"denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2, "token_dim": 16}, "max_steps": 5, "batch_size": 8}
    for standardize in Standardizer.PER:
        cfg = DiffusionConfig.from_dict({**tiny, "standardize": standardize})
        model = train_denoiser(zoo, prompts, cfg, progress=False, device="cpu")
        zero = torch.zeros(1, model.shape.n_tokens, model.shape.token_dim)
        torch.testing.assert_close(model.decode(zero)[0], zoo.anchor, atol=1e-6, rtol=0)
        torch.testing.assert_close(model.decode(model.encode(zoo.params)), zoo.params, atol=1e-5, rtol=0)
    from gpdiff.diffusion import generate

    two = generate(model, prompts, GenerateConfig("ddim", 3, num_samples=2), seed=5)
    one = [generate(model, prompts, GenerateConfig("ddim", 3, num_samples=1), seed=s).params for s in (5, 6)]
    torch.testing.assert_close(two.params, (one[0] + one[1]) / 2)
    assert two.config["generated"]["num_samples"] == 2
    with pytest.raises(GpdiffError, match="num_samples must be at least 1"):
        GenerateConfig("ddim", 3, num_samples=0)
    mean = train_denoiser(zoo, prompts, DiffusionConfig.from_dict({**tiny, "reference": "mean"}), progress=False, device="cpu")
    zero = torch.zeros(1, mean.shape.n_tokens, mean.shape.token_dim)
    torch.testing.assert_close(mean.decode(zero)[0], zoo.params.mean(0), atol=1e-5, rtol=0)
    with pytest.raises(GpdiffError, match="the zoo has no anchor"):
        train_denoiser(replace(zoo, anchor=None), prompts, DiffusionConfig.from_dict({**tiny, "reference": "anchor"}),
                 progress=False, device="cpu")


def test_tensors_auto_generates_only_the_changed_tensors(tmp_path: Path) -> None:
    from gpdiff.diffusion import generate
    from gpdiff.diffusion.train import DiffusionModel, tensor_columns

    zoo, prompts = _anchored_toy()
    names = [s.name for s in zoo.spec]
    frozen = tensor_columns(zoo.spec, names[:-1])
    params = zoo.params.clone()
    params[:, frozen] = zoo.anchor[frozen]  # only the last tensor differs from the anchor
    zoo = replace(zoo, params=params)
    tiny = {"denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2, "token_dim": 16}, "max_steps": 5, "batch_size": 8}
    model = train_denoiser(zoo, prompts, DiffusionConfig.from_dict(tiny), workdir=tmp_path / "d", progress=False, device="cpu")
    assert model.generated == names[-1:] and model.tokenizer.n_params == zoo.spec[-1].numel
    every = train_denoiser(zoo, prompts, DiffusionConfig.from_dict({**tiny, "tensors": "all"}), progress=False, device="cpu")
    assert every.generated == names and every.shape.n_tokens > model.shape.n_tokens
    torch.testing.assert_close(model.decode(model.encode(zoo.params)), zoo.params, atol=1e-5, rtol=0)
    loaded = DiffusionModel.load(tmp_path / "d", "cpu")
    assert loaded.generated == model.generated
    out = generate(loaded, prompts, GenerateConfig("ddim", 3, num_samples=1), seed=1).params
    assert out.shape == zoo.params.shape and torch.equal(out[:, frozen], zoo.anchor[frozen].expand(len(zoo), -1))
    assert not torch.equal(out[:, -1], zoo.anchor[-1].expand(len(zoo)))
