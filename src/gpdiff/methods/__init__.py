"""Every method of the few-shot comparison, behind one interface.

A method is a function ``(ctx: MethodInputs) -> MethodResult`` in its own module, registered below by
name. All methods see the same target data (windows, splits, scaler) and are scored by the same
code; methods that fine-tune use :func:`gpdiff.methods.adapt.finetune` with the same budget.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from gpdiff.data.windows import CityData
from gpdiff.methods.adapt import FinetuneConfig
from gpdiff.models.base import BaseModel
from gpdiff.prompts import PromptSet
from gpdiff.utils.config import from_mapping
from gpdiff.utils.errors import GpdiffError, unknown_name
from gpdiff.utils.io import load_tensors, save_tensors
from gpdiff.zoo.params import ParamCollection
from gpdiff.zoo.sourcefit import SourceFit

T = TypeVar("T")

# name -> "module:function" (loaded on use). One line per method.
METHODS: dict[str, str] = {
    "seasonal_naive": "gpdiff.methods.naive:run_seasonal_naive",
    "weekly_naive": "gpdiff.methods.naive:run_weekly_naive",
    "historical_average": "gpdiff.methods.naive:run_historical_average",
    "target_only": "gpdiff.methods.target_only:run",
    "transfer": "gpdiff.methods.transfer:run",
    "transfer_zero_shot": "gpdiff.methods.transfer:run_zero_shot",
    "knn_residual": "gpdiff.methods.knn_residual:run",
    "mean_params": "gpdiff.methods.mean_params:run",
    "retrieval": "gpdiff.methods.retrieval:run",
    "reptile": "gpdiff.methods.reptile:run",
    "gpd_zero_shot": "gpdiff.methods.gpd:run_zero_shot",
    "gpd": "gpdiff.methods.gpd:run_finetuned",
    "pooled_linear": "gpdiff.methods.pooled_linear:run",
}
# name -> "module:Class": the settings dataclass of a method that takes settings (run config
# ``methods.<name>``), checked when the run config is read, before anything trains.
SETTINGS: dict[str, str] = {
    "knn_residual": "gpdiff.methods.knn_residual:KnnResidualConfig",
    "reptile": "gpdiff.methods.reptile:ReptileConfig",
    "pooled_linear": "gpdiff.methods.pooled_linear:PooledLinearConfig",
    "gpd": "gpdiff.methods.gpd:GpdConfig",
}

# name -> "module:function": what a method learns from the source cities alone, before it sees a target,
# ``(SourceSide) -> SourceFit``. Its ``run`` takes the fit from ``MethodInputs.fits`` when one is there (a pretrained
# folder keeps them, gpdiff.diffusion.pretrained, so a forecaster, which has no source data, runs these methods)
# and fits it on ``MethodInputs.sources`` otherwise, both through :meth:`MethodInputs.source_fit`.
SOURCE_FITS: dict[str, str] = {
    "pooled_linear": "gpdiff.methods.pooled_linear:fit_sources",
    "knn_residual": "gpdiff.methods.knn_residual:fit_sources",
    "reptile": "gpdiff.methods.reptile:fit_sources",
}
# Methods that read the source zoo's parameters (and the source prompts aligned with it).
NEEDS_ZOO = ("knn_residual", "mean_params", "retrieval", "reptile")
# Methods that need the diffusion model's generated parameters.
NEEDS_GENERATION = ("gpd_zero_shot", "gpd")
# Methods that start from the anchor (the pooled model of gpdiff.zoo.anchor).
NEEDS_ANCHOR = ("transfer", "transfer_zero_shot")
# Methods that read the anchor when the run has one (gpd shrinks its generated start toward it).
READS_ANCHOR = NEEDS_ANCHOR + ("gpd",)
# Methods that train nothing on the target: they read its few-shot days only through the scaler,
# the prompts or per-slot averages, never as training windows. A run of only these needs no
# training window on the target (e.g. with a weekly context, whose lag 3 few-shot days cannot hold).
ZERO_SHOT = ("seasonal_naive", "weekly_naive", "historical_average", "transfer_zero_shot", "gpd_zero_shot",
             "pooled_linear")
# Methods that need nothing trained on the sources by another stage (no anchor, zoo, prompts or
# denoiser): a run of only these trains none of them.
NO_ZOO = ("seasonal_naive", "weekly_naive", "historical_average", "pooled_linear")
RESULT_FORMAT = "gpdiff.method_result"


@dataclass
class SourceSide:
    """What a method may fit on before any target (:data:`SOURCE_FITS`): the base model, the sources'
    data, the zoo with its prompts (``None`` where nothing trained them), the seed and the method's settings."""

    model: BaseModel
    sources: list[CityData]
    zoo: ParamCollection | None
    source_prompts: PromptSet | None  # aligned with the zoo rows
    seed: int
    options: dict[str, Any] = field(default_factory=dict)
    progress: bool = True

    def settings(self, cls: type[T]) -> T:
        """The method's config dataclass ``cls`` with the run config's overrides."""
        return from_mapping(cls, self.options, f"{cls.__name__} setting")


