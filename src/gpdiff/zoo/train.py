"""The model zoo: one base model per node of every source city, all trained at once.

Every source node gets its own model of one architecture, trained on that node's ego-graph windows
(GPD paper, Section 3.1) by the batched per-node trainer :class:`gpdiff.zoo.nodetrain.NodeTrainer`
(per-node Adam and early stopping, checkpoints and exact resume; see that module). Where each node
starts (``init``):

- ``anchor`` (default): the anchor, one model trained on all source nodes (:mod:`gpdiff.zoo.anchor`);
  every member is that model fine-tuned on its own node, at a small learning rate and optionally
  pulled toward the anchor (``l2_init``), so members stay in one basin and differ where their
  nodes differ. The collection records the anchor, and the diffusion model generates differences
  from it.
- ``shared_random``: one shared random initialisation (the GPD paper's zoo).
- ``independent``: one random initialisation per node (ablation).

``members`` > 1 trains that many models per node (the FNFM recipe, tsinghua-fib-lab/FNFM: fine-tune
perturbed copies of one general model per environment, and generate those): member 0 starts where
the node starts (so it is the one-member zoo's training), member m >= 1 from that start plus
Gaussian noise of ``member_noise`` times each tensor's root mean square, one draw per (seed,
member, tensor), and every member draws its own training windows. The denoiser trains on every member
(:meth:`~gpdiff.zoo.params.ParamCollection.all_members`), which gives it a spread of good parameters per
prompt instead of one point; every other reader of the zoo (retrieval, mean params, knn_residual,
the diagnostics) uses member 0. Training costs ``members`` times the one-member zoo.

Output: ``OUT/zoo.safetensors`` (a :class:`~gpdiff.zoo.params.ParamCollection` of the best parameters)
with per-node metrics ``val_mae`` and ``naive_mae`` (original scale, all validation windows, the
seasonal-naive forecast of :mod:`gpdiff.evaluation.naive`), ``val_loss`` (best early-stopping loss, scaled),
``best_epoch`` and ``epochs`` (of member 0; with several members also ``members_val_mae``, the
mean over the other members); and ``OUT/config.yaml``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpdiff.data.city import City
from gpdiff.data.splits import SourceSplit
from gpdiff.data.windows import CityData, WindowConfig
from gpdiff.evaluation.metrics import node_mae
from gpdiff.evaluation.naive import seasonal_naive
from gpdiff.models import BaseModel
from gpdiff.models.config import BaseModelConfig
from gpdiff.utils import distributed
from gpdiff.utils.device import resolve_device
from gpdiff.utils.errors import GpdiffError, unknown_name
from gpdiff.utils.io import write_yaml
from gpdiff.zoo.anchor import Anchor
from gpdiff.zoo.nodetrain import NodeTrainConfig, NodeTrainer, NodeTrainResult, forecast_windows, validation_loss
from gpdiff.zoo.params import ParamCollection, unflatten
from gpdiff.zoo.sourcepool import locate_rows, prepare_cities

COLLECTION = "zoo.safetensors"
INITS = ("anchor", "shared_random", "independent")


@dataclass
class ZooConfig(NodeTrainConfig):
    """How each source node's model is trained: its start (``init``) and the
    :class:`~gpdiff.zoo.nodetrain.NodeTrainConfig` fields. The base model is the run config's ``model:``
    section (:class:`~gpdiff.models.config.BaseModelConfig`), the source cities' split its
    ``source_split:`` (:class:`~gpdiff.data.splits.SourceSplit`). Defaults: the fast CPU setting used for
    the bundled cities."""

    init: str = "anchor"  # anchor, shared_random or independent (see the module docstring)
    lr: float = 0.003  # fine-tuning from the anchor; the paper's shared_random zoo used 0.01
    patience: int = 2  # members start from the trained anchor; 3 measured no better on the loco scoreboard
    members: int = 1  # models per node: member 0 from the node's start, the others from perturbed copies (FNFM)
    member_noise: float = 0.02  # the perturbation of members >= 1, relative to each tensor's RMS

    def __post_init__(self) -> None:
        super().__post_init__()
        if int(self.members) < 1 or not self.member_noise >= 0:
            raise GpdiffError(f"ZooConfig: members must be at least 1 and member_noise >= 0 (got {self.members}, "
                              f"{self.member_noise}).")
        if self.init not in INITS:
            raise unknown_name("zoo.init", self.init, INITS)


@torch.no_grad()
def evaluate(model: BaseModel, params: dict[str, torch.Tensor], data: list[CityData], chunk: int = 64
             ) -> dict[str, torch.Tensor]:
    """Per-node validation MAE ``[N]`` of ``params`` (rows: the nodes of ``data`` in order) and of the
    seasonal-naive forecast, original scale, on every validation window (the same targets for
    both); NaN for a node without observed validation targets."""
    n = sum(d.n_nodes for d in data)
    mae, naive = np.zeros(n), np.zeros(n)
    naive_of: dict[int, np.ndarray] = {}  # a city listed again (one entry per zoo member) is scored once
    start = 0
    for d in data:
        rows = slice(start, start + d.n_nodes)
        start += d.n_nodes
        origins = d.origins("val")
        truth, mask = d.truth(origins)  # [N, B, H]
        pred = forecast_windows(model, {k: v[rows] for k, v in params.items()}, d, origins, model.config.in_channels, chunk)
        mae[rows] = node_mae(pred, truth, mask)
        if id(d) not in naive_of:
            naive_of[id(d)] = node_mae(seasonal_naive(d, origins), truth, mask)
        naive[rows] = naive_of[id(d)]
    return {"val_mae": torch.from_numpy(mae).float(), "naive_mae": torch.from_numpy(naive).float()}


def source_val_loss(model: BaseModel, params: torch.Tensor, data: list[CityData], keys: Sequence[tuple[str, str]],
                    windows: int = 64, chunk: int = 64) -> torch.Tensor:
    """Early-stopping loss ``[n]`` (CPU) of parameter rows ``params [n, P]`` on their own source nodes
    ``keys`` ((city, node id) per row): :func:`gpdiff.zoo.nodetrain.validation_loss`, the scaled masked MAE
    on at most ``windows`` evenly spaced validation windows of each node (comparable across cities)."""
    city_row, node_row = locate_rows(data, [(str(c), str(n)) for c, n in keys])
    rows = unflatten(params.to(data[0].device), model.spec())
    return validation_loss(model, rows, np.arange(len(keys)), data, city_row, node_row, windows, chunk).cpu()


def train_zoo(sources: Sequence[City], config: ZooConfig | None = None, *, model: BaseModelConfig | None = None,
              window: WindowConfig | None = None, split: SourceSplit | None = None,
              anchor: Anchor | torch.Tensor | None = None, seed: int = 0, device: str = "auto", progress: bool = True,
              workdir: str | Path | None = None) -> ParamCollection | None:
    """The zoo stage: one base model per node of ``sources``, all trained at once; see the module docstring.

    ``config``: how each node trains; ``model``: the base model; ``window``: the windows' shape; ``split``:
    the source cities' train/val/test fractions (defaults: each config's own). ``anchor``: the start of every node for ``init: anchor`` (:func:`gpdiff.zoo.anchor.fit_anchor`,
    or its parameters ``[P]``). ``workdir``: where checkpoints go and the collection is saved
    (``zoo.safetensors``), so that a rerun resumes; ``None``: a temporary folder, removed afterwards
    (under ``torchrun`` give one folder that every rank can reach).
    Under ``torchrun`` (:mod:`gpdiff.utils.distributed`; every rank calls this with the same arguments) the
    nodes are sharded over the ranks, which checkpoint their own share in ``workdir``; rank 0 gathers,
    evaluates and saves the collection and returns it, the other ranks return ``None``. The result is
    the single-process result bit for bit (see :mod:`gpdiff.zoo.nodetrain`).
    Raises :class:`GpdiffError` for unusable cities (no graph for a graph model, too few windows),
    a missing or mis-sized anchor, and a checkpoint in ``workdir`` written with another setup.
    """
    config, window = config or ZooConfig(), window or WindowConfig()
    arch, split = model or BaseModelConfig(), split or SourceSplit()
    if isinstance(anchor, Anchor):
        anchor = anchor.params
    if workdir is None:
        with tempfile.TemporaryDirectory(prefix="gpdiff-zoo-") as tmp:
            return train_zoo(sources, config, model=arch, window=window, split=split, anchor=anchor, seed=seed,
                             device=device, progress=progress, workdir=tmp)
    cities, out_dir = sources, workdir
    dev = resolve_device(device)
    distributed.init(dev)  # under torchrun: join the ranks (no-op otherwise)
    model = arch.build(window)
    data = prepare_cities(cities, window, split, model, dev)
    n_nodes = sum(d.n_nodes for d in data)
    init = _start(config, model, anchor, n_nodes, seed, dev)
    members = int(config.members)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {**config.to_dict(), "model": arch.to_dict(), "source_split": asdict(split),
                              "window": vars(window).copy(), "seed": seed,
                              "cities": [d.city.name for d in data], "n_params": model.n_params, "n_nodes": n_nodes}
    if distributed.is_main():
        write_yaml(out_dir / "config.yaml", record)
    trainer = NodeTrainer(model, data * members, config, init, out_dir, seed=seed, progress=progress,
                          desc=f"zoo {model.name}", shard=(distributed.rank(), distributed.world_size()))
    result = trainer.run()
    if result is None:  # a rank other than 0: its share went to rank 0
        return None
    metrics = _metrics(model, result, data, members, trainer.chunk, dev)
    flat = result.flat(model.spec()).reshape(members, n_nodes, -1)  # [M, N, P]
    collection = ParamCollection(
        params=flat[0], node_ids=[n for d in data for n in d.city.node_ids],
        cities=[d.city.name for d in data for _ in range(d.n_nodes)], model=model.name,
        model_config=model.config.to_dict(), spec=list(model.spec()), metrics=metrics, config=record,
        anchor=anchor.float().cpu() if config.init == "anchor" and anchor is not None else None,
        members=flat[1:].transpose(0, 1).contiguous() if members > 1 else None,
    )
    collection.save(out_dir / COLLECTION)
    return collection


def _metrics(model: BaseModel, result: NodeTrainResult, data: list[CityData], members: int, chunk: int, dev: torch.device
             ) -> dict[str, torch.Tensor]:
    """Member 0's per-node metrics ``[N]`` (validation MAE and seasonal naive's, validation loss, best and
    last epoch), and with several members the other members' mean validation MAE; ``result``'s rows are
    member-major (every node of member 0, then of member 1, ...)."""
    n_nodes = sum(d.n_nodes for d in data)
    every = evaluate(model, {k: v.to(dev) for k, v in result.params.items()}, data * members, chunk)
    every.update({"val_loss": result.val_loss, "best_epoch": result.best_epoch, "epochs": result.epochs})
    metrics = {k: v[:n_nodes] for k, v in every.items()}
    if members > 1:
        metrics["members_val_mae"] = every["val_mae"].reshape(members, n_nodes)[1:].nanmean(0)
    return metrics


def _start(config: ZooConfig, model: BaseModel, anchor: torch.Tensor | None, n_nodes: int, seed: int,
           dev: torch.device) -> dict[str, torch.Tensor]:
    """Every node's starting parameters (``{name: [M * N, ...]}``, member-major rows: every node of member
    0, then of member 1, ...): the anchor, or a random initialisation shared or per node; members after
    the first start perturbed. Raises :class:`GpdiffError` for ``init: anchor`` without a ``[P]`` anchor."""
    if config.init == "anchor":
        if anchor is None or anchor.shape != (model.n_params,):
            got = "none" if anchor is None else f"shape {tuple(anchor.shape)}"
            raise GpdiffError(f"zoo.init is 'anchor' but the anchor given is {got}, expected [{model.n_params}]; "
                              "train it first (gpdiff.zoo.anchor.fit_anchor), or set zoo.init to shared_random.")
        init = unflatten(anchor.reshape(1, -1).expand(n_nodes, -1).to(dev), model.spec())
    else:
        init = model.init(n_nodes, seed=seed, shared=config.init == "shared_random", device=dev)
    members = int(config.members)
    if members > 1:
        init = {k: torch.cat([v, *(perturbed(v, config.member_noise, (seed, m, t)) for m in range(1, members))])
                for t, (k, v) in enumerate(init.items())}
    return init


def perturbed(start: torch.Tensor, noise: float, key: tuple[int, ...]) -> torch.Tensor:
    """``start [N, *shape]`` plus Gaussian noise of ``noise`` x its root mean square, drawn on the CPU
    from a generator seeded by ``key`` (the zoo's: seed, member, tensor), the same on every rank and device."""
    state = np.random.SeedSequence([k % 2**63 for k in key]).generate_state(1, dtype=np.uint64)
    gen = torch.Generator().manual_seed(int(state[0] % 2**63))
    rms = start.float().square().mean().sqrt()
    draw = torch.randn(start.shape, generator=gen).to(start.device, start.dtype)
    return start + noise * rms * draw


def load_zoo(out_dir: str | Path) -> ParamCollection:
    """The parameter collection a finished :func:`train_zoo` wrote into ``out_dir``."""
    path = Path(out_dir) / COLLECTION
    if not path.is_file():
        raise GpdiffError(f"{path} does not exist; train the zoo first with `gpdiff zoo train --out {out_dir}`.")
    return ParamCollection.load(path)
