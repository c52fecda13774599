"""``gpdiff pretrain`` (train the denoiser on a zoo + prompts) and ``gpdiff generate`` (sample parameters)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from gpdiff.cli import progress_bars
from gpdiff.diffusion.conditioning import CONDITIONING
from gpdiff.diffusion.sample import GenerateConfig
from gpdiff.diffusion.schedule import BETA_SCHEDULES, PREDICTION_TYPES, SAMPLERS
from gpdiff.diffusion.train import PRESETS, REFERENCES, TENSOR_CHOICES, DiffusionConfig
from gpdiff.experiment.heldout import DEFAULT_FRACTION as DEFAULT_HOLDOUT
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.params import Standardizer
from gpdiff.zoo.sourcepool import BALANCES

SCHEDULE_ALIASES = {"cosine": "squaredcos_cap_v2"}
_D = DiffusionConfig()  # the defaults the flags' help texts show (the small preset's), so none is typed twice


def _load_prompts(path: str) -> Any:
    from gpdiff.prompts import PromptSet

    return PromptSet.load(Path(path))


@click.command("pretrain")
@click.option("--sources", default=None,
              help="Pretrain a whole GPD (anchor, zoo, prompt encoders, denoiser) on these comma-separated cities "
                   "and write it to --out as one folder for `gpdiff fit --pretrained` (run-config defaults, changed "
                   "with --set; stages kept in OUT.stages, so a rerun resumes). Without it: the denoiser alone, "
                   "from --zoo and --prompts.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="With --sources: the folder holding your cities (as for gpdiff run).")
@click.option("--set", "assignments", multiple=True, metavar="PATH=VALUE",
              help="With --sources: override a run-config setting, e.g. --set diffusion.max_steps=1000 (repeatable).")
@click.option("--zoo", "zoo_path", type=click.Path(exists=True),
              help="Zoo folder (or parameter collection file) from `gpdiff zoo train`.")
@click.option("--prompts", "prompts_path", type=click.Path(exists=True),
              help="Prompt folder or file from `gpdiff prompts fit`, covering every zoo node.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder: the pretrained GPD (with --sources) or the denoiser.")
@click.option("--condition", type=click.Choice(sorted(CONDITIONING)), default=None,
              help=f"Conditioning strategy [{_D.denoiser.condition}].")
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="Denoiser sizes: small (CPU, default) or paper (d_model 512, 80k training steps).")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="YAML file of DiffusionConfig fields (nested: denoiser:, schedule:); flags override it.")
@click.option("--max-steps", type=int, default=None, help=f"Training steps [{_D.max_steps}].")
@click.option("--num-train-timesteps", type=int, default=None, help=f"Diffusion steps of the forward process [{_D.schedule.num_train_timesteps}].")
@click.option("--d-model", type=int, default=None, help="Transformer width.")
@click.option("--layers", "n_layers", type=int, default=None, help="Transformer blocks.")
@click.option("--heads", "n_heads", type=int, default=None, help="Attention heads.")
@click.option("--token-dim", type=int, default=None, help="Parameters per token (0: automatic).")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--prediction", type=click.Choice(PREDICTION_TYPES), default=None,
              help=f"Denoiser target [{_D.schedule.prediction_type}].")
@click.option("--schedule", type=click.Choice([*BETA_SCHEDULES, *SCHEDULE_ALIASES]), default=None,
              help=f"Beta schedule [{_D.schedule.beta_schedule} {_D.schedule.beta_start:g}..{_D.schedule.beta_end:g}]; "
                   "cosine = squaredcos_cap_v2.")
@click.option("--cfg-dropout", type=float, default=None,
              help="Probability of dropping the prompts in training (enables --guidance-scale at generation).")
@click.option("--reference", type=click.Choice(REFERENCES), default=None,
              help=f"Learn the difference from the zoo's anchor or mean [{_D.reference}: the anchor when the zoo has "
                   "one].")
@click.option("--standardize", type=click.Choice(Standardizer.PER), default=None,
              help=f"Standardise parameters per coordinate or per tensor [{_D.standardize}].")
@click.option("--balance", type=click.Choice(BALANCES), default=None,
              help=f"Training batches: every city equally often, or every node [{_D.balance}].")
@click.option("--tensors", type=click.Choice(TENSOR_CHOICES), default=None,
              help=f"auto: generate only the tensors the zoo's members changed (zoo.trainable); all [{_D.tensors}].")
@click.option("--functional-weight", type=float, default=None,
              help="> 0 adds the functional loss: the denoiser's clean-sample estimate, loaded into the base model, "
                   f"scored on its node's training windows (reads the zoo's cities) [{_D.functional_weight:g}].")
@click.option("--functional-windows", type=int, default=None, help=f"Windows per node and iteration [{_D.functional_windows}].")
@click.option("--cities", "city_names", default=None,
              help="The zoo's cities for --functional-weight: comma-separated names or paths [the zoo's city names].")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--with-zoo", is_flag=True,
              help="With --sources: also keep the source zoo and its prompts in the folder (17-21 MB for the five "
                   "bundled cities), so gpdiff fit can run knn_residual, mean_params, retrieval and reptile.")
@click.option("--holdout", type=float, default=None,
              help="With --sources: the share of every source city's nodes held out of a second, check denoiser, "
                   "whose generated parameters for them are scored on the sources' test windows for the model "
                   f"card (one more denoiser training); 0 skips it [{DEFAULT_HOLDOUT}].")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def pretrain(sources: str | None, data_dir: str | None, assignments: tuple[str, ...], zoo_path: str | None,
             prompts_path: str | None, out: str, condition: str | None, preset: str | None,
             config_path: str | None, max_steps: int | None, num_train_timesteps: int | None, d_model: int | None,
             n_layers: int | None, n_heads: int | None, token_dim: int | None, batch_size: int | None,
             lr: float | None, prediction: str | None, schedule: str | None, cfg_dropout: float | None,
             reference: str | None, standardize: str | None, balance: str | None, tensors: str | None,
             functional_weight: float | None, functional_windows: int | None, city_names: str | None, seed: int,
             device: str, with_zoo: bool, holdout: float | None, quiet: bool) -> None:
    """Train the diffusion model that generates a node's parameters from its prompts.

    With --sources, the whole source side of GPD (anchor, prompt encoders, denoiser, pooled_linear's
    ridge; with --with-zoo also the zoo) as one pretrained folder, which `gpdiff fit CITY --pretrained OUT` uses.

    Started by ``torchrun --nproc_per_node=N -m gpdiff pretrain ...``, training is data-parallel:
    each process draws --batch-size nodes per iteration (the effective batch is N times that)."""
    if sources:
        if zoo_path or prompts_path:
            raise GpdiffError("give either --sources (pretrain everything) or --zoo and --prompts (the denoiser alone).")
        return _pretrain_sources(sources, data_dir, assignments, out, seed, device, with_zoo,
                                 DEFAULT_HOLDOUT if holdout is None else holdout, quiet)
    _check_denoiser_alone(zoo_path, prompts_path, with_zoo, holdout, bool(assignments or data_dir))
    from gpdiff.diffusion.train import train_denoiser
    from gpdiff.zoo.params import ParamCollection

    flags = {"denoiser": {"condition": condition, "d_model": d_model, "n_layers": n_layers, "n_heads": n_heads,
                          "token_dim": token_dim},
             "schedule": {"num_train_timesteps": num_train_timesteps, "prediction_type": prediction,
                          "beta_schedule": SCHEDULE_ALIASES.get(schedule or "", schedule)},
             "max_steps": max_steps, "batch_size": batch_size, "lr": lr, "cfg_dropout": cfg_dropout, "reference": reference,
             "standardize": standardize, "balance": balance, "tensors": tensors,
             "functional_weight": functional_weight, "functional_windows": functional_windows}
    config = _denoiser_config(config_path, preset, flags)
    zoo = ParamCollection.load(zoo_path)
    prompts = _load_prompts(prompts_path)
    functional = None
    if config.functional_weight > 0:
        from gpdiff.data import load_city
        from gpdiff.diffusion.functional import FunctionalLoss
        from gpdiff.utils.device import resolve_device

        names = city_names.split(",") if city_names else zoo.city_names()
        functional = FunctionalLoss.for_zoo(zoo, [load_city(n.strip()) for n in names], config.functional_windows,
                                            resolve_device(device))
    t0 = time.time()
    model = train_denoiser(zoo, prompts, config, seed=seed, device=device, progress=progress_bars(quiet), workdir=out,
                           functional=functional)
    if model is None:  # under torchrun, a rank other than 0 (rank 0 saves and reports)
        return
    info = model.info
    click.echo(f"denoiser ({config.denoiser.condition}, {config.preset}, {model.denoiser.n_weights():,} weights) for "
               f"{model.base_model}/{model.preset}: {info.get('n_nodes')} nodes, {model.tokenizer.n_tokens} tokens "
               f"x {model.tokenizer.token_dim}, {info.get('iterations')} iterations, final loss "
               f"{info.get('final_loss', float('nan')):.4f}, {time.time() - t0:.0f}s -> {out}")


def _check_denoiser_alone(zoo_path: str | None, prompts_path: str | None, with_zoo: bool, holdout: float | None,
                          run_settings: bool) -> None:
    """``gpdiff pretrain`` without --sources trains the denoiser alone: the flags of a whole pretrained GPD
    are refused, and both inputs are needed."""
    if with_zoo:
        raise GpdiffError("--with-zoo goes with --sources (a whole pretrained GPD); the denoiser alone has no zoo to keep.")
    if holdout is not None:
        raise GpdiffError("--holdout goes with --sources (the model card's held-out scores); to score a denoiser "
                          "alone on held-out nodes see benchmarks/diffusion_real.py.")
    if not zoo_path or not prompts_path:
        raise GpdiffError("gpdiff pretrain needs --sources a,b,... (a whole pretrained GPD), or --zoo and --prompts "
                          "(the denoiser alone).")
    if run_settings:
        raise GpdiffError("--set and --data-dir go with --sources; for the denoiser alone use its own flags.")


def _pretrain_sources(sources: str, data_dir: str | None, assignments: tuple[str, ...], out: str, seed: int,
                      device: str, with_zoo: bool, holdout: float, quiet: bool) -> None:
    """``gpdiff pretrain --sources``: a whole pretrained GPD from the run config's defaults and ``--set``."""
    from gpdiff.experiment.pipeline import pretrain_sources
    from gpdiff.experiment.runconfig import RunConfig

    overrides: dict[str, Any] = {"sources": sources, "seed": seed, "device": device,
                                 **({"data_dir": data_dir} if data_dir else {})}
    cfg = RunConfig.from_yaml(None, overrides, assignments)
    pretrain_sources(cfg, out, progress=progress_bars(quiet), log=click.echo, with_zoo=with_zoo, holdout=holdout)


