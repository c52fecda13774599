"""knn_residual: the held-out rows it selects on, its choice of k and shrinkage, and its starting parameters."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpdiff.data.splits import SourceSplit
from gpdiff.data.windows import WindowConfig
from gpdiff.methods.knn_residual import KnnResidualConfig, holdout_rows, initial, select
from gpdiff.models.config import BaseModelConfig
from gpdiff.zoo.anchor import AnchorConfig, fit_anchor
from gpdiff.zoo.sourcepool import prepare_cities
from gpdiff.zoo.train import ZooConfig
from gpdiff.zoo.train import train_zoo as _train_zoo

pytestmark = pytest.mark.usefixtures("one_thread")

WINDOW = WindowConfig(n_neighbors=3)
ZOO_FAST = {"steps_per_epoch": 3, "batch_size": 16, "val_windows": 16, "node_chunk": 4, "max_epochs": 3}
SMALL = AnchorConfig(max_steps=30, eval_every=5, nodes_per_step=8, batch_size=8, val_nodes=16, patience=10)


@pytest.fixture(scope="module")
def cities(two_source_cities):
    return two_source_cities


# ------------------------------------------------------------------ knn_residual
def test_holdout_rows_cover_every_city() -> None:
    cities = ["a"] * 10 + ["b"] * 3 + ["c"]
    kept, held = holdout_rows(cities, 0.2, seed=0)
    assert sorted(kept.tolist() + held.tolist()) == list(range(14))
    assert [cities[i] for i in held.tolist()].count("a") == 2 and [cities[i] for i in held.tolist()].count("b") == 1
    assert "c" in [cities[i] for i in held.tolist()]  # a one-node city is held out (nothing to keep)
    assert torch.equal(holdout_rows(cities, 0.2, seed=0)[1], held)


def test_knn_residual_selects_on_sources_and_zero_shrinkage_is_the_anchor(cities, tmp_path: Path) -> None:
    from gpdiff.prompts import PromptSet

    cfg = ZooConfig(**ZOO_FAST)
    anchor = fit_anchor(cities, SMALL, window=WINDOW, workdir=tmp_path / "a", progress=False).params
    zoo = _train_zoo(cities, cfg, window=WINDOW, workdir=tmp_path / "z", device="cpu", progress=False, anchor=anchor)
    g = torch.Generator().manual_seed(0)
    prompts = PromptSet(torch.randn(len(zoo), 4, generator=g), torch.randn(len(zoo), 3, generator=g),
                        list(zoo.node_ids), list(zoo.cities), {})
    model = BaseModelConfig().build(WINDOW)
    data = prepare_cities(cities, WINDOW, SourceSplit(), model)
    k, s, scores = select(model, zoo, prompts, data, KnnResidualConfig(ks=[1, 2], shrinkages=[0.0, 1.0]), seed=0)
    assert len(scores) == 3  # s = 0 once (the anchor, whatever k), s = 1 for k = 1 and 2
    assert min(r["loss"] for r in scores) == next(r["loss"] for r in scores if (r["k"], r["shrinkage"]) == (k, s))
    assert torch.equal(initial(zoo, prompts, prompts, 2, 0.0), anchor.expand(len(zoo), -1))
    own = initial(zoo, prompts, prompts, 1, 1.0)  # each node's nearest prompt is its own
    torch.testing.assert_close(own, zoo.params)
