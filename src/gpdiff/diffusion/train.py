"""Generative pre-training: fit the denoiser to a zoo's parameters conditioned on the nodes' prompts.

:class:`DiffusionConfig` holds every setting (a preset fills the sizes; fields override it).
:func:`pretrain` aligns a zoo with a prompt set by (city, node id) and trains; :func:`fit` does the
same from prompt tensors. Training: parameters standardised per tensor and cut into tensor-aligned
tokens, uniform diffusion steps, MSE on the prediction target over real (non-padding) token slots,
AdamW with warm-up and cosine decay, gradient clipping, an EMA copy of the weights (used for
sampling), optional prompt dropout for classifier-free guidance, a progress bar, and checkpoints
that an interrupted run resumes from.

The output folder (:class:`DiffusionModel`) holds ``config.yaml`` (this config, the denoiser
shape, the base model name / config / parameter spec, prompt sizes, training summary),
``model.safetensors``, ``ema.safetensors``, ``standardizer.safetensors`` and ``history.csv``:
generation needs nothing but the folder.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import io
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import gpdiff
from gpdiff.config import from_mapping
from gpdiff.device import resolve_device
from gpdiff.diffusion.denoiser import Denoiser, DenoiserConfig
from gpdiff.diffusion.schedule import NoiseSchedule, ScheduleConfig
from gpdiff.errors import GpdiffError, unknown_name
from gpdiff.io import atomic_write_text, load_tensors, read_yaml, save_tensors, write_yaml
from gpdiff.models.base import ParamSpec
from gpdiff.params import ParamCollection, Standardizer, Tokenizer, spec_from_json, spec_to_json

# Sizes per preset; every other field keeps its dataclass default unless overridden.
PRESETS: dict[str, dict[str, Any]] = {
    "small": {"d_model": 128, "n_layers": 4, "n_heads": 4, "max_tokens": 64, "num_train_timesteps": 500,
              "iters": 1000, "batch_size": 64, "lr": 5e-3, "warmup": 50},
    "paper": {"d_model": 512, "n_layers": 4, "n_heads": 8, "max_tokens": 256, "num_train_timesteps": 500,
              "iters": 80_000, "batch_size": 64, "lr": 2e-4, "warmup": 1000},
}
TOKEN_DIMS = (16, 32, 64, 128, 256, 512, 1024)
FORMAT = "gpdiff.diffusion"


@dataclass
class DiffusionConfig:
    """Every setting of the denoiser, the diffusion process and training. Defaults: the ``small`` preset."""

    preset: str = "small"
    condition: str = "pre_inductive"
    # denoiser
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    per_token: bool = True  # one input / output projection per token position (False: shared)
    token_dim: int = 0  # 0: the smallest of TOKEN_DIMS giving at most ``max_tokens`` tokens
    max_tokens: int = 64
    center: bool = True  # subtract the training collection's mean vector before standardising
    # diffusion (paper: linear betas 1e-5..0.02, 500 steps, v-prediction)
    num_train_timesteps: int = 500
    beta_start: float = 1e-5
    beta_end: float = 0.02
    beta_schedule: str = "linear"
    prediction_type: str = "v_prediction"
    # training
    iters: int = 1000
    batch_size: int = 64
    lr: float = 5e-3
    weight_decay: float = 0.01
    warmup: int = 50
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    cfg_dropout: float = 0.0  # probability of dropping both prompts (classifier-free guidance)
    seed: int = 0
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        self.schedule()  # validates prediction type / beta schedule
        from gpdiff.diffusion.conditioning import CONDITIONING

        if self.condition not in CONDITIONING:
            raise unknown_name("conditioning strategy", self.condition, CONDITIONING)
        if not 0.0 <= self.cfg_dropout < 1.0:
            raise GpdiffError(f"cfg_dropout must be in [0, 1), got {self.cfg_dropout}.")
        for name in ("iters", "batch_size", "d_model", "n_heads", "max_tokens"):
            if getattr(self, name) < 1:
                raise GpdiffError(f"{name} must be at least 1, got {getattr(self, name)}.")

    @classmethod
    def from_preset(cls, preset: str = "small", **overrides: Any) -> DiffusionConfig:
        """The preset's sizes, then ``overrides`` (``None`` values are ignored)."""
        if preset not in PRESETS:
            raise unknown_name("denoiser preset", preset, PRESETS)
        return cls.from_dict({"preset": preset, **PRESETS[preset],
                              **{k: v for k, v in overrides.items() if v is not None}})

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DiffusionConfig:
        return from_mapping(cls, data, "diffusion config")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def schedule(self) -> ScheduleConfig:
        return ScheduleConfig(self.num_train_timesteps, self.beta_start, self.beta_end, self.beta_schedule,
                              self.prediction_type)

    def resolve_token_dim(self, spec: list[ParamSpec]) -> int:
        if self.token_dim > 0:
            return self.token_dim
        for d in TOKEN_DIMS:
            if Tokenizer(spec, d).n_tokens <= self.max_tokens:
                return d
        return TOKEN_DIMS[-1]

    def torch_device(self) -> torch.device:
        return resolve_device(self.device)


