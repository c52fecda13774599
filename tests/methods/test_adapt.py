"""adapt.target_start: every learned method starts a target node with the lag-aware model's network gates
closed. The start it hands to fine-tuning (or forecasts with, zero-shot) is the source parameters with the
gate column of ``lags.head`` at 0 and every other entry as the sources gave it."""

from __future__ import annotations

import importlib

import pytest
import torch

from gpdiff.data import CityData, target_split
from gpdiff.data.synthetic import synthetic_city
from gpdiff.data.windows import WindowConfig
from gpdiff.methods import MethodInputs, get_method
from gpdiff.methods.adapt import FinetuneConfig, target_start
from gpdiff.models.base import HEAD
from gpdiff.models.config import BaseModelConfig
from gpdiff.prompts import PromptSet
from gpdiff.zoo.params import ParamCollection, flatten, unflatten
from gpdiff.zoo.sourcefit import SourceFit

WINDOW = WindowConfig(history=12, horizon=6, n_neighbors=3, context="lags")


@pytest.fixture(scope="module")
def parts():
    model = BaseModelConfig().build(WINDOW)
    g = torch.Generator().manual_seed(2)
    rows = 1.0 + torch.rand(7, model.n_params, generator=g)  # every entry, gates included, far from 0
    zoo = ParamCollection(rows, [str(i) for i in range(7)], ["src"] * 7, model.name, model.config.to_dict(),
                          model.spec(), config={"seed": 3})
    prompts = PromptSet(torch.randn(7, 4, generator=g), torch.randn(7, 3, generator=g), zoo.node_ids, zoo.cities, {})
    city = synthetic_city("target", n_nodes=4, days=9, seed=5)
    target = CityData(city, target_split(city.n_steps, 24, days=3), n_neighbors=3, context="lags")
    tprompts = PromptSet(prompts.spatial[:4] + 0.01, prompts.temporal[:4] + 0.01, list(city.node_ids),
                         ["target"] * 4, {})
    return model, zoo, prompts, tprompts, target


def _closed(model, params: torch.Tensor) -> torch.Tensor:
    p = unflatten(params, model.spec())
    return p[HEAD][:, : model.n_patterns, model.gate_column]


@pytest.mark.parametrize("method", ["transfer", "transfer_zero_shot", "gpd", "gpd_zero_shot", "mean_params",
                                    "target_only", "retrieval", "knn_residual", "reptile"])
def test_every_learned_method_starts_with_the_gates_closed(method, parts, tmp_path, monkeypatch):
    model, zoo, prompts, tprompts, target = parts
    seen: list[torch.Tensor] = []

    def finetune(model, init, data, config, out_dir, seed=0, progress=True, desc=""):  # type: ignore[no-untyped-def]
        seen.append(init.clone())
        return init.clone()

    module_name = {"transfer_zero_shot": "transfer", "gpd_zero_shot": "gpd"}.get(method, method)
    monkeypatch.setattr(importlib.import_module(f"gpdiff.methods.{module_name}"), "finetune", finetune)
    generated = ParamCollection(zoo.params[:4] + 0.5, list(target.city.node_ids), ["target"] * 4, model.name,
                                model.config.to_dict(), model.spec())
    fits = {"knn_residual": SourceFit({}, {"k": 2, "shrinkage": 1.0, "scores": [{"shrinkage": 0, "loss": 1.0}]}),
            "reptile": SourceFit({"init": zoo.params[5].clone()}, {})}
    ctx = MethodInputs(model=model, sources=[], target=target, zoo=zoo, source_prompts=prompts,
                       target_prompts=tprompts, finetune=FinetuneConfig(), seed=0, workdir=tmp_path,
                       generated=generated, anchor=zoo.params[6].clone(), progress=False, fits=fits)
    result = get_method(method)(ctx)
    start = seen[0] if seen else result.params
    assert start is not None and start.shape == (4, model.n_params)
    assert torch.equal(_closed(model, start), torch.zeros(4, 4, 6))
    assert torch.equal(target_start(model, start), start)  # closing twice changes nothing


def test_target_start_closes_the_gates_and_moves_the_shared_row_into_the_patterns(parts):
    """A target start zeroes every gate and the head's shared row, which it adds to every pattern's own
    row: the weights each pattern reads are unchanged, and nothing but the head changes."""
    model, zoo = parts[0], parts[1]
    start = target_start(model, zoo.params.clone())
    before, after = unflatten(zoo.params, model.spec()), unflatten(start, model.spec())
    assert all(torch.equal(before[k], after[k]) for k in before if k != HEAD)
    assert torch.equal(after[HEAD][:, :, model.gate_column], torch.zeros(7, 5, 6))
    assert torch.equal(after[HEAD][:, -1], torch.zeros(7, 4, 6))
    assert bool((before[HEAD][:, -1, : model.gate_column] != 0).any())  # the zoo's shared rows were not 0
    g = model.gate_column
    assert torch.equal(model.pattern_weights(after[HEAD])[:, :, :g], model.pattern_weights(before[HEAD])[:, :, :g])
    plain = BaseModelConfig().build(WindowConfig())
    x = torch.randn(2, plain.n_params)
    assert target_start(plain, x) is x  # a model without the lag head: unchanged
    assert torch.equal(flatten(unflatten(start, model.spec()), model.spec()), start)
