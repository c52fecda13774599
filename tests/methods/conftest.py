"""A tiny method context whose right starting parameters are known: two source cities (alpha 6 nodes, beta 5),
a zoo of 11 rows that differ from each other everywhere, their prompts, and a 4-node target city. Every test
replaces the method's fine-tuning with :func:`recording_finetune`, so what it checks is exactly the starting
point the method hands to fine-tuning (and reports as ``init``), not what training does to it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from gpdiff.data import CityData, target_split
from gpdiff.data.splits import SourceSplit
from gpdiff.data.synthetic import synthetic_city
from gpdiff.data.windows import WindowConfig
from gpdiff.methods import MethodInputs
from gpdiff.methods.adapt import FinetuneConfig
from gpdiff.models.config import BaseModelConfig
from gpdiff.prompts import PromptSet
from gpdiff.zoo.params import ParamCollection
from gpdiff.zoo.sourcepool import prepare_cities

WINDOW = WindowConfig(history=12, horizon=6, n_neighbors=3)
ZOO_SEED = 3  # the zoo's seed, on purpose not the run's (MethodInputs.seed = 0)


@pytest.fixture(scope="package")
def method_parts(two_source_cities):
    """The model, the prepared source cities, the zoo (row i: a random vector, all rows distinct) and its
    prompts (spatial 4-d, temporal 3-d), and the target's CityData."""
    model = BaseModelConfig().build(WINDOW)
    sources = prepare_cities(two_source_cities, WINDOW, SourceSplit(), model)
    keys = [(d.city.name, n) for d in sources for n in d.city.node_ids]
    g = torch.Generator().manual_seed(11)
    zoo = ParamCollection(torch.randn(len(keys), model.n_params, generator=g), [n for _, n in keys],
                          [c for c, _ in keys], model.name, model.config.to_dict(), model.spec(),
                          config={"seed": ZOO_SEED})
    prompts = PromptSet(torch.randn(len(keys), 4, generator=g), torch.randn(len(keys), 3, generator=g),
                        zoo.node_ids, zoo.cities, {})
    city = synthetic_city("target", n_nodes=4, days=8, seed=5)
    target = CityData(city, target_split(city.n_steps, 24, days=3), history=WINDOW.history,
                      horizon=WINDOW.horizon, n_neighbors=WINDOW.n_neighbors)
    return model, sources, zoo, prompts, target


def target_prompts_near(prompts: PromptSet, rows: list[int], target: CityData, scale: float = 0.01) -> PromptSet:
    """Target prompts where target node j's prompt is source row ``rows[j]``'s plus a little noise."""
    g = torch.Generator().manual_seed(7)
    idx = torch.tensor(rows)
    return PromptSet(prompts.spatial[idx] + scale * torch.randn(len(rows), prompts.spatial.shape[1], generator=g),
                     prompts.temporal[idx] + scale * torch.randn(len(rows), prompts.temporal.shape[1], generator=g),
                     list(target.city.node_ids), [target.city.name] * len(rows), {})


@pytest.fixture
def make_context(method_parts, tmp_path: Path) -> Callable[..., MethodInputs]:
    model, sources, zoo, prompts, target = method_parts

    def make(**kw) -> MethodInputs:
        fields = dict(model=model, sources=sources, target=target, zoo=zoo, source_prompts=prompts,
                      target_prompts=None, finetune=FinetuneConfig(), seed=0, workdir=tmp_path, progress=False)
        return MethodInputs(**{**fields, **kw})

    return make


def recording_finetune(monkeypatch: pytest.MonkeyPatch, module) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """Replace ``module.finetune`` by one that records the starting parameters it is given and returns
    them unchanged; returns the list it records into."""
    seen: list[torch.Tensor] = []

    def finetune(model, init, data, config, out_dir, seed=0, progress=True, desc="finetune"):  # type: ignore[no-untyped-def]
        assert init.shape == (data.n_nodes, model.n_params)
        seen.append(init.clone())
        return init.clone()

    monkeypatch.setattr(module, "finetune", finetune)
    return seen
