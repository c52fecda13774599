"""Generative pre-training: fit the denoiser to a zoo's parameters conditioned on the nodes' prompts.

:class:`DiffusionConfig` holds every setting as a tree: ``denoiser`` (:class:`DenoiserConfig`),
``schedule`` (:class:`ScheduleConfig`) and the training settings; a preset fills it and a nested
mapping overrides it (:meth:`DiffusionConfig.from_dict`). The run's seed and device are arguments,
not settings. :func:`train_denoiser` (the diffusion stage) aligns a zoo with a prompt set by (city, node id) and trains;
:func:`fit` does the same from prompt tensors. Training: each parameter vector's difference from a
reference point (``reference``: the anchored zoo's anchor, so that a zero sample is the anchor, as
G.pt's residual on a reference vector; or the zoo's mean), standardised per tensor or per coordinate
and cut into tensor-aligned tokens; batches drawn with every source city equally likely
(``balance``), uniform diffusion steps, MSE on the prediction target over real
(non-padding) token slots, AdamW with warm-up and cosine decay (:mod:`gpdiff.utils.lr_schedule`),
gradient clipping, an EMA copy of the weights (diffusers' ``EMAModel``; used for sampling),
optional prompt dropout for classifier-free guidance, an optional functional loss
(``functional_weight``: the clean-sample estimate scored as a forecaster on its node's training
windows, :mod:`gpdiff.diffusion.functional`), a progress bar, and checkpoints that an interrupted run
resumes from.

Under ``torchrun`` (:mod:`gpdiff.utils.distributed`) training is data-parallel
(``DistributedDataParallel``): every rank draws its own ``batch_size`` nodes per iteration from its
own generator (rank 0's is the single-process one), so the effective batch is ``world x
batch_size``; gradients are averaged over ranks, and the learning rate is used as it is (scale it
yourself with the batch if you wish). The EMA weights, the progress bar, checkpoints and the saved
model are rank 0's; a checkpoint holds every rank's generator state and is resumed by the same
number of ranks.

The output folder (:class:`DiffusionModel`) holds ``config.yaml`` (this config, the token shape,
the base model name / config / parameter spec, prompt sizes, the seed and device, training
summary), ``model.safetensors``, ``ema.safetensors``, ``standardizer.safetensors`` and
``history.csv``: generation needs nothing but the folder.
"""

from __future__ import annotations

import copy
import csv
import io
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

import gpdiff
from gpdiff.diffusion.denoiser import Denoiser, DenoiserConfig, TokenShape
from gpdiff.diffusion.functional import FunctionalLoss
from gpdiff.diffusion.schedule import NoiseSchedule, ScheduleConfig
from gpdiff.models.base import ParamSpec
from gpdiff.utils import distributed
from gpdiff.utils.config import from_mapping, require_at_least_one, require_range, to_mapping
from gpdiff.utils.device import resolve_device
from gpdiff.utils.errors import GpdiffError, unknown_name
from gpdiff.utils.hashing import hash_arrays
from gpdiff.utils.io import (
    atomic_write_text,
    load_tensors,
    read_yaml,
    save_tensors,
    write_yaml,
    yaml_safe,
)
from gpdiff.utils.lr_schedule import warmup_cosine_scheduler
from gpdiff.utils.progress import progress_bar
from gpdiff.zoo.params import (
    ParamCollection,
    Standardizer,
    Tokenizer,
    spec_from_json,
    spec_to_json,
)
from gpdiff.zoo.sourcepool import BALANCES, row_weights

# Sizes per preset, nested like DiffusionConfig.to_dict(); every other field keeps its dataclass default.
PRESETS: dict[str, dict[str, Any]] = {
    "small": {"denoiser": {"d_model": 128, "n_layers": 4, "n_heads": 4, "max_tokens": 64},
              "schedule": {"num_train_timesteps": 500}, "max_steps": 400, "batch_size": 64, "lr": 5e-3, "warmup": 50},
    "paper": {"denoiser": {"d_model": 512, "n_layers": 4, "n_heads": 8, "max_tokens": 256},
              "schedule": {"num_train_timesteps": 500}, "max_steps": 80_000, "batch_size": 64, "lr": 2e-4, "warmup": 1000},
}
FORMAT = "gpdiff.diffusion"
REFERENCES = ("auto", "anchor", "mean", "none")
TENSOR_CHOICES = ("auto", "all")  # DiffusionConfig.tensors


def _preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise unknown_name("denoiser preset", name, PRESETS)
    return PRESETS[name]


