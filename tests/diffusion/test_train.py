"""Generative pre-training: configs, schedules, the denoiser and its conditioning, training, sampling, CLI."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from diffusers.training_utils import EMAModel

from gpdiff.cli import main
from gpdiff.diffusion import (
    CONDITIONING,
    PRESETS,
    SAMPLERS,
    Denoiser,
    DenoiserConfig,
    DiffusionConfig,
    DiffusionModel,
    NoiseSchedule,
    ScheduleConfig,
    TokenShape,
    fit,
    generate,
    generate_tensors,
    make_sampler,
    pretrain,
)
from gpdiff.models.base import ParamSpec
from gpdiff.prompts import PromptSet
from gpdiff.utils.config import merge
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import read_yaml, write_yaml
from gpdiff.utils.lr_schedule import warmup_cosine, warmup_cosine_scheduler
from gpdiff.zoo.params import ParamCollection, Tokenizer, flatten
from tests.conftest import N_PARAMS, REPO, SPEC, toy

# diffusers' DPM-Solver++ calls np.array on a tensor in a way numpy 2 deprecates (not ours to fix)
pytestmark = [pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword"),
              pytest.mark.usefixtures("one_thread")]

CPU = "cpu"  # every training run here: the tensors are tiny


def tiny_config(**kw) -> DiffusionConfig:  # type: ignore[no-untyped-def]
    """The small preset shrunk to seconds; ``kw`` nested like ``DiffusionConfig.to_dict()``."""
    base = {"denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2, "token_dim": 16}, "iters": 20,
            "batch_size": 16, "checkpoint_every": 10}
    return DiffusionConfig.from_dict(merge(base, kw))


def randomize(net: torch.nn.Module, seed: int = 0) -> None:
    """Give every weight a random value (zero-initialised layers would hide the prompts at init)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.3)


def denoiser(condition: str, n_layers: int = 2) -> tuple[Denoiser, torch.Tensor]:
    tok = Tokenizer(SPEC, 8)
    cfg = DenoiserConfig(d_model=16, n_layers=n_layers, n_heads=2, condition=condition)
    net = Denoiser(cfg, TokenShape(tok.n_tokens, 8, 5, 7), tok.spatial_mask()).eval()
    randomize(net)
    return net, tok.spatial_mask()


