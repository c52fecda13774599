"""Base models, registered by name. A new base model is one module plus one line in ``MODELS``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpdiff.models.base import BaseModel, ModelConfig, NodeModule, ParamSpec
from gpdiff.models.gwn import GWN
from gpdiff.models.stgcn import STGCN
from gpdiff.models.stid import STID
from gpdiff.utils.errors import GpdiffError, unknown_name

if TYPE_CHECKING:
    from gpdiff.data.city import City

MODELS: dict[str, type[BaseModel]] = {"stgcn": STGCN, "gwn": GWN, "stid": STID}


def get_model(name: str, config: ModelConfig | None = None) -> BaseModel:
    """The base model ``name`` built for ``config`` (default :class:`ModelConfig`, ``small`` preset)."""
    if name not in MODELS:
        raise unknown_name("base model", name, MODELS)
    return MODELS[name](config or ModelConfig())


def model_from_dict(name: str, config: dict) -> BaseModel:  # type: ignore[type-arg]
    """Rebuild a base model from a collection's ``model`` and ``model_config`` metadata."""
    return get_model(name, ModelConfig(**config))



def require_graph(city: City, model: str) -> None:
    """:class:`GpdiffError` when base model ``model`` needs a graph and ``city`` has no edges."""
    if MODELS[model].needs_graph and city.n_edges == 0:
        without = sorted(n for n, m in MODELS.items() if not m.needs_graph)
        raise GpdiffError(
            f"city {city.name!r} has no graph edges but base model {model!r} needs a graph; "
            f"add an adjacency (adjacency.csv, edges.csv, or nodes.csv with coordinates for a kNN graph) "
            f"or use a model that works without one: {', '.join(without)} (--model)."
        )

__all__ = ["MODELS", "BaseModel", "ModelConfig", "NodeModule", "ParamSpec", "get_model", "model_from_dict", "require_graph"]
