"""Every method of the few-shot comparison, behind one interface.

A method is a function ``(ctx: Context) -> MethodOutput`` in its own module, registered below by
name. All methods see the same target data (windows, splits, scaler) and are scored by the same
code; methods that fine-tune use :func:`gpdiff.adapt.finetune` with the same budget.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpdiff.config import from_mapping
from gpdiff.data.windows import CityData
from gpdiff.errors import unknown_name
from gpdiff.models.base import BaseModel
from gpdiff.params import ParamCollection

# name -> "module:function" (loaded on use). One line per method.
METHODS: dict[str, str] = {
    "seasonal_naive": "gpdiff.baselines.naive:run_seasonal_naive",
    "historical_average": "gpdiff.baselines.naive:run_historical_average",
    "target_only": "gpdiff.baselines.target_only:run",
    "transfer": "gpdiff.baselines.transfer:run",
    "mean_params": "gpdiff.baselines.mean_params:run",
    "retrieval": "gpdiff.baselines.retrieval:run",
    "reptile": "gpdiff.baselines.reptile:run",
    "gpd_zero_shot": "gpdiff.baselines.gpd:run_zero_shot",
    "gpd": "gpdiff.baselines.gpd:run_finetuned",
}
# Methods that need the diffusion model's generated parameters.
NEEDS_GENERATION = ("gpd_zero_shot", "gpd")


@dataclass
class Context:
    """Everything a method may use. Nothing here holds the target's validation or test values except
    ``target`` itself, whose training windows are the few-shot days (see CityData)."""

    model: BaseModel
    sources: list[CityData]
    target: CityData
    zoo: ParamCollection
    source_prompts: Any  # PromptSet aligned with the zoo rows
    target_prompts: Any  # PromptSet aligned with the target nodes
    finetune: Any  # adapt.FinetuneConfig
    seed: int
    workdir: Path
    generated: ParamCollection | None = None
    progress: bool = True
    options: dict[str, Any] = field(default_factory=dict)  # this method's settings from the run config

    def settings(self, cls: type) -> Any:
        """The method's config dataclass ``cls`` with the run config's overrides."""
        return from_mapping(cls, self.options, f"{cls.__name__} setting")


@dataclass
class MethodOutput:
    pred: np.ndarray  # [N, B, H] test forecasts on the original scale
    params: torch.Tensor | None = None  # [N, P] final parameters, when the method has any
    init: torch.Tensor | None = None  # [N, P] parameters before fine-tuning
    notes: dict[str, Any] = field(default_factory=dict)


def get_method(name: str) -> Callable[[Context], MethodOutput]:
    if name not in METHODS:
        raise unknown_name("method", name, METHODS)
    module, func = METHODS[name].split(":")
    return getattr(importlib.import_module(module), func)
