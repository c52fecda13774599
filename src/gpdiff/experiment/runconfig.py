"""The run config: one tree of dataclasses holding every setting of `gpdiff run` in exactly one place.

::

    RunConfig
      target, sources, data_dir, target_days, val_days, test_fraction, target_scale_floor, seed, device, out,
      keep_checkpoints
      window:    WindowConfig      history, horizon, n_neighbors, context
      model:     BaseModelConfig   the base model: name, preset, in_channels, residual
      source_split: SourceSplit    train / val / test fractions of every source city
      anchor:    AnchorConfig      the pooled source model (zoo start point, transfer baselines)
      zoo:       ZooConfig         how each source node's model trains: init, node training
      prompts:   PromptsConfig     temporal / spatial encoder names and their settings
      diffusion: DiffusionConfig   preset, denoiser (architecture), schedule (forward process), training
      generate:  GenerateConfig    sampler, num_inference_steps, guidance_scale
      finetune:  FinetuneConfig    the fine-tuning budget every method gets
      methods:   {name: settings}  the methods to run, in order, each with its own settings
      blend:     BlendConfig       naive forecasts every learned method is blended with (weights fitted on validation)
      intervals: RunIntervalConfig levels of the conformal prediction intervals, calibrated on validation or daily
      ensemble:  EnsembleConfig    members per method with parameters (GPD's generations, deep ensembles)

YAML files are nested the same way and only override defaults; ``--set dotted.path=value`` overrides
one field. A key from before the tree (``history``, ``steps``, ``zoo.k`` ...) fails with one line
naming its new path.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpdiff.data.scaler import TARGET_SCALE_FLOOR
from gpdiff.data.splits import SourceSplit
from gpdiff.data.windows import WindowConfig
from gpdiff.diffusion.sample import GenerateConfig
from gpdiff.diffusion.train import DiffusionConfig
from gpdiff.evaluation.blend import BlendConfig
from gpdiff.evaluation.ensemble import EnsembleConfig
from gpdiff.evaluation.intervals import RunIntervalConfig
from gpdiff.methods.adapt import FinetuneConfig
from gpdiff.models.config import BaseModelConfig
from gpdiff.prompts import PromptsConfig
from gpdiff.utils.config import (
    first_repeated,
    from_mapping,
    merge,
    name_list,
    parse_assignment,
    path_origins,
    require_range,
    set_path,
    to_mapping,
)
from gpdiff.utils.device import check_device_name
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import read_yaml
from gpdiff.zoo.anchor import AnchorConfig
from gpdiff.zoo.train import ZooConfig

DEFAULT_TARGET = "melbourne-ped"
DEFAULT_METHODS = ("seasonal_naive", "weekly_naive", "historical_average", "target_only", "transfer_zero_shot",
                   "transfer", "mean_params", "retrieval", "knn_residual", "reptile", "gpd_zero_shot", "gpd",
                   "pooled_linear")

# Settings that moved when the flat run config became a tree: old dotted path -> new one.
MOVED: dict[str, str] = {
    "history": "window.history", "horizon": "window.horizon", "k": "window.n_neighbors",
    "model": "model.name", "preset": "model.preset", "condition": "diffusion.denoiser.condition",
    "denoiser": "diffusion.preset", "sampler": "generate.sampler", "steps": "generate.num_inference_steps",
    "guidance": "generate.guidance_scale", "baselines": "methods.<name>",
    "zoo.history": "window.history", "zoo.horizon": "window.horizon", "zoo.k": "window.n_neighbors",
    "zoo.seed": "seed", "zoo.device": "device", "diffusion.seed": "seed", "diffusion.device": "device",
    "diffusion.condition": "diffusion.denoiser.condition", "zoo.shared_init": "zoo.init",
    "diffusion.center": "diffusion.reference",
    # the zoo section held the base model and the source split until each got a section of its own
    "zoo.model": "model.name", "zoo.preset": "model.preset", "zoo.in_channels": "model.in_channels",
    "zoo.residual": "model.residual", "zoo.train": "source_split.train", "zoo.val": "source_split.val",
    "zoo.test": "source_split.test",
    **{f"diffusion.{k}": f"diffusion.denoiser.{k}" for k in ("d_model", "n_layers", "n_heads", "mlp_ratio", "dropout",
                                                            "per_token", "token_dim", "max_tokens")},
    **{f"diffusion.{k}": f"diffusion.schedule.{k}" for k in ("num_train_timesteps", "beta_start", "beta_end",
                                                            "beta_schedule", "prediction_type")},
}


@dataclass
class RunConfig:
    """Every setting of a run (see the module docstring for the tree)."""

    target: str = DEFAULT_TARGET
    sources: list[str] = field(default_factory=list)  # empty: the other bundled flow cities / data-dir cities
    data_dir: str | None = None  # folder with cities in any supported format (one per subfolder/file)
    target_days: float = 3.0
    val_days: float = 1.0
    test_fraction: float = 0.2
    target_scale_floor: float = TARGET_SCALE_FLOOR  # target nodes' std >= this x the target's pooled std (NodeScaler.fit)
    window: WindowConfig = field(default_factory=WindowConfig)
    model: BaseModelConfig = field(default_factory=BaseModelConfig)
    source_split: SourceSplit = field(default_factory=SourceSplit)
    anchor: AnchorConfig = field(default_factory=AnchorConfig)
    zoo: ZooConfig = field(default_factory=ZooConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    methods: dict[str, dict[str, Any]] = field(default_factory=lambda: {m: {} for m in DEFAULT_METHODS})
    blend: BlendConfig = field(default_factory=BlendConfig)
    intervals: RunIntervalConfig = field(default_factory=RunIntervalConfig)
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    seed: int = 0
    device: str = "auto"
    out: str = "runs/default"
    keep_checkpoints: bool = False  # keep finished stages' resume checkpoints and the non-EMA denoiser (debugging)

    def __post_init__(self) -> None:
        from gpdiff.methods import check_settings

        self.sources = name_list(self.sources)
        if (repeated := first_repeated(self.sources)) is not None:
            raise GpdiffError(f"sources list {repeated!r} more than once; list every source city once.")
        for name in ("target_days", "val_days"):
            if not math.isfinite(getattr(self, name)) or getattr(self, name) <= 0:
                raise GpdiffError(f"{name} must be a number of days > 0, got {getattr(self, name)}.")
        require_range(self, ("target_scale_floor",), at_least=0, at_most=1)
        if self.seed < 0:
            raise GpdiffError(f"seed must be >= 0 (numpy's generators refuse negative seeds), got {self.seed}.")
        if self.device != "auto":
            check_device_name(self.device)
        self.generate.check_against(self.diffusion.schedule, self.diffusion.cfg_dropout)
        if self.model.residual == "seasonal" and self.window.context not in ("daily", "weekly"):
            raise GpdiffError("model.residual seasonal forecasts a correction to the seasonal context, so it needs "
                              "window.context daily or weekly (context lags has its own learned head); set one, "
                              "or model.residual none.")
        if not 0 < self.test_fraction < 1:
            raise GpdiffError(f"test_fraction must be between 0 and 1 (the share of the target held out as the "
                              f"test period), got {self.test_fraction}.")
        self.methods = method_settings(self.methods)
        if not self.methods:
            raise GpdiffError(f"no methods to run; name at least one (methods, or --methods), e.g. "
                              f"{','.join(DEFAULT_METHODS[:2])}.")
        moved = sorted(self.methods.get("transfer", {}))
        if moved:
            raise GpdiffError(f"methods.transfer.{moved[0]}: the transfer baseline starts from the run's anchor now; "
                              f"set anchor.{moved[0]} instead (the anchor section of configs/default.yaml).")
        for name, options in self.methods.items():
            check_settings(name, options)  # unknown names and settings fail here, before any work

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, where: str = "",
                  origins: Mapping[str, str] | None = None) -> RunConfig:
        """A run config from nested settings; raises :class:`GpdiffError` naming unknown or moved keys and
        where they were given (``origins``: dotted path -> place, see :func:`gpdiff.utils.config.from_mapping`)."""
        return from_mapping(cls, data, "run config", where, MOVED, origins=origins)

    @classmethod
    def from_yaml(cls, path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                  assignments: Sequence[str] = ()) -> RunConfig:
        """The file's settings (when given), then nested ``overrides``, then ``dotted.path=value`` assignments.

        An override of ``methods`` replaces the file's list of methods instead of adding to it; an assignment
        to one method's setting (``methods.gpd.shrinkages=...``) keeps the list (the default one when
        neither the file nor the overrides name any) and adds that method if it is missing. A wrong
        key or value is blamed on where it was given: the file, or ``--set PATH=VALUE`` for an
        assignment (the overrides, a command's flags, name no place)."""
        doc: Any = {}
        if path is not None:
            doc = read_yaml(path)
            if doc is not None and not isinstance(doc, dict):
                raise GpdiffError(f"{path}: a run config must be a mapping of settings, got {type(doc).__name__}.")
        data = merge(doc or {}, overrides or {})
        origins = path_origins(overrides, "")
        if overrides and "methods" in overrides:
            data["methods"] = overrides["methods"]
        parsed = [parse_assignment(text) for text in assignments]
        if "methods" not in data and any(len(keys) > 1 and keys[0] == "methods" for keys, _ in parsed):
            data["methods"] = {m: {} for m in DEFAULT_METHODS}  # a method's setting keeps the default list
        for text, (keys, value) in zip(assignments, parsed):
            data = set_path(data, keys, value)
            origins = {p: o for p, o in origins.items() if not p.startswith(".".join(keys) + ".")}
            origins[".".join(keys)] = f"--set {text.strip()}"
        return cls.from_dict(data, str(path) if path else "", origins)

    def to_dict(self) -> dict[str, Any]:
        return to_mapping(self)


def method_settings(value: Any) -> dict[str, dict[str, Any]]:
    """``methods`` as an ordered ``{name: settings}``: a mapping (``None`` settings = defaults), a list
    of names, or a comma-separated string."""
    if isinstance(value, Mapping):
        out = {}
        for name, settings in value.items():
            if settings is not None and not isinstance(settings, Mapping):
                raise GpdiffError(f"methods.{name} must be a mapping of that method's settings, got {settings!r}.")
            out[str(name)] = dict(settings or {})
        return out
    if value is not None and not isinstance(value, (str, list, tuple)):
        raise GpdiffError(f"methods must be a list of method names or a mapping of them to settings, got {value!r}.")
    names = name_list(value)
    if (repeated := first_repeated(names)) is not None:
        raise GpdiffError(f"methods list {repeated!r} more than once; list every method once.")
    return {name: {} for name in names}
