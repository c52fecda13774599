"""gpdiff: spatio-temporal few-shot learning by diffusion-generated model parameters (GPD).

The public API (imported on first use, so ``import gpdiff`` stays light)::

    from gpdiff import City, GPD, Forecaster, RunConfig, run, bench, pretrain

- :class:`City`: a city's data (``City.from_pandas``, ``load_city``).
- :class:`GPD`: a pretrained GPD, ``GPD.from_pretrained(path)`` / ``save_pretrained(path)``.
- :class:`Forecaster`: ``Forecaster.fit(city)``, ``.predict()``, ``.update(data)``, ``.save`` / ``.load``.
- :class:`RunConfig`, :func:`run`: the few-shot experiment (``gpdiff run``); :func:`bench`: a suite
  (``gpdiff bench``); :func:`pretrain`: a pretrained GPD from source cities (``gpdiff pretrain --sources``).

One function per stage, in pipeline order; each takes its inputs, then its own config (the run
config's section of the same name; ``None``: the defaults), then the keyword-only ``seed``, ``device``,
``progress`` and ``workdir`` (a folder to save in and resume from) where they apply, and returns an
object with ``save`` / ``load``. :func:`run` chains them and caches each result as a stage::

    fit_anchor(sources, AnchorConfig, model=, window=, split=)        -> Anchor           (anchor)
    train_zoo(sources, ZooConfig, model=, window=, split=, anchor=)   -> ParamCollection  (zoo)
    fit_prompts(sources, PromptsConfig, segments=)                    -> PromptEncoders   (prompts)
    train_denoiser(zoo, prompts, DiffusionConfig)                     -> DiffusionModel   (diffusion)
    generate(denoiser, prompts, GenerateConfig)                       -> ParamCollection  (generate)
    run_method(name, MethodInputs)                                         -> MethodResult     (methods/<name>)
    fit_blend(val_pred, target, BlendConfig)                          -> BlendFit         (blend/<name>)

``model=`` is the run config's ``model:`` section (:class:`BaseModelConfig`, the base model),
``split=`` its ``source_split:`` (:class:`SourceSplit`), ``window=`` its ``window:``.
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
    # the stages, in pipeline order, and their configs
    "WindowConfig": "gpdiff.data.windows:WindowConfig",
    "SourceSplit": "gpdiff.data.splits:SourceSplit",
    "BaseModelConfig": "gpdiff.models.config:BaseModelConfig",
    "fit_anchor": "gpdiff.zoo.anchor:fit_anchor",
    "Anchor": "gpdiff.zoo.anchor:Anchor",
    "AnchorConfig": "gpdiff.zoo.anchor:AnchorConfig",
    "train_zoo": "gpdiff.zoo.train:train_zoo",
    "ZooConfig": "gpdiff.zoo.train:ZooConfig",
    "ParamCollection": "gpdiff.zoo.params:ParamCollection",
    "fit_prompts": "gpdiff.prompts:fit_prompts",
    "PromptsConfig": "gpdiff.prompts:PromptsConfig",
    "PromptEncoders": "gpdiff.prompts:PromptEncoders",
    "train_denoiser": "gpdiff.diffusion.train:train_denoiser",
    "DiffusionConfig": "gpdiff.diffusion.train:DiffusionConfig",
    "DiffusionModel": "gpdiff.diffusion.train:DiffusionModel",
    "generate": "gpdiff.diffusion.sample:generate",
    "GenerateConfig": "gpdiff.diffusion.sample:GenerateConfig",
    "run_method": "gpdiff.methods:run_method",
    "MethodInputs": "gpdiff.methods:MethodInputs",
    "MethodResult": "gpdiff.methods:MethodResult",
    "fit_blend": "gpdiff.evaluation.blend:fit_blend",
    "BlendConfig": "gpdiff.evaluation.blend:BlendConfig",
    "BlendFit": "gpdiff.evaluation.blend:BlendFit",
}
__all__ = sorted([*_API, "__version__"])


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'gpdiff' has no attribute {name!r}")
    module, attr = _API[name].split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
