"""Adapting parameters to the target city: forecasting with given parameters and fine-tuning them.

Fine-tuning is the batched per-node trainer (:class:`gpdiff.zoo.nodetrain.NodeTrainer`, the one the zoo
uses) run on the target's few-shot days, started from the given parameters: per-node Adam with early
stopping on the target's validation slice, each node keeping its best parameters. Every method that
fine-tunes (GPD and the baselines) goes through :func:`finetune` with the same
:class:`FinetuneConfig`, so budgets are equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from gpdiff.data.windows import CityData
from gpdiff.models.base import BaseModel
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.nodetrain import NodeTrainConfig, NodeTrainer, forecast_windows
from gpdiff.zoo.params import ParamCollection, flatten, unflatten


@dataclass
class FinetuneConfig(NodeTrainConfig):
    """The fine-tuning budget every method gets on the target's few-shot days (the
    :class:`~gpdiff.zoo.nodetrain.NodeTrainConfig` fields, with smaller defaults than the zoo's)."""

    lr: float = 0.003
    max_epochs: int = 40
    patience: int = 5
    batch_size: int = 32
    steps_per_epoch: int = 10
    val_windows: int = 512


def forecast(model: BaseModel, params: torch.Tensor, data: CityData, segment: str = "test",
             in_channels: int | None = None) -> np.ndarray:
    """Original-scale forecasts ``[N, B, H]`` of every window of ``segment`` for all nodes of ``data``,
    with flat parameters ``params [N, P]``."""
    if params.shape[0] != data.n_nodes:
        raise GpdiffError(f"{params.shape[0]} parameter rows for {data.n_nodes} nodes of {data.city.name}.")
    p = unflatten(params.to(data.device), model.spec())
    origins = data.origins(segment)
    return forecast_windows(model, p, data, origins, in_channels or model.config.in_channels)


def finetune(model: BaseModel, init: torch.Tensor, data: CityData, config: FinetuneConfig, out_dir: Path,
             seed: int = 0, progress: bool = True, desc: str = "finetune") -> torch.Tensor:
    """Fine-tune flat parameters ``init [N, P]`` on ``data``'s training windows; returns the best
    parameters by validation loss ``[N, P]`` (checkpointed in ``out_dir``, so an interrupted run resumes)."""
    if init.shape != (data.n_nodes, model.n_params):
        raise GpdiffError(f"initial parameters {tuple(init.shape)} for {data.n_nodes} nodes of {data.city.name} "
                          f"and {model.n_params} parameters of {model.name!r}.")
    result = NodeTrainer(model, [data], config, unflatten(init.to(data.device), model.spec()), out_dir, seed=seed,
                         progress=progress, desc=desc).run()
    assert result is not None  # one process: every node's result
    return result.flat(model.spec())


def target_start(model: BaseModel, params: torch.Tensor) -> torch.Tensor:
    """The parameters ``[N, P]`` target nodes start from, given ``params [N, P]`` learned on the sources (the
    anchor, zoo members, generated) or the shared init: the lag-aware model's network gates closed
    (:meth:`~gpdiff.models.base.BaseModel.close_correction`), so that a node forecasts with the lag head's
    combination until fine-tuning on its own days opens the gates of the lag patterns they show. Every
    method calls this once on its start; unchanged for a model without the lag head."""
    if not model.has_head:
        return params
    return flatten(model.close_correction(unflatten(params, model.spec())), model.spec())


def expand(flat: torch.Tensor, n: int) -> torch.Tensor:
    """One parameter vector ``[P]`` or ``[1, P]`` repeated for ``n`` nodes."""
    return flat.reshape(1, -1).expand(n, -1).clone()


def mean_parameters(zoo: ParamCollection) -> torch.Tensor:
    return zoo.params.mean(0)


def shared_init(model: BaseModel, seed: int) -> torch.Tensor:
    """The zoo's shared initial parameter vector ``[P]``."""
    return flatten(model.init(1, seed=seed, shared=True), model.spec())[0]