def _denoiser_config(config_path: str | None, preset: str | None, flags: dict[str, Any]) -> Any:
    """The :class:`DiffusionConfig` of ``gpdiff pretrain --zoo --prompts``: the ``--config`` file's fields,
    then the flags given (``None``: not given), under the ``--preset`` (default: the file's, else small).
    Raises :class:`GpdiffError` for a file that is not a mapping or a field it refuses."""
    from gpdiff.diffusion.train import DiffusionConfig, drop_none
    from gpdiff.utils.config import merge
    from gpdiff.utils.io import read_yaml

    base: dict[str, Any] = {}
    if config_path:
        base = read_yaml(config_path) or {}
        if not isinstance(base, dict):
            raise GpdiffError(f"{config_path} must hold a mapping of diffusion config fields.")
    chosen = preset or base.get("preset", "small")
    return DiffusionConfig.from_dict(merge({**base, "preset": chosen}, drop_none(flags)), where=config_path or "")


@click.command("generate")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Denoiser folder from `gpdiff pretrain`.")
@click.option("--prompts", "prompts_path", required=True, type=click.Path(exists=True),
              help="Prompt folder or file of the nodes to generate parameters for.")
@click.option("--out", required=True, type=click.Path(),
              help="Output .safetensors file (a folder gets generated.safetensors).")
