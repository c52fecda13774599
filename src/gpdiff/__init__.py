"""gpdiff: spatio-temporal few-shot learning by diffusion-generated model parameters (GPD).

The public API (imported on first use, so ``import gpdiff`` stays light)::

    from gpdiff import City, GPD, Forecaster, RunConfig, run, bench, pretrain

- :class:`City`: a city's data (``City.from_pandas``, ``load_city``).
- :class:`GPD`: a pretrained GPD, ``GPD.from_pretrained(path)`` / ``save_pretrained(path)``.
- :class:`Forecaster`: ``Forecaster.fit(city)``, ``.predict()``, ``.update(data)``, ``.save`` / ``.load``.
- :class:`RunConfig`, :func:`run`: the few-shot experiment (``gpdiff run``); :func:`bench`: a suite
  (``gpdiff bench``); :func:`pretrain`: a pretrained GPD from source cities (``gpdiff pretrain --sources``).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute"
_API = {
    "City": "gpdiff.data.city:City",
    "load_city": "gpdiff.data.catalog:load_city",
    "GPD": "gpdiff.diffusion.pretrained:GPD",
    "Forecaster": "gpdiff.forecaster:Forecaster",
    "ForecasterConfig": "gpdiff.forecaster:ForecasterConfig",
    "RunConfig": "gpdiff.experiment.runconfig:RunConfig",
    "run": "gpdiff.experiment.pipeline:run_pipeline",
    "pretrain": "gpdiff.experiment.pipeline:pretrain_sources",
    "bench": "gpdiff.experiment.bench:bench",
}
__all__ = [
    "GPD",
    "City",
    "Forecaster",
    "ForecasterConfig",
    "RunConfig",
    "__version__",
    "bench",
    "load_city",
    "pretrain",
    "run",
]


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'gpdiff' has no attribute {name!r}")
    module, attr = _API[name].split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