# ------------------------------------------------------------------------------ the model bundle
class DiffusionModel:
    """A trained (or training) denoiser with everything needed to generate parameters."""

    def __init__(self, config: DiffusionConfig, denoiser_config: DenoiserConfig, base_model: str,
                 model_config: dict[str, Any], spec: list[ParamSpec], standardizer: Standardizer,
                 center: torch.Tensor, info: dict[str, Any] | None = None,
                 device: torch.device | str = "cpu") -> None:
        self.config, self.denoiser_config = config, denoiser_config
        self.base_model, self.model_config, self.spec = base_model, dict(model_config), list(spec)
        self.standardizer, self.center = standardizer, center.float().cpu()
        self.tokenizer = Tokenizer(self.spec, denoiser_config.token_dim)
        if self.tokenizer.n_tokens != denoiser_config.n_tokens:
            raise GpdiffError(f"denoiser expects {denoiser_config.n_tokens} tokens but the parameter spec gives "
                              f"{self.tokenizer.n_tokens}; the model folder is inconsistent, retrain it.")
        self.info = dict(info or {})
        self.device = torch.device(device)
        self.denoiser = Denoiser(denoiser_config, self.tokenizer.spatial_mask()).to(self.device)
        self.ema = copy.deepcopy(self.denoiser).requires_grad_(False).eval()
        self.path: Path | None = None

    def encode(self, params: torch.Tensor) -> torch.Tensor:
        """Parameters ``[n, P]`` -> the denoiser's tokens ``[n, T, D]`` (centred, standardised)."""
        return self.tokenizer.encode(self.standardizer.transform(params.float().cpu() - self.center))

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens ``[n, T, D]`` -> parameters ``[n, P]`` on the original scale (CPU)."""
        return self.standardizer.inverse(self.tokenizer.decode(tokens.float().cpu())) + self.center

    @property
    def spatial_dim(self) -> int:
        return self.denoiser_config.spatial_dim

    @property
    def temporal_dim(self) -> int:
        return self.denoiser_config.temporal_dim

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
            "denoiser": self.denoiser_config.to_dict(),
            "base_model": {"name": self.base_model, "config": self.model_config, "spec": spec_to_json(self.spec),
                           "n_params": self.tokenizer.n_params},
            "info": self.info,
            "versions": _versions(),
        }

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_tensors(out / "model.safetensors", self.denoiser.state_dict())
        save_tensors(out / "ema.safetensors", self.ema.state_dict())
        save_tensors(out / "standardizer.safetensors", {**self.standardizer.state(), "center": self.center})
        write_yaml(out / "config.yaml", self.config_dict())  # written last: marks the folder complete
        self.path = out
        return out

    @classmethod
    def load(cls, folder: str | Path, device: str | torch.device | None = None) -> DiffusionModel:
        folder = Path(folder)
        cfg_path = folder / "config.yaml"
        if not cfg_path.is_file():
            raise GpdiffError(f"{folder} holds no trained denoiser (no config.yaml); run `gpdiff pretrain --out {folder}`"
                              " first, or pass the folder it wrote.")
        data = read_yaml(cfg_path)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise GpdiffError(f"{cfg_path} is not a gpdiff denoiser config (written by `gpdiff pretrain`).")
        config = DiffusionConfig.from_dict(data["diffusion"])
        try:
            dcfg = DenoiserConfig(**data["denoiser"])
        except TypeError as exc:
            raise GpdiffError(f"{cfg_path}: bad denoiser section ({exc}); retrain with this gpdiff version.") from None
        base = data["base_model"]
        std_tensors, _ = load_tensors(folder / "standardizer.safetensors")
        dev = config.torch_device() if device is None else torch.device(device)
        model = cls(config, dcfg, base["name"], base["config"], spec_from_json(base["spec"]),
                    Standardizer.from_state(std_tensors), std_tensors["center"], data.get("info", {}), dev)
        model.path = folder
        for name, module in (("model", model.denoiser), ("ema", model.ema)):
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
    have = set(map(tuple, prompts.key()))
    keys = zoo.keys()
    missing = [k for k in keys if k not in have]
    if missing:
        shown = ", ".join(f"{c}/{n}" for c, n in missing[:5])
        raise GpdiffError(
            f"{len(missing)} of {len(keys)} zoo nodes have no prompt (e.g. {shown}); the prompts cover cities "
            f"{sorted({c for c, _ in have})}, the zoo {zoo.city_names()}. Fit the prompts on the zoo's cities "
            "(`gpdiff prompts fit --cities ...`) from the same data."
        )
    sel = prompts.select(keys)
    return sel.spatial.float(), sel.temporal.float()


def fingerprint(*tensors: torch.Tensor, extra: Any = None) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(repr(extra).encode())
    return h.hexdigest()[:16]


# ------------------------------------------------------------------------------ training
def pretrain(zoo: ParamCollection, prompts: Any, config: DiffusionConfig, out: str | Path | None = None,
             progress: bool = True) -> DiffusionModel:
    """Train on every zoo node, with its prompts taken from ``prompts`` (a PromptSet) by (city, node id)."""
    spatial, temporal = align_prompts(zoo, prompts)
    return fit(zoo, spatial, temporal, config, out, progress, prompt_meta=getattr(prompts, "meta", None))


def _lr(config: DiffusionConfig, it: int) -> float:
    if it < config.warmup:
        return config.lr * (it + 1) / config.warmup
    frac = (it - config.warmup) / max(1, config.iters - config.warmup)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def fit(zoo: ParamCollection, spatial: torch.Tensor, temporal: torch.Tensor, config: DiffusionConfig,
        out: str | Path | None = None, progress: bool = True, prompt_meta: Any = None) -> DiffusionModel:
    """Train a denoiser on ``zoo`` (rows aligned with ``spatial`` ``[n, ds]`` and ``temporal`` ``[n, dt]``).

    With ``out``, the finished model is saved there, checkpoints are written every
    ``config.checkpoint_every`` iterations, an interrupted run resumes, and a finished run with the
    same config and data is loaded instead of retrained.
    """
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
    dev = config.torch_device()
    center = zoo.params.float().mean(0) if config.center else torch.zeros(zoo.params.shape[1])
    standardizer = Standardizer.fit(zoo.params.float() - center, zoo.spec)
    token_dim = config.resolve_token_dim(zoo.spec)
    tokenizer = Tokenizer(zoo.spec, token_dim)
    dcfg = DenoiserConfig(n_tokens=tokenizer.n_tokens, token_dim=token_dim, spatial_dim=int(spatial.shape[1]),
                          temporal_dim=int(temporal.shape[1]), d_model=config.d_model, n_layers=config.n_layers,
                          n_heads=config.n_heads, mlp_ratio=config.mlp_ratio, dropout=config.dropout,
                          condition=config.condition, per_token=config.per_token)
    fp = fingerprint(zoo.params, spatial, temporal, extra=(zoo.keys(), zoo.model, zoo.model_config))
    out = Path(out) if out is not None else None
    done = _finished(out, config, fp, zoo)
    if done is not None:
        if progress:
            tqdm.write(f"{out}: already trained with this config and data; loading it.")
        return done
    cities = {c: zoo.cities.count(c) for c in zoo.city_names()}
    info: dict[str, Any] = {"n_nodes": n, "cities": cities, "fingerprint": fp, "prompt_meta": _plain(prompt_meta)}
    with torch.random.fork_rng(devices=[]):  # seeded weights, without touching the caller's RNG
        torch.manual_seed(config.seed)
        model = DiffusionModel(config, dcfg, zoo.model, zoo.model_config, zoo.spec, standardizer, center, info, dev)

    x0_all = model.encode(zoo.params).to(dev)  # [n, T, D]
    real = tokenizer.encode(torch.ones(1, tokenizer.n_params))[0].to(dev)  # [T, D], 1 at real slots
    ps_all, pt_all = spatial.float().to(dev), temporal.float().to(dev)
    schedule = NoiseSchedule(config.schedule())
    net, ema = model.denoiser.train(), model.ema
    groups = [{"params": [p for p in net.parameters() if p.dim() >= 2], "weight_decay": config.weight_decay},
              {"params": [p for p in net.parameters() if p.dim() < 2], "weight_decay": 0.0}]  # no decay: biases, norms
    opt = torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.999))
    gen = torch.Generator().manual_seed(config.seed)
    start, history = 0, []
    if out is not None and (out / "checkpoint.safetensors").is_file():
        start, history = _restore(out / "checkpoint.safetensors", model, opt, gen, config, fp)
        if progress:
            tqdm.write(f"{out}: resuming from iteration {start}.")

    t0 = time.time()
    bar = tqdm(range(start, config.iters), initial=start, total=config.iters, disable=not progress,
               desc="pretrain", dynamic_ncols=True)
    running = history[-1][1] if history else None
    loss_sum, loss_count = torch.zeros((), device=dev), 0
    for it in bar:
        lr = _lr(config, it)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = torch.randint(n, (config.batch_size,), generator=gen)
        t = torch.randint(schedule.num_train_timesteps, (config.batch_size,), generator=gen)
        noise = torch.randn((config.batch_size, *x0_all.shape[1:]), generator=gen).to(dev)
        drop = (torch.rand(config.batch_size, generator=gen) < config.cfg_dropout).to(dev)
        idx, t = idx.to(dev), t.to(dev)
        x0 = x0_all[idx]
        xt = schedule.add_noise(x0, noise, t)
        pred = net(xt, t, ps_all[idx], pt_all[idx], drop if config.cfg_dropout > 0 else None)
        err = (pred - schedule.target(x0, noise, t)).square() * real
        loss = err.sum() / (real.sum() * config.batch_size)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip)
        opt.step()
        _ema_update(ema, net, min(config.ema_decay, (1 + it) / (10 + it)))
        loss_sum, loss_count = loss_sum + loss.detach(), loss_count + 1
        if (it + 1) % 50 == 0 or it + 1 == config.iters:  # the only host-device sync of the loop
            value = float(loss_sum) / loss_count
            running = value if running is None else 0.7 * running + 0.3 * value
            loss_sum, loss_count = torch.zeros((), device=dev), 0
            history.append((it + 1, running, lr))
            bar.set_postfix(loss=f"{running:.4f}", lr=f"{lr:.1e}")
        if out is not None and (it + 1) % config.checkpoint_every == 0 and it + 1 < config.iters:
            _checkpoint(out / "checkpoint.safetensors", model, opt, gen, config, fp, it + 1, history)
    bar.close()

    model.info.update({"iterations": config.iters, "final_loss": running, "train_seconds": round(time.time() - t0, 1),
                       "device": str(dev), "n_weights": net.n_weights()})
    net.eval()
    if out is not None:
        model.save(out)
        _write_history(out / "history.csv", history)
        (out / "checkpoint.safetensors").unlink(missing_ok=True)
    return model


@torch.no_grad()
def _ema_update(ema: torch.nn.Module, net: torch.nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), net.parameters()):
        e.lerp_(p.detach(), 1.0 - decay)


def _plain(obj: Any) -> Any:
    """Keep only YAML-safe content of prompt metadata."""
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return str(obj)


def _comparable(config: DiffusionConfig) -> dict[str, Any]:
    d = config.to_dict()
    d.pop("checkpoint_every")
    d.pop("device")
    return d


def _finished(out: Path | None, config: DiffusionConfig, fp: str, zoo: ParamCollection) -> DiffusionModel | None:
    """A finished run in ``out`` with the same config and data, or ``None``; error on a different run."""
    if out is None or not (out / "config.yaml").is_file():
        return None
    model = DiffusionModel.load(out, device=config.torch_device())
    model.check_base(zoo.model, zoo.model_config, zoo.spec)
    if _comparable(model.config) != _comparable(config) or model.info.get("fingerprint") != fp:
        raise GpdiffError(f"{out} already holds a denoiser trained with another config or other data; "
                          "choose another --out folder, or delete this one to retrain.")
    return model


def _checkpoint(path: Path, model: DiffusionModel, opt: torch.optim.Optimizer, gen: torch.Generator,
                config: DiffusionConfig, fp: str, iteration: int, history: list[tuple[int, float, float]]) -> None:
    tensors = {f"model.{k}": v for k, v in model.denoiser.state_dict().items()}
    tensors.update({f"ema.{k}": v for k, v in model.ema.state_dict().items()})
    for i, st in opt.state_dict()["state"].items():
        tensors.update({f"opt.{i}.{k}": torch.as_tensor(v) for k, v in st.items()})
    tensors["rng"] = gen.get_state()
    meta = {"config": _comparable(config), "fingerprint": fp, "iteration": iteration, "history": history}
    save_tensors(path, tensors, meta)


def _restore(path: Path, model: DiffusionModel, opt: torch.optim.Optimizer, gen: torch.Generator,
             config: DiffusionConfig, fp: str) -> tuple[int, list[tuple[int, float, float]]]:
    tensors, meta = load_tensors(path)
    if meta.get("config") != _comparable(config) or meta.get("fingerprint") != fp:
        raise GpdiffError(f"{path} is a checkpoint of a run with another config or other data; use another --out "
                          "folder, or delete the checkpoint to start over.")
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
    gen.set_state(tensors["rng"])
    return int(meta["iteration"]), [tuple(h) for h in meta.get("history", [])]  # type: ignore[misc]


def _write_history(path: Path, history: list[tuple[int, float, float]]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["iteration", "loss", "lr"])
    w.writerows(history)
    atomic_write_text(path, buf.getvalue())