@click.option("--sampler", type=click.Choice(list(SAMPLERS)), default=GenerateConfig.sampler, show_default=True,
              help="ddpm = ancestral over all training steps; ddim / dpm++ = fast.")
@click.option("--num-inference-steps", type=int, default=None, help="Sampling steps [ddim/dpm++: 20; ddpm: all].")
@click.option("--guidance-scale", type=float, default=GenerateConfig.guidance_scale, show_default=True,
              help="Classifier-free guidance scale (needs a denoiser trained with --cfg-dropout > 0).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--cities", default=None, help="Comma-separated cities of the prompt file to generate for [all].")
@click.option("--zoo", "zoo_path", type=click.Path(exists=True), default=None,
              help="Check that the denoiser makes parameters for this zoo's base model, preset and spec.")
@click.option("--num-samples", type=int, default=GenerateConfig.num_samples, show_default=True,
              help="Samples averaged per node (seeds SEED, SEED+1, ...), as `gpdiff run` does (generate.num_samples).")
@click.option("--batch-size", type=int, default=1024, show_default=True, help="Nodes per sampling batch.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1, ...")
@click.option("--no-ema", is_flag=True, help="Sample with the raw weights instead of the EMA weights.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def generate(model_dir: str, prompts_path: str, out: str, sampler: str, num_inference_steps: int | None,
             guidance_scale: float, seed: int, cities: str | None, zoo_path: str | None, num_samples: int,
             batch_size: int, device: str, no_ema: bool, quiet: bool) -> None:
    """Generate base-model parameters for every node of a prompt set (zoo collection format)."""
    from gpdiff.diffusion.sample import GenerateConfig
    from gpdiff.diffusion.sample import generate as run_generate
    from gpdiff.diffusion.schedule import sampling_steps
    from gpdiff.diffusion.train import DiffusionModel
    from gpdiff.zoo.params import ParamCollection

    model = DiffusionModel.load(model_dir, device=device)
    if zoo_path:
        ref = ParamCollection.load(zoo_path)
        model.check_base(ref.model, ref.model_config, ref.spec)
    prompts = _load_prompts(prompts_path)
    if cities:
        names = [c.strip() for c in cities.split(",") if c.strip()]
        prompts = prompts.select([k for k in prompts.keys() if k[0] in names]) if names else prompts
        unknown = sorted(set(names) - set(prompts.cities))
        if unknown:
            raise GpdiffError(f"{prompts_path} has no prompts for cities {unknown}; it has "
                              f"{sorted(set(_load_prompts(prompts_path).cities))}.")
    t0 = time.time()
    config = GenerateConfig(sampler, sampling_steps(sampler, model.config.schedule, num_inference_steps), guidance_scale,
                            num_samples)
    params = run_generate(model, prompts, config, seed=seed, progress=progress_bars(quiet), batch_size=batch_size,
                          use_ema=not no_ema)
    target = Path(out)
    if target.is_dir() or target.suffix != ".safetensors":
        target = target / "generated.safetensors"
    params.save(target)
    click.echo(f"generated {len(params)} parameter sets of {params.model}/{model.preset} "
               f"({sampler}, {params.config['generated']['num_inference_steps']} steps, guidance scale "
               f"{guidance_scale}, seed {seed}) in "
               f"{time.time() - t0:.1f}s -> {target}")
