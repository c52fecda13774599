"""Generated parameters for source nodes the denoiser never saw: the pretrained model card's held-out scores.

``gpdiff pretrain`` leaves a share ``fraction`` of every source city's nodes out of a second denoiser,
trained with the same settings and seed on the other nodes' zoo parameters and prompts; it then
generates the held-out nodes' parameters from their prompts (the folder's generation settings: the
mean of ``num_samples`` samples) and lets each forecast its own node's *test* windows of the source
split, the part of each source series that neither the zoo nor the anchor trained on. On the same
windows, for the same nodes: the node's own zoo parameters (trained on that node: the ceiling), the
anchor alone (no per-node information), and the values one day and one week earlier (seasonal and
weekly naive). Mean absolute error in the data's units, per city (the cities' units differ, so
nothing is pooled across them; the model card adds each column's mean ratio to weekly naive).

This answers, on the sources' own data, what the shipped denoiser gives a node it has not seen before
any fine-tuning; the loco scoreboard (BENCHMARKS.md) answers it for whole cities. The protocol follows
BENCHMARKS.md's "Real data: generated parameters for held-out source nodes" (issue 25 asks for it in
the model card). The held-out rows are drawn as ``knn_residual`` draws its own
(:func:`gpdiff.methods.knn_residual.holdout_rows`); the second denoiser is not kept.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpdiff.data.windows import CityData
from gpdiff.diffusion.functional import FunctionalLoss
from gpdiff.diffusion.sample import GenerateConfig, generate
from gpdiff.diffusion.train import DiffusionConfig, train_denoiser
from gpdiff.evaluation.metrics import masked_metrics
from gpdiff.evaluation.naive import seasonal_naive, weekly_naive
from gpdiff.methods.knn_residual import holdout_rows
from gpdiff.models import BaseModel
from gpdiff.prompts import PromptSet
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.params import ParamCollection, unflatten

DEFAULT_FRACTION = 0.1  # gpdiff pretrain --holdout: share of every source city's nodes held out
COLUMNS = ("generated", "anchor alone", "zoo (trained on the node)", "seasonal naive", "weekly naive")


def check_fraction(fraction: float) -> float:
    """``fraction`` if it is a share in [0, 1) (0: no check); else :class:`GpdiffError`."""
    if not 0 <= fraction < 1:
        raise GpdiffError(f"--holdout is the share of every source city's nodes held out of a check denoiser, "
                          f"between 0 (no check) and 1, got {fraction}.")
    return fraction


@dataclass(frozen=True)
class HeldoutScores:
    """MAE per city and per :data:`COLUMNS` entry (each city in its own units)."""

    fraction: float
    n_kept: int
    n_held: int
    mae: dict[str, dict[str, float]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> HeldoutScores:
        return cls(float(doc["fraction"]), int(doc["n_kept"]), int(doc["n_held"]),
                   {c: {k: float(v) for k, v in row.items()} for c, row in doc["mae"].items()})


@torch.no_grad()
def _test_forecast(model: BaseModel, params: torch.Tensor, data: CityData, nodes: torch.Tensor) -> np.ndarray:
    """Node ``nodes[i]`` forecast with ``params[i]`` on its test windows, original units ``[n, B, H]``."""
    p = unflatten(params, model.spec())
    pred = torch.cat([model.forward(p, batch) for _, batch in data.iter_eval("test", nodes)], 1)
    return data.to_original(pred, nodes)


def _city_sums(model: BaseModel, rows: dict[str, torch.Tensor], data: CityData, nodes: torch.Tensor
               ) -> dict[str, tuple[float, int]]:
    """(sum of absolute errors, count) per column for one city's held-out ``nodes``."""
    origins, idx = data.origins("test"), nodes.numpy()
    forecasts = {name: _test_forecast(model, params, data, nodes) for name, params in rows.items()}
    forecasts["seasonal naive"] = seasonal_naive(data, origins)[idx]
    forecasts["weekly naive"] = weekly_naive(data, origins)[idx]
    truth, mask = data.truth(origins, idx)
    out = {}
    for name, pred in forecasts.items():
        m = masked_metrics(pred, truth, mask)
        count = int(m.count.sum())
        out[name] = (m.mae_avg * count, count)
    return out


def heldout_scores(zoo: ParamCollection, prompts: PromptSet, sources: Sequence[CityData], model: BaseModel,
                   diffusion: DiffusionConfig, generation: GenerateConfig, anchor: torch.Tensor | None, *,
                   fraction: float = DEFAULT_FRACTION, seed: int = 0, device: str = "cpu",
                   workdir: str | Path | None = None, functional: bool = False, progress: bool = False
                   ) -> HeldoutScores:
    """Hold out ``fraction`` of every city's rows of ``zoo`` (``prompts`` aligned with its rows), train a
    denoiser of ``diffusion`` on the rest (in ``workdir``), generate the held-out rows by ``generation``
    and score them against the columns of :data:`COLUMNS` on ``sources``' test windows (see the module).
    ``anchor``: the anchor's flat parameters (``None``: the column is the mean of the kept rows).
    ``functional``: give the check denoiser the functional loss on its own rows, as the pretrained one has.
    Raises :class:`GpdiffError` for a ``fraction`` outside [0, 1) or a source with no test window."""
    if check_fraction(fraction) == 0:
        raise GpdiffError("held-out scores need a share of source nodes to hold out (--holdout > 0).")
    for data in sources:
        data.require_windows("test")
    kept, held = holdout_rows(list(zoo.cities), fraction, seed)
    keys = zoo.keys()
    train = zoo.take(kept)
    loss = FunctionalLoss.for_zoo(train, [d.city for d in sources], diffusion.functional_windows, device) \
        if functional else None
    denoiser = train_denoiser(train, prompts, diffusion, seed=seed, device=device, progress=progress,
                              workdir=workdir, functional=loss)
    generated = generate(denoiser, prompts.select([keys[i] for i in held.tolist()]), generation, seed=seed).params
    reference = anchor if anchor is not None else train.params.mean(0)
    columns = {"generated": generated, "anchor alone": reference.reshape(1, -1).expand_as(generated),
               "zoo (trained on the node)": zoo.params[held]}
    totals: dict[str, dict[str, float]] = {}
    for data in sources:
        rows = [i for i, r in enumerate(held.tolist()) if zoo.cities[r] == data.city.name]
        if not rows:
            continue
        where = {n: i for i, n in enumerate(data.city.node_ids)}
        nodes = torch.tensor([where[zoo.node_ids[held[i]]] for i in rows])
        sums = _city_sums(model, {c: p[rows] for c, p in columns.items()}, data, nodes)
        totals[data.city.name] = {c: s / max(n, 1) for c, (s, n) in sums.items()}
    return HeldoutScores(fraction, len(kept), len(held),
                         {c: {k: round(v[k], 6) for k in COLUMNS} for c, v in totals.items()})
