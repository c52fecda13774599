"""The run config's ``model:`` section: which base model every stage builds (anchor, zoo, methods,
forecaster) and at what size. The window's shape (``window:``) completes it into the model's
constructor config, :class:`~gpdiff.models.base.ModelConfig`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from gpdiff.models import MODELS, BaseModel, ModelConfig, get_model
from gpdiff.models.base import RESIDUALS
from gpdiff.utils.errors import GpdiffError, unknown_name

if TYPE_CHECKING:
    from gpdiff.data.windows import WindowConfig


@dataclass
class BaseModelConfig:
    """The base model: ``name`` (a key of :data:`gpdiff.models.MODELS`), its size ``preset``,
    ``in_channels`` (input channels, channel 0 the target; 1 lets cities with different channels mix)
    and ``residual`` (``seasonal``: forecast the correction to the window's seasonal context, which
    needs ``window.context`` daily or weekly). Raises :class:`GpdiffError` for an unknown name, preset
    or residual, or fewer than one channel."""

    name: str = "stid"  # the best and fastest base model on the loco scoreboard (BENCHMARKS.md)
    preset: str = "small"
    in_channels: int = 1
    residual: str = "none"

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise unknown_name("base model", self.name, MODELS)
        if self.preset not in MODELS[self.name].presets:
            raise unknown_name(f"preset for model {self.name!r}", self.preset, MODELS[self.name].presets)
        if self.in_channels < 1:
            raise GpdiffError(f"model.in_channels must be at least 1, got {self.in_channels}.")
        if self.residual not in RESIDUALS:
            raise unknown_name("residual", self.residual, RESIDUALS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def model_config(self, window: WindowConfig) -> ModelConfig:
        """The base model's constructor config for windows of shape ``window``."""
        return ModelConfig(history=window.history, horizon=window.horizon, in_channels=self.in_channels,
                           ego_size=window.n_neighbors + 1, preset=self.preset, context=window.context,
                           residual=self.residual)

    def build(self, window: WindowConfig) -> BaseModel:
        """The base model for windows of shape ``window`` (its parameters are per node, made by the caller)."""
        return get_model(self.name, self.model_config(window))

    # a pretrained GPD folder (gpdiff.diffusion.pretrained, format 1) names the base model ``model``
    def architecture(self) -> dict[str, Any]:
        """This config as a pretrained folder's ``architecture`` record (``model``, ``preset``, ...)."""
        return {"model": self.name, "preset": self.preset, "in_channels": self.in_channels, "residual": self.residual}

    @classmethod
    def from_architecture(cls, record: dict[str, Any]) -> BaseModelConfig:
        """The config an :meth:`architecture` record (or a zoo's config record, either layout) describes."""
        if isinstance(record.get("model"), dict):  # a zoo record of this layout: the section itself
            return cls(**record["model"])
        keys = {"model": "name", "preset": "preset", "in_channels": "in_channels", "residual": "residual"}
        return cls(**{new: record[old] for old, new in keys.items() if old in record})