@dataclass
class MethodInputs:
    """Everything a method may use. Nothing here holds the target's validation or test values except
    ``target`` itself, whose training windows are the few-shot days (see CityData)."""

    model: BaseModel
    sources: list[CityData]
    target: CityData
    # the three below are None in a run of NO_ZOO methods only (nothing trained them)
    zoo: ParamCollection | None
    source_prompts: PromptSet | None  # aligned with the zoo rows
    target_prompts: PromptSet | None  # aligned with the target nodes
    finetune: FinetuneConfig
    seed: int
    workdir: Path
    generated: ParamCollection | None = None
    anchor: torch.Tensor | None = None  # [P] the pooled source model (gpdiff.zoo.anchor)
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # this method's settings: run config ``methods.<name>``
    # source fits made before (a pretrained folder's), by method name; a method finds its own here instead of
    # fitting it on ``sources`` (which a forecaster leaves empty)
    fits: dict[str, SourceFit] = field(default_factory=dict)

    def settings(self, cls: type[T]) -> T:
        """The method's config dataclass ``cls`` with the run config's overrides."""
        return from_mapping(cls, self.options, f"{cls.__name__} setting")

    def source_side(self) -> SourceSide:
        """The part of these inputs a source fit may read."""
        return SourceSide(self.model, self.sources, self.zoo, self.source_prompts, self.seed, self.options,
                          self.progress)

    def source_fit(self, name: str) -> SourceFit:
        """Method ``name``'s fit on the sources: the one in :attr:`fits`, else fitted now on :attr:`sources`
        (:func:`fit_on_sources`). Raises :class:`GpdiffError` when neither is possible (no source data)."""
        if name in self.fits:
            return self.fits[name]
        if not self.sources:
            raise GpdiffError(f"method {name!r} fits on the source cities, and these inputs hold neither their data "
                              "nor that fit; use a pretrained folder that holds it (gpdiff pretrain --sources ...).")
        return fit_on_sources(name, self.source_side())