def inputs(b: int = 3, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    n_tok = Tokenizer(SPEC, 8).n_tokens
    return (torch.randn(b, n_tok, 8, generator=g), torch.randint(0, 500, (b,), generator=g),
            torch.randn(b, 5, generator=g), torch.randn(b, 7, generator=g))


# ----------------------------------------------------------------------------- config
def test_nested_config_from_preset_and_overrides() -> None:
    small = DiffusionConfig()
    assert DiffusionConfig.from_dict({}) == DiffusionConfig.from_preset("small") == small
    assert (small.denoiser.d_model, small.denoiser.n_layers, small.denoiser.n_heads, small.denoiser.max_tokens,
            small.schedule.num_train_timesteps, small.iters, small.batch_size, small.lr, small.warmup) == (
        128, 4, 4, 64, 500, 400, 64, 5e-3, 50)
    cfg = DiffusionConfig.from_dict({"preset": "paper", "denoiser": {"d_model": 256, "condition": "adanorm"},
                                     "schedule": {"prediction_type": "epsilon"}, "lr": 1e-3})
    assert cfg.preset == "paper" and isinstance(cfg.denoiser, DenoiserConfig)
    assert (cfg.denoiser.d_model, cfg.denoiser.n_heads, cfg.denoiser.max_tokens, cfg.denoiser.condition) == (
        256, 8, 256, "adanorm")  # the override, and the preset's other denoiser sizes
    assert (cfg.schedule.prediction_type, cfg.schedule.num_train_timesteps, cfg.iters, cfg.lr) == (
        "epsilon", 500, 80_000, 1e-3)
    assert DiffusionConfig.from_dict(cfg.to_dict()) == cfg and cfg.to_dict()["denoiser"]["d_model"] == 256
    assert DiffusionConfig.from_preset("paper", denoiser={"d_model": None, "n_layers": 2}, iters=None) == (
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


# ----------------------------------------------------------------------------- schedule
def test_schedule_defaults_are_the_papers_and_never_clip() -> None:
    cfg = ScheduleConfig()
    assert (cfg.num_train_timesteps, cfg.beta_start, cfg.beta_end, cfg.beta_schedule, cfg.prediction_type) == (
        500, 1e-5, 0.02, "linear", "v_prediction")
    sched = NoiseSchedule(cfg).scheduler
    assert torch.allclose(sched.betas, torch.linspace(1e-5, 0.02, 500))
    assert set(SAMPLERS) == {"ddpm", "ddim", "dpm++"}
    for name in SAMPLERS:
        s = make_sampler(name, cfg)
        assert not getattr(s.config, "clip_sample", False) and not s.config.thresholding
        assert s.config.prediction_type == "v_prediction"
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


# ----------------------------------------------------------------------------- denoiser
@pytest.mark.parametrize("condition", sorted(CONDITIONING))
def test_output_shape_and_dependence_on_both_prompts(condition: str) -> None:
    net, _ = denoiser(condition)
    x, t, s, p = inputs()
    with torch.no_grad():
        out = net(x, t, s, p)
        assert out.shape == x.shape
        assert not torch.allclose(out, net(x, t, s + 1.0, p), atol=1e-4), "spatial prompt ignored"
        assert not torch.allclose(out, net(x, t, s, p + 1.0), atol=1e-4), "temporal prompt ignored"
        assert not torch.allclose(out, net(x, t, s, p, torch.ones(3, dtype=torch.bool)), atol=1e-4)
        assert not torch.allclose(out, net(x, (t + 50) % 500, s, p), atol=1e-4), "step ignored"


def test_pre_inductive_spatial_prompt_reaches_other_tokens_only_through_attention() -> None:
    x, t, s, p = inputs()
    s2 = s + 1.0
    # at the input: only the tokens of spatial-role tensors change
    net, spatial = denoiser("pre_inductive")
    assert 0 < int(spatial.sum()) < spatial.numel()
    with torch.no_grad():
        h1, _ = net.embed(x, t, s, p)
        h2, _ = net.embed(x, t, s2, p)
    changed = (h1 - h2).abs().amax(dim=(0, 2)) > 1e-6
    assert torch.equal(changed, spatial)
    # through the blocks: the other tokens change too ...
    with torch.no_grad():
        d = (net(x, t, s, p) - net(x, t, s2, p)).abs().amax(dim=(0, 2))
    assert (d[~spatial] > 1e-4).all()
    # ... but not once attention is switched off: it is the only path between tokens
    for block in net.blocks:
        block.attn.forward = lambda h, context=None: torch.zeros_like(h)  # type: ignore[method-assign]
    with torch.no_grad():
        d = (net(x, t, s, p) - net(x, t, s2, p)).abs().amax(dim=(0, 2))
    assert (d[~spatial] < 1e-6).all() and (d[spatial] > 1e-4).all()


def test_adanorm_starts_with_identity_blocks() -> None:
    tok = Tokenizer(SPEC, 8)
    cfg = DenoiserConfig(d_model=16, n_layers=2, n_heads=2, condition="adanorm")
    net = Denoiser(cfg, TokenShape(tok.n_tokens, 8, 5, 7), tok.spatial_mask()).eval()
    for lin in net.cond.mod:  # type: ignore[attr-defined]
        assert not lin.weight.any() and not lin.bias.any()
    x, t, s, p = inputs()
    with torch.no_grad():
        h, cond = net.embed(x, t, s, p)
        expected = net.head(net.ln_f(h)) + net.skip(cond.step)[:, :, None] * x
        assert torch.allclose(net(x, t, s, p), expected, atol=1e-6)


def test_unknown_condition_and_bad_sizes() -> None:
    with pytest.raises(GpdiffError, match="unknown conditioning strategy 'pre_inductiv'.*pre_inductive"):
        DiffusionConfig.from_dict({"denoiser": {"condition": "pre_inductiv"}})
    with pytest.raises(GpdiffError, match="unknown denoiser preset"):
        DiffusionConfig.from_preset("huge")
    with pytest.raises(GpdiffError, match="divisible"):
        DenoiserConfig(d_model=30, n_heads=4)
    with pytest.raises(GpdiffError, match="n_heads must be at least 1"):
        DenoiserConfig(n_heads=0)
    with pytest.raises(GpdiffError, match="spatial_dim must be at least 1"):
        TokenShape(4, 8, 0, 7)
    with pytest.raises(GpdiffError, match="cfg_dropout"):
        tiny_config(cfg_dropout=1.0)
    tok = Tokenizer(SPEC, 8)
    assert DenoiserConfig(token_dim=8).resolve_token_dim(SPEC) == 8
    assert DenoiserConfig(max_tokens=5).resolve_token_dim(SPEC) == 32  # 16 would give 7 tokens, 32 gives 5
    with pytest.raises(ValueError, match="spatial_mask"):
        Denoiser(DenoiserConfig(d_model=16, n_heads=2), TokenShape(tok.n_tokens + 1, 8, 5, 7), tok.spatial_mask())


# ----------------------------------------------------------------------------- training and sampling
def test_train_save_load_generate_deterministic(tmp_path: Path) -> None:
    zoo, prompts = toy()
    model = pretrain(zoo, prompts, tiny_config(), tmp_path / "d", progress=False, device=CPU)
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
    g1 = generate(loaded, prompts, "ddim", num_inference_steps=5, seed=3)
    g2 = generate(model, prompts, "ddim", 5, seed=3)
    g3 = generate(model, prompts, "ddim", 5, seed=4)
    assert g1.keys() == prompts.keys() and g1.model == "toy" and g1.spec == SPEC
    record = g1.config["generated"]
    assert (record["sampler"], record["num_inference_steps"], record["guidance_scale"], record["seed"]) == (
        "ddim", 5, 1.0, 3)
    assert torch.equal(g1.params, g2.params) and not torch.allclose(g1.params, g3.params)
    for sampler in ("ddpm", "dpm++"):
        assert torch.isfinite(generate(model, prompts.select(prompts.keys()[:4]), sampler, seed=0).params).all()
    out = g1.save(tmp_path / "gen.safetensors")
    assert ParamCollection.load(out).keys() == prompts.keys()
    # the same command again reuses the finished run; another config or seed in the same folder is refused
    again = pretrain(zoo, prompts, tiny_config(), tmp_path / "d", progress=False, device=CPU)
    assert torch.equal(again.ema.head.weight, model.ema.head.weight)
    with pytest.raises(GpdiffError, match="another config, seed, number of processes or other data"):
        pretrain(zoo, prompts, tiny_config(lr=1e-4), tmp_path / "d", progress=False, device=CPU)
    with pytest.raises(GpdiffError, match="another config, seed, number of processes or other data"):
        pretrain(zoo, prompts, tiny_config(), tmp_path / "d", progress=False, seed=1, device=CPU)


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    zoo, prompts = toy()
    full = pretrain(zoo, prompts, tiny_config(), tmp_path / "a", progress=False, seed=5, device=CPU)
    real_step, calls = EMAModel.step, {"n": 0}

    def crash_at_15(self, parameters):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 15:  # iteration 15 of 20: after the checkpoint at 10
            raise KeyboardInterrupt
        real_step(self, parameters)

    monkeypatch.setattr(EMAModel, "step", crash_at_15)
    with pytest.raises(KeyboardInterrupt):
        pretrain(zoo, prompts, tiny_config(), tmp_path / "b", progress=False, seed=5, device=CPU)
    assert (tmp_path / "b" / "checkpoint.safetensors").is_file() and not (tmp_path / "b" / "config.yaml").exists()
    monkeypatch.setattr(EMAModel, "step", real_step)
    with pytest.raises(GpdiffError, match="checkpoint of a run with another config, seed or other data"):
        pretrain(zoo, prompts, tiny_config(), tmp_path / "b", progress=False, seed=6, device=CPU)
    resumed = pretrain(zoo, prompts, tiny_config(), tmp_path / "b", progress=False, seed=5, device=CPU)
    assert not (tmp_path / "b" / "checkpoint.safetensors").exists()
    for name in ("denoiser", "ema"):
        for (k, a), b in zip(getattr(full, name).state_dict().items(), getattr(resumed, name).state_dict().values()):
            assert torch.equal(a, b), f"{name}.{k} differs after resume"
    assert (tmp_path / "a" / "history.csv").read_text() == (tmp_path / "b" / "history.csv").read_text()


def test_classifier_free_guidance(tmp_path: Path) -> None:
    zoo, prompts = toy()
    plain = fit(zoo, prompts.spatial, prompts.temporal, tiny_config(iters=5), progress=False, device=CPU)
    with pytest.raises(GpdiffError, match="without prompt dropout.*--guidance-scale 1.*--cfg-dropout"):
        generate(plain, prompts, guidance_scale=2.0)
    model = fit(zoo, prompts.spatial, prompts.temporal, tiny_config(iters=5, cfg_dropout=0.3), progress=False,
                device=CPU)
    a = generate_tensors(model, prompts.spatial[:4], prompts.temporal[:4], "ddim", 5, guidance_scale=1.0)
    b = generate_tensors(model, prompts.spatial[:4], prompts.temporal[:4], "ddim", 5, guidance_scale=3.0)
    assert torch.isfinite(b).all() and not torch.allclose(a, b)


def test_bad_inputs_give_clear_errors(tmp_path: Path) -> None:
    zoo, prompts = toy()
    other = PromptSet(prompts.spatial[:30], prompts.temporal[:30], [f"x{i}" for i in range(30)], ["c"] * 30)
    with pytest.raises(GpdiffError, match=r"40 of 40 zoo nodes have no prompt \(e\.g\. c/n0, c/n1"):
        pretrain(zoo, other, tiny_config(), progress=False, device=CPU)
    model = fit(zoo, prompts.spatial, prompts.temporal, tiny_config(iters=2), progress=False, device=CPU)
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
    big = fit(zoo, prompts.spatial, prompts.temporal, tiny_config(iters=1, denoiser={"d_model": 64}), progress=False,
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
                               "--condition", "adanorm", "--out", str(tmp_path / "d"), "--iters", "5", "--d-model", "32",
                               "--layers", "1", "--token-dim", "16", "--num-train-timesteps", "400",
                               "--config", str(tmp_path / "d.yaml"), "--seed", "3", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    assert "adanorm" in res.output and "40 nodes" in res.output
    model = DiffusionModel.load(tmp_path / "d", device=CPU)
    c = model.config  # flags over the file over the preset
    assert (c.denoiser.condition, c.denoiser.d_model, c.denoiser.n_heads, c.denoiser.mlp_ratio, c.denoiser.max_tokens,
            c.schedule.num_train_timesteps, c.schedule.beta_end, c.iters, c.lr) == (
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


# ----------------------------------------------------------------------------- does it learn the mapping?
def _benchmark_module():  # type: ignore[no-untyped-def]
    path = REPO / "benchmarks" / "diffusion_synthetic.py"
    spec = importlib.util.spec_from_file_location("diffusion_synthetic", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["diffusion_synthetic"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_learns_the_synthetic_prompt_to_parameter_mapping() -> None:
    """Tiny version of benchmarks/diffusion_synthetic.py (default v-prediction, a small denoiser, 300
    iterations): held-out nodes' generated parameters are closer to the truth than the mean vector,
    much closer than parameters generated from shuffled prompts, and forecast like the true ones."""
    bench = _benchmark_module()
    family = bench.build_family(n_nodes=200, model_name="stid", seed=0, pooled_steps=100)
    cfg = DiffusionConfig.from_preset("small", denoiser={"d_model": 64, "n_layers": 2, "token_dim": 256}, iters=300,
                                      batch_size=32, lr=1e-2)
    model = pretrain(family.collection.subset(family.train), family.prompts, cfg, progress=False, device=CPU)
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
