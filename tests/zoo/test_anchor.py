"""The anchor: it learns and is deterministic, stays its start when it never beats it, and its folder is reused
or refused by the settings it was trained with."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from gpdiff.data.splits import SourceSplit
from gpdiff.models.config import BaseModelConfig
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.anchor import Anchor, AnchorConfig, fit_anchor, train_anchor
from gpdiff.zoo.train import source_val_loss
from tests.zoo.conftest import WINDOW

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = AnchorConfig(max_steps=30, eval_every=5, nodes_per_step=8, batch_size=8, val_nodes=16, patience=10)


# ------------------------------------------------------------------ anchor
def test_anchor_learns_and_is_deterministic(setup) -> None:
    cfg, model, data = setup
    a, rec = train_anchor(model, data, SMALL, seed=0, progress=False)
    b, _ = train_anchor(model, data, SMALL, seed=0, progress=False)
    assert a.shape == (model.n_params,) and torch.equal(a, b)
    assert rec["history"][0][1] >= rec["val_loss"] and rec["cities"] == {"alpha": 6, "beta": 5}
    init = model.init(1, seed=0, shared=True)
    start = source_val_loss(model, torch.cat([v.reshape(1, -1) for v in init.values()], 1).expand(11, -1), data,
                            [(d.city.name, n) for d in data for n in d.city.node_ids])
    trained = source_val_loss(model, a.expand(11, -1), data, [(d.city.name, n) for d in data for n in d.city.node_ids])
    assert trained.mean() < start.mean()


def test_an_anchor_that_never_beats_its_start_is_its_start(setup) -> None:
    cfg, model, data = setup
    frozen = replace(SMALL, lr=1e-30, max_steps=10, patience=1)  # no step changes any forecast
    params, rec = train_anchor(model, data, frozen, seed=0, progress=False)
    start = torch.cat([v.reshape(1, -1) for v in model.init(1, seed=0, shared=True).values()], 1)[0]
    assert rec["improved"] is False and rec["val_loss"] == rec["initial_val_loss"]
    assert torch.equal(params, start)
    _, learned = train_anchor(model, data, SMALL, seed=0, progress=False)
    assert learned["improved"] is True and learned["val_loss"] < learned["initial_val_loss"]


def test_fit_anchor_reuses_its_folder_and_refuses_other_settings(cities, tmp_path: Path) -> None:
    a = fit_anchor(cities, SMALL, window=WINDOW, workdir=tmp_path, progress=False).params
    stamp = (tmp_path / "anchor.safetensors").stat().st_mtime_ns
    again = fit_anchor(cities, SMALL, model=BaseModelConfig(), window=WINDOW, split=SourceSplit(), workdir=tmp_path,
                       progress=False).params  # the defaults spelled out: the same anchor
    assert torch.equal(a, again) and (tmp_path / "anchor.safetensors").stat().st_mtime_ns == stamp
    assert torch.equal(Anchor.load(tmp_path).params, a)
    with pytest.raises(GpdiffError, match="other settings or cities"):
        fit_anchor(cities, replace(SMALL, lr=0.01), window=WINDOW, workdir=tmp_path, progress=False).params
    with pytest.raises(GpdiffError, match="other settings or cities"):  # another source split is another anchor
        fit_anchor(cities, SMALL, window=WINDOW, split=SourceSplit(0.6, 0.2, 0.2), workdir=tmp_path, progress=False)
