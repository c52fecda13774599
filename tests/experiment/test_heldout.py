"""gpdiff.experiment.heldout: the pretrained model card's scores for source nodes held out of a check denoiser."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpdiff.data.splits import SourceSplit
from gpdiff.data.synthetic import synthetic_city
from gpdiff.data.windows import WindowConfig
from gpdiff.diffusion.pretrained import heldout_lines
from gpdiff.diffusion.sample import GenerateConfig
from gpdiff.evaluation.metrics import masked_metrics
from gpdiff.evaluation.naive import weekly_naive
from gpdiff.experiment import heldout
from gpdiff.experiment.heldout import COLUMNS, HeldoutScores, check_fraction, heldout_scores
from gpdiff.methods.knn_residual import holdout_rows
from gpdiff.models.config import BaseModelConfig
from gpdiff.prompts import PromptSet
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.params import ParamCollection, flatten
from gpdiff.zoo.sourcepool import prepare_cities
from tests.conftest import tiny_config

WINDOW = WindowConfig(history=12, horizon=3, n_neighbors=3)


@pytest.fixture(scope="module")
def sources():
    """Two tiny synthetic sources (8 and 5 nodes, 12 days), a base model, a zoo of random per-node
    parameters and random prompts aligned with its rows."""
    cities = [synthetic_city("beta", n_nodes=8, days=12, seed=2), synthetic_city("gamma", n_nodes=5, days=12, seed=3)]
    model = BaseModelConfig().build(WINDOW)
    datas = prepare_cities(cities, WINDOW, SourceSplit(), model)
    ids = [n for c in cities for n in c.node_ids]
    names = [c.name for c in cities for _ in c.node_ids]
    params = flatten(model.init(len(ids), seed=1, shared=False), model.spec())
    zoo = ParamCollection(params, ids, names, model.name, {}, model.spec())
    g = torch.Generator().manual_seed(0)
    prompts = PromptSet(torch.randn(len(ids), 4, generator=g), torch.randn(len(ids), 3, generator=g), ids, names)
    return datas, model, zoo, prompts


def _mae(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    return float(masked_metrics(pred, truth, mask).mae_avg)


def test_columns_score_the_held_out_rows_own_nodes(sources, monkeypatch) -> None:
    """With a 'denoiser' that returns each held-out row's own zoo parameters, the generated column equals the
    zoo column in every city: the generated rows are scored on the nodes they were generated for. The weekly
    naive column is the masked MAE of weekly naive on exactly those nodes' test windows."""
    datas, model, zoo, prompts = sources
    monkeypatch.setattr(heldout, "train_denoiser", lambda *a, **k: "denoiser")

    def own_rows(denoiser, held_prompts, generation, seed):
        return type("P", (), {"params": zoo.params[zoo.index_of(held_prompts.keys())]})()

    monkeypatch.setattr(heldout, "generate", own_rows)
    scores = heldout_scores(zoo, prompts, datas, model, tiny_config(), GenerateConfig(), None, fraction=0.4, seed=0)
    assert list(scores.mae) == ["beta", "gamma"]
    for row in scores.mae.values():
        assert list(row) == list(COLUMNS) and row["generated"] == row["zoo (trained on the node)"]
        assert all(np.isfinite(v) and v > 0 for v in row.values())
    _, held = holdout_rows(zoo.cities, 0.4, 0)
    assert (scores.n_kept, scores.n_held) == (len(zoo) - len(held), len(held))
    for data in datas:
        name = data.city.name
        nodes = np.array([data.city.node_ids.index(zoo.node_ids[i]) for i in held.tolist() if zoo.cities[i] == name])
        origins = data.origins("test")
        truth, mask = data.truth(origins, nodes)
        naive = _mae(weekly_naive(data, origins)[nodes], truth, mask)
        assert scores.mae[name]["weekly naive"] == pytest.approx(naive, abs=1e-5)


def test_the_anchor_column_is_one_vector_for_every_node(sources, monkeypatch) -> None:
    """The anchor alone (or the kept rows' mean without one) forecasts every held-out node with the same
    parameters: an anchor equal to a node's own parameters scores like the zoo on a one-node city share."""
    datas, model, zoo, prompts = sources
    monkeypatch.setattr(heldout, "train_denoiser", lambda *a, **k: "denoiser")
    monkeypatch.setattr(heldout, "generate", lambda d, p, g, seed: type("P", (), {"params": zoo.params[:len(p.node_ids)]})())
    kept, held = holdout_rows(zoo.cities, 0.1, 0)
    assert (held.numel(), sum(zoo.cities[i] == "beta" for i in held.tolist())) == (2, 1)
    beta_row = next(i for i in held.tolist() if zoo.cities[i] == "beta")
    scores = heldout_scores(zoo, prompts, datas, model, tiny_config(), GenerateConfig(), zoo.params[beta_row],
                            fraction=0.1, seed=0)
    assert scores.mae["beta"]["anchor alone"] == scores.mae["beta"]["zoo (trained on the node)"]
    assert scores.mae["gamma"]["anchor alone"] != scores.mae["gamma"]["zoo (trained on the node)"]


def test_a_real_check_denoiser_is_deterministic_and_round_trips(sources, tmp_path) -> None:
    datas, model, zoo, prompts = sources
    args = (zoo, prompts, datas, model, tiny_config(), GenerateConfig(num_inference_steps=5, num_samples=2), None)
    a = heldout_scores(*args, fraction=0.3, seed=0, workdir=tmp_path / "a")
    b = heldout_scores(*args, fraction=0.3, seed=0, workdir=tmp_path / "b")
    assert a == b and HeldoutScores.from_dict(a.to_dict()) == a
    lines = heldout_lines(a.to_dict())
    assert f"{a.n_held} source nodes (30% of every city's)" in lines[0]
    assert lines[2] == "| city | " + " | ".join(COLUMNS) + " |" and len(lines) == 4 + 2 + 1
    ratio = [float(v) for v in lines[-1].strip("| ").split(" | ")[1:]]
    expected = [sum(a.mae[c][k] / a.mae[c]["weekly naive"] for c in a.mae) / 2 for k in COLUMNS]
    assert lines[-1].startswith("| **mean ratio to weekly naive** |") and ratio == pytest.approx(expected, abs=1e-3)
    assert ratio[-1] == 1.0


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_a_share_outside_0_1_is_refused(fraction: float) -> None:
    with pytest.raises(GpdiffError, match="--holdout is the share"):
        check_fraction(fraction)


def test_no_share_means_no_scores(sources) -> None:
    datas, model, zoo, prompts = sources
    with pytest.raises(GpdiffError, match="--holdout > 0"):
        heldout_scores(zoo, prompts, datas, model, tiny_config(), GenerateConfig(), None, fraction=0.0)
