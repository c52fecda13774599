"""Base models, registered by name. A new base model is one module plus one line in ``MODELS``."""

from __future__ import annotations

from gpdiff.utils.errors import unknown_name
from gpdiff.models.base import BaseModel, ModelConfig, NodeModule, ParamSpec
from gpdiff.models.gwn import GWN
from gpdiff.models.stgcn import STGCN
from gpdiff.models.stid import STID

MODELS: dict[str, type[BaseModel]] = {"stgcn": STGCN, "gwn": GWN, "stid": STID}


def get_model(name: str, config: ModelConfig | None = None) -> BaseModel:
    """The base model ``name`` built for ``config`` (default :class:`ModelConfig`, ``small`` preset)."""
    if name not in MODELS:
        raise unknown_name("base model", name, MODELS)
    return MODELS[name](config or ModelConfig())


def model_from_dict(name: str, config: dict) -> BaseModel:  # type: ignore[type-arg]
    """Rebuild a base model from a collection's ``model`` and ``model_config`` metadata."""
    return get_model(name, ModelConfig(**config))


__all__ = ["MODELS", "BaseModel", "ModelConfig", "NodeModule", "ParamSpec", "get_model", "model_from_dict"]