@dataclass
class MethodResult:
    """What a method returns; the pipeline scores ``pred`` and saves the rest in the method's stage.

    The stage file keeps the test forecasts only when they cannot be recomputed bit for bit from what
    else it holds (:func:`gpdiff.experiment.pipeline.recompute_forecasts`; the pipeline checks before it leaves them out), and never the
    parameters a method started from (nothing reads them; files of older versions that hold them load)."""

    pred: np.ndarray  # [N, B, H] test forecasts on the original scale
    params: torch.Tensor | None = None  # [N, P] final parameters, when the method has any
    notes: dict[str, Any] = field(default_factory=dict)  # anything worth a line in the report
    # [N, Bv, H] forecasts of the target's validation windows, original scale, from a method without
    # base-model parameters (the blend's weights and the intervals are fitted on them)
    val_pred: np.ndarray | None = None
    blend: bool = True  # False: the run's blend (blend.naive) leaves this method's forecasts as they are

    def save(self, path: str | Path, forecasts: bool = True) -> Path:
        """Write everything to one safetensors file ``path`` (atomically; forecasts and parameters as
        float32); ``forecasts=False`` leaves ``pred`` out (the caller has checked that
        :func:`gpdiff.experiment.pipeline.recompute_forecasts` gives it back)."""
        tensors = {}
        if forecasts:
            tensors["pred"] = torch.from_numpy(np.ascontiguousarray(self.pred, dtype=np.float32))
        if self.params is not None:
            tensors["params"] = self.params.float().cpu()
        if self.val_pred is not None:
            tensors["val_pred"] = torch.from_numpy(np.ascontiguousarray(self.val_pred, dtype=np.float32))
        return save_tensors(path, tensors, {"format": RESULT_FORMAT, "notes": self.notes, "blend": self.blend,
                                            "forecasts": "stored" if forecasts else "recomputed"})

    @classmethod
    def load(cls, path: str | Path,
             recompute: Callable[[torch.Tensor | None], np.ndarray | None] | None = None) -> MethodResult:
        """The result :meth:`save` wrote to ``path`` (equal to what was saved, forecasts as float32). A
        file saved without its forecasts gets them from ``recompute(params)`` (e.g. :func:`gpdiff.experiment.pipeline.recompute_forecasts`
        bound to the method, model and target). Raises :class:`GpdiffError` when it holds none and
        ``recompute`` is missing or cannot make them."""
        tensors, meta = load_tensors(path)
        params = tensors.get("params")  # an older file's "init" is ignored
        val_pred = tensors["val_pred"].numpy() if "val_pred" in tensors else None
        pred = tensors["pred"].numpy() if "pred" in tensors else recompute(params) if recompute else None
        if pred is None:
            raise GpdiffError(f"{path} holds no test forecasts and they cannot be recomputed here; delete its "
                              "folder and rerun to compute the method again.")
        return cls(pred=pred, params=params, notes=dict(meta.get("notes") or {}), val_pred=val_pred,
                   blend=bool(meta.get("blend", True)))


def run_method(name: str, inputs: MethodInputs) -> MethodResult:
    """The methods stage: method ``name`` run on ``inputs.target`` with what ``inputs`` holds (its
    settings in ``inputs.options``). Raises :class:`GpdiffError` for an unknown method or setting."""
    check_settings(name, inputs.options)
    return get_method(name)(inputs)


def fit_on_sources(name: str, side: SourceSide) -> SourceFit:
    """What method ``name`` (one of :data:`SOURCE_FITS`) learns from ``side``'s sources alone, as a
    :class:`SourceFit` (``meta["method"]`` its name). Raises :class:`GpdiffError` for another method or a
    setting its config class refuses."""
    if name not in SOURCE_FITS:
        raise unknown_name("method with a source fit", name, SOURCE_FITS)
    check_settings(name, side.options)
    fit: SourceFit = _resolve(SOURCE_FITS[name])(side)
    fit.meta["method"] = name
    return fit


def check_settings(name: str, options: dict[str, Any]) -> None:
    """:class:`GpdiffError` for an unknown method or a setting its config class refuses (an unknown
    field, a wrong type or value), naming ``methods.<name>.<field>``."""
    get_method(name)
    if name in SETTINGS:
        from_mapping(_resolve(SETTINGS[name]), options, "run config", _path=f"methods.{name}.")
    elif options:
        raise GpdiffError(f"method {name!r} takes no settings, got methods.{name}.{sorted(options)[0]}; remove it.")


def get_method(name: str) -> Callable[[MethodInputs], MethodResult]:
    """The method registered as ``name``; :class:`GpdiffError` naming the known ones otherwise."""
    if name not in METHODS:
        raise unknown_name("method", name, METHODS)
    return _resolve(METHODS[name])


def _resolve(ref: str) -> Any:
    """The object a ``"module:attribute"`` registry entry names (the module imported on first use)."""
    module, attribute = ref.split(":")
    return getattr(importlib.import_module(module), attribute)