@dataclass
class DiffusionConfig:
    """Every setting of the denoiser, the diffusion process and training. Defaults: the ``small`` preset.

    ``preset`` records which preset :meth:`from_dict` started from; the fields hold the values used.
    """

    RENAMED: ClassVar[dict[str, str]] = {"iters": "max_steps", "subset": "tensors"}  # gpdiff 0.1.0 before issue 26
    preset: str = "small"
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)  # paper: linear betas 1e-5..0.02, 500 steps, v
    max_steps: int = 400  # the small preset's, for the default run's time; 1000 generates better parameters for
    # held-out source nodes, but GPD fine-tuned on the loco targets measured no better (BENCHMARKS.md)
    batch_size: int = 64
    lr: float = 5e-3
    weight_decay: float = 0.01
    warmup: int = 50
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    cfg_dropout: float = 0.0  # probability of dropping both prompts (classifier-free guidance)
    reference: str = "auto"  # what is generated is the difference from it: anchor, mean, none; auto = the
    # zoo's anchor when it has one (anchored zoo: residual generation, a zero sample is the anchor), else its mean
    standardize: str = "coordinate"  # coordinate or tensor (gpdiff.zoo.params.Standardizer; BENCHMARKS.md)
    balance: str = "city"  # training batches: every source city equally often (city) or every node (proportional)
    tensors: str = "auto"  # which tensors are generated; auto: only those some zoo member changed (zoo.trainable),
    # the rest is the reference; all: every tensor
    functional_weight: float = 0.0  # > 0 adds the functional loss (gpdiff.diffusion.functional): the clean-sample
    # estimate, loaded into the base model, scored on its node's training windows; needs the source data
    functional_windows: int = 8  # training windows per node and iteration for the functional loss
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        _preset(self.preset)
        if not 0.0 <= self.cfg_dropout < 1.0:
            raise GpdiffError(f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}.")
        if self.reference not in REFERENCES:
            raise unknown_name("diffusion.reference", self.reference, REFERENCES)
        if self.standardize not in Standardizer.PER:
            raise unknown_name("diffusion.standardize", self.standardize, Standardizer.PER)
        if self.balance not in BALANCES:
            raise unknown_name("diffusion.balance", self.balance, BALANCES)
        if self.tensors not in TENSOR_CHOICES:
            raise unknown_name("diffusion.tensors", self.tensors, TENSOR_CHOICES)
        if self.functional_weight < 0:
            raise GpdiffError(f"functional_weight must be >= 0, got {self.functional_weight}.")
        if self.functional_weight > 0 and self.schedule.prediction_type == "epsilon":
            raise GpdiffError("the functional loss needs v_prediction or sample: an epsilon model's clean-sample "
                              "estimate divides by sqrt(alpha_bar) and explodes at high noise; set "
                              "schedule.prediction_type, or functional_weight to 0.")
        if not 0.0 <= self.ema_decay <= 1.0:
            raise GpdiffError(f"ema_decay must be in [0, 1], got {self.ema_decay}.")
        require_at_least_one(self, ("max_steps", "batch_size", "checkpoint_every", "functional_windows"))
        require_range(self, ("lr", "grad_clip"), "diffusion.", above=0)
        require_range(self, ("weight_decay", "warmup"), "diffusion.", at_least=0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None = None, where: str = "", upgrade: bool = False
                  ) -> DiffusionConfig:
        """The preset ``data["preset"]`` (default ``small``) deep-merged with ``data`` (nested like
        :meth:`to_dict`); unknown keys raise naming their dotted path (``where``: the file, if any).
        ``upgrade``: ``data`` was saved by an older gpdiff (renamed fields are read under their new names)."""
        return from_mapping(cls, data, "diffusion config", where, upgrade=upgrade)

    @classmethod
    def preset_defaults(cls, data: Mapping[str, Any]) -> dict[str, Any]:
        """The values of the preset ``data`` names (default ``small``), under which ``data`` is merged.

        :func:`gpdiff.utils.config.from_mapping` calls this, so a run config's ``diffusion: {preset: paper}``
        gets the paper sizes too."""
        preset = data.get("preset", "small")
        return {"preset": preset, **_preset(preset)}

    @classmethod
    def from_preset(cls, preset: str = "small", **overrides: Any) -> DiffusionConfig:
        """The preset, then ``overrides`` (nested like :meth:`to_dict`, e.g. ``denoiser={"d_model": 64}``);
        ``None`` values at any depth are ignored, so unset command-line flags can be passed as they are."""
        return cls.from_dict({**drop_none(overrides), "preset": preset})

    def to_dict(self) -> dict[str, Any]:
        return to_mapping(self)


def drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` without its ``None`` values, recursively (unset flags: "keep what is below")."""
    return {k: drop_none(v) if isinstance(v, Mapping) else v for k, v in data.items() if v is not None}


# ------------------------------------------------------------------------------ the model bundle
class DiffusionModel:
    """A trained (or training) denoiser with everything needed to generate parameters.

    ``spec`` is the base model's whole parameter spec; ``generated`` names the tensors the denoiser
    makes (default all; see ``DiffusionConfig.tensors``): the other tensors of a generated vector are
    the reference point's (``reference [P]``). The tokenizer and the standardiser cover the generated
    tensors only."""

    def __init__(self, config: DiffusionConfig, shape: TokenShape, base_model: str,
                 model_config: dict[str, Any], spec: list[ParamSpec], standardizer: Standardizer,
                 reference: torch.Tensor, info: dict[str, Any] | None = None,
                 device: torch.device | str = "cpu", generated: list[str] | None = None) -> None:
        self.config, self.shape = config, shape
        self.base_model, self.model_config, self.spec = base_model, dict(model_config), list(spec)
        self.standardizer, self.reference = standardizer, reference.float().cpu()
        names = [s.name for s in self.spec]
        self.generated = list(names if generated is None else generated)
        if not self.generated or set(self.generated) - set(names):
            raise GpdiffError(f"generated tensors {self.generated} are not a non-empty subset of {names}; the model "
                              "folder is inconsistent, retrain it.")
        self.gen_spec = [s for s in self.spec if s.name in self.generated]
        self.columns = tensor_columns(self.spec, self.generated)
        self.tokenizer = Tokenizer(self.gen_spec, shape.token_dim)
        if self.tokenizer.n_tokens != shape.n_tokens:
            raise GpdiffError(f"denoiser expects {shape.n_tokens} tokens but the parameter spec gives "
                              f"{self.tokenizer.n_tokens}; the model folder is inconsistent, retrain it.")
        self.info = dict(info or {})
        self.device = torch.device(device)
        self.denoiser = Denoiser(config.denoiser, shape, self.tokenizer.spatial_mask()).to(self.device)
        self.ema = copy.deepcopy(self.denoiser).requires_grad_(False).eval()
        self.path: Path | None = None
        # False: loaded from a folder without model.safetensors (generation only: a pretrained GPD, a finished
        # ``gpdiff run`` diffusion stage), so ``denoiser`` holds the EMA weights too
        self.raw_weights = True

    @property
    def n_params(self) -> int:
        """Parameters of the base model, ``P`` (generated or not)."""
        return int(self.reference.numel())

    def encode(self, params: torch.Tensor) -> torch.Tensor:
        """Parameters ``[n, P]`` -> the denoiser's tokens ``[n, T, D]`` (the generated tensors minus the
        reference point, standardised)."""
        diff = (params.float().cpu() - self.reference)[:, self.columns]
        return self.tokenizer.encode(self.standardizer.transform(diff))

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``[n, T, D]`` -> parameters ``[n, P]`` on the original scale (CPU); the tensors not
        generated are the reference point's."""
        return self.to_params(tokens.float().cpu())

    def to_params(self, tokens: torch.Tensor) -> torch.Tensor:
        """:meth:`decode` on the tokens' device, differentiable in ``tokens`` (the functional loss)."""
        diff = self.standardizer.inverse_transform(self.tokenizer.decode(tokens))
        out = self.reference.to(tokens.device).expand(diff.shape[0], -1).clone()
        out[:, self.columns.to(tokens.device)] += diff
        return out

    @property
    def spatial_dim(self) -> int:
        return self.shape.spatial_dim

    @property
    def temporal_dim(self) -> int:
        return self.shape.temporal_dim

    @property
    def preset(self) -> str | None:
        return self.model_config.get("preset")

    def where(self) -> str:
        return f"the denoiser at {self.path}" if self.path else "the denoiser"

    # ---------------------------------------------------------------- checks
    def check_base(self, model: str, model_config: dict[str, Any], spec: list[ParamSpec]) -> None:
        """Raise unless parameters of ``model`` / ``model_config`` / ``spec`` are what this denoiser makes."""
        preset = model_config.get("preset")
        if model != self.base_model or preset != self.preset:
            raise GpdiffError(
                f"{self.where()} generates parameters of base model {self.base_model!r} (preset {self.preset!r}), "
                f"not {model!r} (preset {preset!r}); pretrain a denoiser on a {model!r}/{preset!r} zoo."
            )
        mine = [(s.name, tuple(s.shape)) for s in self.spec]
        theirs = [(s.name, tuple(s.shape)) for s in spec]
        if mine != theirs:
            diff = [f"{a} vs {b}" for a, b in zip(mine, theirs) if a != b][:3] or [f"{len(mine)} vs {len(theirs)} tensors"]
            raise GpdiffError(f"{self.where()} was trained on a different parameter spec of {model!r} "
                              f"({'; '.join(map(str, diff))}); pretrain it again on the current zoo.")

    def check_prompts(self, spatial: torch.Tensor, temporal: torch.Tensor, source: str = "the prompts") -> None:
        if spatial.dim() != 2 or temporal.dim() != 2 or spatial.shape[0] != temporal.shape[0]:
            raise GpdiffError(f"{source}: spatial {tuple(spatial.shape)} and temporal {tuple(temporal.shape)} "
                              "prompts must be [n, dim] with the same n.")
        if spatial.shape[1] != self.spatial_dim or temporal.shape[1] != self.temporal_dim:
            raise GpdiffError(
                f"{source} have sizes spatial {spatial.shape[1]} / temporal {temporal.shape[1]}, but "
                f"{self.where()} was trained on spatial {self.spatial_dim} / temporal {self.temporal_dim}; "
                "use prompts from the same prompt encoders (same `gpdiff prompts fit` settings)."
            )

    # ---------------------------------------------------------------- save / load
    def config_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "diffusion": self.config.to_dict(),
            "token_shape": asdict(self.shape),
            "base_model": {"name": self.base_model, "config": self.model_config, "spec": spec_to_json(self.spec),
                           "n_params": self.n_params, "generated": self.generated},
            "info": self.info,
            "versions": _versions(),
        }

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_tensors(out / "model.safetensors", self.denoiser.state_dict())
        save_tensors(out / "ema.safetensors", self.ema.state_dict())
        save_tensors(out / "standardizer.safetensors", {**self.standardizer.state(), "center": self.reference})
        write_yaml(out / "config.yaml", self.config_dict())  # written last: marks the folder complete
        self.path = out
        return out

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device = "auto") -> DiffusionModel:
        """The model saved in ``folder``, on ``device`` (``auto``: CUDA when available)."""
        folder = Path(folder)
        cfg_path = folder / "config.yaml"
        if not cfg_path.is_file():
            raise GpdiffError(f"{folder} holds no trained denoiser (no config.yaml); run `gpdiff pretrain --out {folder}`"
                              " first, or pass the folder it wrote.")
        data = read_yaml(cfg_path)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise GpdiffError(f"{cfg_path} is not a gpdiff denoiser config (written by `gpdiff pretrain`).")
        try:
            config = DiffusionConfig.from_dict(data["diffusion"], upgrade=True)
            shape = TokenShape(**data["token_shape"])
        except (KeyError, TypeError, GpdiffError) as exc:
            raise GpdiffError(f"{cfg_path} does not describe a denoiser of this gpdiff version ({exc}); retrain it "
                              "with `gpdiff pretrain`.") from None
        base = data["base_model"]
        std_tensors, _ = load_tensors(folder / "standardizer.safetensors")
        dev = resolve_device(str(device))
        model = cls(config, shape, base["name"], base["config"], spec_from_json(base["spec"]),
                    Standardizer.from_state(std_tensors), std_tensors["center"], data.get("info", {}), dev,
                    base.get("generated"))
        model.path = folder
        # a folder for generation only (a pretrained GPD) keeps the EMA weights alone: they stand in for both
        weights = "model" if (folder / "model.safetensors").is_file() else "ema"
        model.raw_weights = weights == "model"
        for name, module in ((weights, model.denoiser), ("ema", model.ema)):
            state, _ = load_tensors(folder / f"{name}.safetensors", device=dev)
            _load_state(module, state, folder / f"{name}.safetensors")
        return model


def _load_state(module: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    own = module.state_dict()
    bad = sorted(set(own) ^ set(state)) + [k for k in own if k in state and own[k].shape != state[k].shape]
    if bad:
        raise GpdiffError(f"{path} does not match the denoiser described in config.yaml (e.g. {bad[:3]}); the "
                          "folder mixes files of different runs or presets. Retrain into an empty folder.")
    module.load_state_dict(state)


def _versions() -> dict[str, str]:
    import diffusers

    return {"gpdiff": str(gpdiff.__version__), "torch": str(torch.__version__), "diffusers": str(diffusers.__version__)}


# ------------------------------------------------------------------------------ data alignment
def align_prompts(zoo: ParamCollection, prompts: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """The prompts' spatial and temporal rows in the zoo's node order; clear error on missing nodes."""
    have = set(map(tuple, prompts.keys()))
    keys = zoo.keys()
    missing = [k for k in keys if k not in have]
    if missing:
        shown = ", ".join(f"{c}/{n}" for c, n in missing[:5])
        raise GpdiffError(
            f"{len(missing)} of {len(keys)} zoo nodes have no prompt (e.g. {shown}); the prompts cover cities "
            f"{sorted({c for c, _ in have})}, the zoo {zoo.city_names()}. Fit the prompts on the zoo's cities "
            "(`gpdiff prompts fit --cities ...`) from the same data."
        )
    index = prompts.index_of(keys)  # a zoo with several members per node repeats its keys
    return prompts.spatial[index].float(), prompts.temporal[index].float()


# ------------------------------------------------------------------------------ training
def train_denoiser(zoo: ParamCollection, prompts: Any, config: DiffusionConfig | None = None, *, seed: int = 0,
                   device: str | torch.device = "auto", progress: bool = True, workdir: str | Path | None = None,
                   functional: FunctionalLoss | None = None) -> DiffusionModel | None:
    """The diffusion stage: the denoiser of ``config`` (default :class:`DiffusionConfig`) trained on every
    zoo node, each with its prompts taken from ``prompts`` (a PromptSet) by (city, node id); on every
    member of a zoo with several per node (:meth:`ParamCollection.all_members`, each with its node's
    prompts; ``functional`` built by :meth:`FunctionalLoss.for_zoo` covers the same rows).
    ``workdir``: checkpoints and the finished model go there, and a rerun resumes or reloads (:func:`fit`).
    Raises :class:`GpdiffError` for zoo nodes without prompts and the errors of :func:`fit`."""
    zoo = zoo.all_members()
    spatial, temporal = align_prompts(zoo, prompts)
    return fit(zoo, spatial, temporal, config or DiffusionConfig(), workdir, progress, seed, device,
               prompt_meta=getattr(prompts, "meta", None), functional=functional)


def fit(zoo: ParamCollection, spatial: torch.Tensor, temporal: torch.Tensor, config: DiffusionConfig,
        out: str | Path | None = None, progress: bool = True, seed: int = 0, device: str | torch.device = "auto",
        prompt_meta: Any = None, functional: FunctionalLoss | None = None) -> DiffusionModel | None:
    """Train a denoiser on ``zoo`` (rows aligned with ``spatial`` ``[n, ds]`` and ``temporal`` ``[n, dt]``).

    ``functional`` scores the zoo's rows on their own nodes' training windows
    (:class:`~gpdiff.diffusion.functional.FunctionalLoss`, built from the source cities); it is
    required when ``config.functional_weight > 0`` and not read otherwise.

    ``seed`` draws the initial weights and every batch, step and noise; ``device``: ``auto`` (CUDA
    when available), ``cpu``, ``cuda``, ``cuda:1``, ... Both are recorded in the model's ``info``.
    With ``out``, the finished model is saved there, checkpoints are written every
    ``config.checkpoint_every`` iterations, an interrupted run resumes, and a finished run with the
    same config, seed and data is loaded instead of retrained. Under ``torchrun`` every rank calls
    this with the same arguments (data-parallel, see the module docstring); rank 0 returns the model,
    the other ranks ``None``.
    """
    _check_inputs(zoo, spatial, temporal, config, functional)
    dev = resolve_device(str(device))
    distributed.init(dev)
    rank = distributed.rank()
    reference = reference_vector(zoo, config.reference)
    fp = hash_arrays(zoo.params, spatial, temporal, reference, extra=[zoo.keys(), zoo.model, zoo.model_config])
    out = Path(out) if out is not None else None
    done = _finished(out, config, seed, fp, zoo, dev) if rank == 0 else None
    if distributed.broadcast_object(done is not None):
        if progress and rank == 0:
            tqdm.write(f"{out}: already trained with this config, seed and data; loading it.")
        return done
    model = _new_model(zoo, spatial, temporal, config, reference, seed, dev, fp, prompt_meta)
    loop = _Loop.start(model, zoo, spatial, temporal, config, seed, fp, out, progress and rank == 0)
    t0 = time.time()
    running = loop.run(functional)
    if rank != 0:
        return None
    loop.ema.copy_to(model.ema.parameters())
    model.info.update({"iterations": config.max_steps, "final_loss": running, "train_seconds": round(time.time() - t0, 1),
                       "n_weights": model.denoiser.n_weights(), "ranks": distributed.world_size()})
    model.denoiser.eval()
    if out is not None:
        model.save(out)
        _write_history(out / "history.csv", loop.history)
        (out / "checkpoint.safetensors").unlink(missing_ok=True)
    return model


def _check_inputs(zoo: ParamCollection, spatial: torch.Tensor, temporal: torch.Tensor, config: DiffusionConfig,
                  functional: FunctionalLoss | None) -> None:
    """:class:`GpdiffError` for prompts not aligned with the zoo, fewer than 2 nodes, non-finite values,
    or a functional loss asked for without its data."""
    n = len(zoo)
    if spatial.shape[0] != n or temporal.shape[0] != n:
        raise GpdiffError(f"{n} zoo nodes but {spatial.shape[0]} spatial / {temporal.shape[0]} temporal prompts.")
    if n < 2:
        raise GpdiffError(f"the zoo holds {n} node(s); generative pre-training needs at least 2.")
    if not torch.isfinite(zoo.params).all():
        bad = (~torch.isfinite(zoo.params)).any(1).nonzero().flatten()[:5].tolist()
        raise GpdiffError(f"the zoo has non-finite parameters at nodes {[zoo.keys()[i] for i in bad]}; retrain them.")
    if not (torch.isfinite(spatial).all() and torch.isfinite(temporal).all()):
        raise GpdiffError("the prompts contain NaN or infinite values; refit the prompts.")
    if config.functional_weight > 0 and functional is None:
        raise GpdiffError(f"functional_weight = {config.functional_weight} needs the source cities' data to score "
                          "generated parameters on; pass `functional` (`gpdiff run` builds it from its sources, "
                          "`gpdiff pretrain` from the zoo's cities), or set functional_weight to 0.")


def _new_model(zoo: ParamCollection, spatial: torch.Tensor, temporal: torch.Tensor, config: DiffusionConfig,
               reference: torch.Tensor, seed: int, dev: torch.device, fp: str, prompt_meta: Any) -> DiffusionModel:
    """An untrained denoiser for ``zoo``: the generated tensors, their standardiser and tokenizer, and
    weights drawn with ``seed`` (without touching the caller's random state)."""
    generated = generated_tensors(zoo, reference, config.tensors)
    gen_spec = [s for s in zoo.spec if s.name in generated]
    standardizer = Standardizer.fit((zoo.params.float() - reference)[:, tensor_columns(zoo.spec, generated)], gen_spec,
                                    config.standardize, center=config.reference == "none")
    tokenizer = Tokenizer(gen_spec, config.denoiser.resolve_token_dim(gen_spec))
    shape = TokenShape(n_tokens=tokenizer.n_tokens, token_dim=tokenizer.token_dim, spatial_dim=int(spatial.shape[1]),
                       temporal_dim=int(temporal.shape[1]))
    cities = {c: zoo.cities.count(c) for c in zoo.city_names()}
    info: dict[str, Any] = {"n_nodes": len(zoo), "cities": cities, "fingerprint": fp, "seed": seed, "device": str(dev),
                            "prompt_meta": yaml_safe(prompt_meta)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return DiffusionModel(config, shape, zoo.model, zoo.model_config, zoo.spec, standardizer, reference, info, dev,
                              generated)


@dataclass
class _Loop:
    """The denoiser's training loop on one rank: the tokens and prompts on the device, the optimiser,
    learning-rate schedule and EMA, the generator of every draw, and the loss history."""

    model: DiffusionModel
    config: DiffusionConfig
    net: torch.nn.Module  # the denoiser, wrapped for data-parallel training under torchrun
    x0: torch.Tensor  # [n, T, D] every zoo row's tokens
    real: torch.Tensor  # [T, D] 1 at real (not padded) token slots
    spatial: torch.Tensor
    temporal: torch.Tensor
    weights: torch.Tensor  # [n] how often each row is drawn (diffusion.balance)
    opt: torch.optim.Optimizer
    sched: Any
    ema: EMAModel
    gen: torch.Generator
    first: int  # the first iteration to run (0, or the checkpoint's)
    history: list[tuple[int, float, float]]
    loss_sum: torch.Tensor  # summed since the last history entry
    loss_count: int
    seed: int
    fp: str
    ckpt: Path | None
    progress: bool

    @classmethod
    def start(cls, model: DiffusionModel, zoo: ParamCollection, spatial: torch.Tensor, temporal: torch.Tensor,
              config: DiffusionConfig, seed: int, fp: str, out: Path | None, progress: bool) -> _Loop:
        """Set up training, resumed from ``out``'s checkpoint when there is one."""
        dev, rank = model.device, distributed.rank()
        real = model.tokenizer.encode(torch.ones(1, model.tokenizer.n_params))[0].to(dev)
        net = model.denoiser.train()
        groups = [{"params": [p for p in net.parameters() if p.dim() >= 2], "weight_decay": config.weight_decay},
                  {"params": [p for p in net.parameters() if p.dim() < 2], "weight_decay": 0.0}]  # no decay: biases, norms
        opt = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999))
        gen = torch.Generator().manual_seed(seed if rank == 0 else seed + 1_000_003 * rank)
        start, history, loss_sum, loss_count = 0, [], torch.zeros((), device=dev), 0
        ckpt = out / "checkpoint.safetensors" if out is not None else None
        if distributed.broadcast_object(ckpt is not None and ckpt.is_file()):
            assert ckpt is not None
            start, history, loss_sum, loss_count = _restore(ckpt, model, opt, gen, config, seed, fp)
            if progress:
                tqdm.write(f"{out}: resuming from iteration {start}.")
        if distributed.world_size() > 1:  # gradients averaged over ranks after every backward; static_graph: the same
            # parameters take part in every iteration (without classifier-free guidance the null prompt never does)
            net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[dev] if dev.type == "cuda" else None,
                                                            static_graph=True)
        # diffusers' default warm-up: update k = 2, 3, ... decays by min(ema_decay, k / (9 + k)); update 1 copies
        ema = EMAModel(model.ema.parameters(), decay=config.ema_decay, min_decay=0.0, update_after_step=0,
                       use_ema_warmup=False)
        ema.load_state_dict({"optimization_step": start})
        return cls(model, config, net, model.encode(zoo.params).to(dev), real, spatial.float().to(dev),
                   temporal.float().to(dev), row_weights(list(zoo.cities), config.balance), opt,
                   warmup_cosine_scheduler(opt, config.warmup, config.max_steps, start), ema, gen, start, history,
                   loss_sum, loss_count, seed, fp, ckpt, progress)

    def loss(self, schedule: NoiseSchedule, functional: FunctionalLoss | None) -> torch.Tensor:
        """The loss on one batch drawn from the generator: the denoising loss on the real token slots,
        plus the functional loss when ``diffusion.functional_weight`` > 0."""
        c, dev = self.config, self.model.device
        rows = torch.multinomial(self.weights, c.batch_size, replacement=True, generator=self.gen)
        t = torch.randint(schedule.num_train_timesteps, (c.batch_size,), generator=self.gen)
        noise = torch.randn((c.batch_size, *self.x0.shape[1:]), generator=self.gen).to(dev)
        drop = (torch.rand(c.batch_size, generator=self.gen) < c.cfg_dropout).to(dev)
        idx, t = rows.to(dev), t.to(dev)  # rows: the CPU copy, for the functional loss
        x0 = self.x0[idx]
        xt = schedule.add_noise(x0, noise, t)
        pred = self.net(xt, t, self.spatial[idx], self.temporal[idx], drop if c.cfg_dropout > 0 else None)
        err = (pred - schedule.target(x0, noise, t)).square() * self.real
        loss = err.sum() / (self.real.sum() * c.batch_size)
        if c.functional_weight > 0:
            assert functional is not None
            mae = functional(self.model.to_params(schedule.predict_x0(pred, xt, t)), rows, self.gen)  # [batch]
            loss = loss + c.functional_weight * (schedule.alpha_bar(t) * mae).mean()
        return loss

    def run(self, functional: FunctionalLoss | None) -> float | None:
        """Iterations ``first`` .. ``config.max_steps``; returns the final running loss (rank 0's history)."""
        c, rank, dev = self.config, distributed.rank(), self.model.device
        schedule = NoiseSchedule(c.schedule)
        bar = progress_bar(range(self.first, c.max_steps), initial=self.first, total=c.max_steps, disable=not self.progress,
                           desc="denoiser", unit="it")
        running = self.history[-1][1] if self.history else None
        for it in bar:
            lr = self.opt.param_groups[0]["lr"]
            loss = self.loss(schedule, functional)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.net.parameters(), c.grad_clip)
            self.opt.step()
            self.sched.step()
            if rank == 0:
                self.ema.step(self.net.parameters())
            self.loss_sum, self.loss_count = self.loss_sum + loss.detach(), self.loss_count + 1
            if (it + 1) % 50 == 0 or it + 1 == c.max_steps:  # the only host-device sync of the loop
                value = float(self.loss_sum) / self.loss_count
                running = value if running is None else 0.7 * running + 0.3 * value
                self.loss_sum, self.loss_count = torch.zeros((), device=dev), 0
                self.history.append((it + 1, running, lr))
                bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.1e}")
            if self.ckpt is not None and (it + 1) % c.checkpoint_every == 0 and it + 1 < c.max_steps:
                self.checkpoint(it + 1)
        bar.close()
        return running

    def checkpoint(self, iteration: int) -> None:
        """Every rank's generator state to rank 0, which writes the checkpoint (with the EMA weights)."""
        rng = distributed.all_gather_object(self.gen.get_state())  # every rank's, for an exact resume
        if distributed.rank() == 0:
            assert self.ckpt is not None
            self.ema.copy_to(self.model.ema.parameters())
            _checkpoint(self.ckpt, self.model, self.opt, rng, self.config, self.seed, self.fp, iteration, self.history,
                        self.loss_sum, self.loss_count)


def reference_vector(zoo: ParamCollection, reference: str) -> torch.Tensor:
    """The point ``[P]`` whose difference the denoiser learns (``DiffusionConfig.reference``)."""
    if reference == "auto":
        reference = "anchor" if zoo.anchor is not None else "mean"
    if reference == "anchor":
        if zoo.anchor is None:
            raise GpdiffError("diffusion.reference is 'anchor' but the zoo has no anchor; train the zoo with "
                              "zoo.init: anchor, or set diffusion.reference to mean.")
        return zoo.anchor.float().clone()
    if reference == "mean":
        return zoo.params.float().mean(0)
    return torch.zeros(zoo.params.shape[1])


def tensor_columns(spec: list[ParamSpec], names: list[str]) -> torch.Tensor:
    """The columns ``[p]`` of a flat parameter vector (``spec`` order) that hold the tensors ``names``."""
    cols, start = [], 0
    for s in spec:
        if s.name in names:
            cols.append(torch.arange(start, start + s.numel))
        start += s.numel
    return torch.cat(cols) if cols else torch.zeros(0, dtype=torch.long)


def generated_tensors(zoo: ParamCollection, reference: torch.Tensor, tensors: str) -> list[str]:
    """The tensors the denoiser learns to generate (``DiffusionConfig.tensors``): every tensor, or
    (``auto``) those in which some zoo member differs from ``reference [P]`` (a zoo trained with
    ``zoo.trainable`` leaves the others at the anchor); every tensor when none differs."""
    names = [s.name for s in zoo.spec]
    if tensors == "all":
        return names
    varied = (zoo.params.float() != reference.float()).any(0)
    keep = [n for n in names if bool(varied[tensor_columns(zoo.spec, [n])].any())]
    return keep or names


def _identity(config: DiffusionConfig, seed: Any, ranks: int | None = None) -> dict[str, Any]:
    """What must agree for a saved run or checkpoint to be this run: the config (bar how often it
    checkpoints), the seed, and the number of processes (``ranks``, default this run's: the
    effective batch and the draws depend on it; absent for one process)."""
    settings = config.to_dict()
    settings.pop("checkpoint_every")
    ranks = distributed.world_size() if ranks is None else ranks
    return {"config": settings, "seed": seed, **({"ranks": ranks} if ranks > 1 else {})}


def _finished(out: Path | None, config: DiffusionConfig, seed: int, fp: str, zoo: ParamCollection,
              device: torch.device) -> DiffusionModel | None:
    """A finished run in ``out`` with the same config, seed and data, or ``None``; error on a different run."""
    if out is None or not (out / "config.yaml").is_file():
        return None
    model = DiffusionModel.load(out, device=device)
    model.check_base(zoo.model, zoo.model_config, zoo.spec)
    same = _identity(model.config, model.info.get("seed"), int(model.info.get("ranks", 1))) == _identity(config, seed)
    if not same or model.info.get("fingerprint") != fp:
        raise GpdiffError(f"{out} already holds a denoiser trained with another config, seed, number of processes "
                          "or other data; choose another --out folder, or delete this one to retrain.")
    return model


def _checkpoint(path: Path, model: DiffusionModel, opt: torch.optim.Optimizer, rng: list[torch.Tensor],
                config: DiffusionConfig, seed: int, fp: str, iteration: int, history: list[tuple[int, float, float]],
                loss_sum: torch.Tensor, loss_count: int) -> None:
    """Save what resuming needs: weights, EMA weights (``model.ema`` must hold them), optimiser state, the
    generator state of every rank (``rng``, in rank order), and the loss history with the loss summed
    over the ``loss_count`` iterations since its last entry."""
    tensors = {f"model.{k}": v for k, v in model.denoiser.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in model.ema.state_dict().items()})
    for i, st in opt.state_dict()["state"].items():
        tensors.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in st.items()})
    tensors["rng"] = rng[0]
    tensors.update({f"rng.{r}": state for r, state in enumerate(rng) if r > 0})
    tensors["loss_sum"] = loss_sum
    meta = {"run": _identity(config, seed), "fingerprint": fp, "iteration": iteration, "history": history,
            "loss_count": loss_count, "ranks": len(rng)}
    save_tensors(path, tensors, meta)


def _restore(path: Path, model: DiffusionModel, opt: torch.optim.Optimizer, gen: torch.Generator,
             config: DiffusionConfig, seed: int, fp: str
             ) -> tuple[int, list[tuple[int, float, float]], torch.Tensor, int]:
    """Load a checkpoint of this run (same config, seed and data) into ``model``, ``opt`` and ``gen``;
    returns the iteration it was written at, the loss history so far, and the loss sum and count
    since its last entry. Under torchrun rank 0 reads the file and sends it to the other ranks."""
    tensors, meta = distributed.broadcast_object(load_tensors(path) if distributed.is_main() else None)
    if meta.get("run") != _identity(config, seed) or meta.get("fingerprint") != fp:
        raise GpdiffError(f"{path} is a checkpoint of a run with another config, seed or other data; use another "
                          "--out folder, or delete the checkpoint to start over.")
    ranks, world = int(meta.get("ranks", 1)), distributed.world_size()
    if ranks != world:
        raise GpdiffError(f"{path} was written by a run on {ranks} process(es), this one has {world}; resume it "
                          f"with --nproc_per_node={ranks} (in all), or delete the checkpoint to start over.")
    dev = model.device
    for prefix, module in (("model.", model.denoiser), ("ema.", model.ema)):
        module.load_state_dict({k[len(prefix):]: v.to(dev) for k, v in tensors.items() if k.startswith(prefix)})
    state = opt.state_dict()
    per: dict[int, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("opt."):
            _, i, name = k.split(".", 2)
            per.setdefault(int(i), {})[name] = v if name == "step" else v.to(dev)
    state["state"] = per
    opt.load_state_dict(state)
    rank = distributed.rank()
    gen.set_state(tensors["rng"] if rank == 0 else tensors[f"rng.{rank}"])
    history: list[tuple[int, float, float]] = [(int(i), float(loss), float(lr)) for i, loss, lr in meta["history"]]
    return int(meta["iteration"]), history, tensors["loss_sum"].to(dev), int(meta["loss_count"])


def _write_history(path: Path, history: list[tuple[int, float, float]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["iteration", "loss", "lr"])
    w.writerows(history)
    atomic_write_text(path, buf.getvalue())
