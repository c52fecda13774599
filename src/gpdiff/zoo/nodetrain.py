"""Batched per-node training: many small models, one per node, trained as one computation.

Every node's parameters are a row of one stacked tensor per parameter (``[n_nodes, *shape]``), and
one forward call evaluates all of them on their own ego-graph windows (see
:mod:`gpdiff.models.base`). The loss is the SUM over nodes of each node's masked MAE on its scaled
centre-node targets, so each node's gradient is that of its own loss, and Adam (element-wise) on
the stacked tensors is exactly per-node Adam (:func:`adam_update`, checked against
``torch.optim.Adam`` in the tests). The model zoo (:mod:`gpdiff.zoo.train`) and every fine-tuning method
(:mod:`gpdiff.methods.adapt`) train through :class:`NodeTrainer`, each with its own :class:`NodeTrainConfig`.

- **Early stopping per node.** After every epoch each training node is evaluated on a fixed, evenly
  spaced subset of its validation windows (at most ``val_windows``; masked MAE on the *scaled*
  values, the training loss). A node whose validation loss has not improved for ``patience`` epochs
  stops: it leaves the training set (nothing is computed for it any more, so its parameters and
  Adam state cannot move) and keeps its best parameters.
- **Optimisation.** Adam with learning rate ``lr * lr_decay**epoch``; an epoch is
  ``steps_per_epoch`` steps of ``batch_size`` training windows per node, drawn at random. With
  ``l2_init > 0`` each node's loss adds ``l2_init * ||theta - theta_init||^2`` (L2-SP, Li et al.,
  ICML 2018), which keeps the members of an anchored zoo near the anchor. ``trainable`` (tensor
  names or glob patterns of :meth:`BaseModel.spec`) trains those tensors only and keeps the others
  at their initial values (e.g. ``[fc]``: a per-node output layer on a shared, frozen model).
- **Compute.** The nodes, ordered by city and ego-graph size, are cut into fixed *blocks* of
  ``BLOCK_CHUNKS x node_chunk`` nodes. An epoch walks the blocks; in each, the still-training nodes
  are gathered into contiguous working tensors and trained in chunks of ``node_chunk`` nodes
  (forward, backward and the Adam update of a chunk together; the nodes are independent, so this is
  exact). Ego slots that are padding for the whole chunk are cut (:func:`trim_slots`). Chunks keep
  the working set in cache on a CPU; on a GPU one chunk holds every node (of this rank). The
  per-chunk loss can be ``torch.compile``-d; if compiling fails, training continues eagerly.
- **Training windows per node.** Each node's windows of an epoch are drawn from its own generator,
  seeded by (seed, epoch, node), so what a node sees does not depend on which other nodes train
  beside it, in which process, or whether the run was resumed.
- **Sharded over processes** (``shard=(rank, world)``, :mod:`gpdiff.utils.distributed`): rank r trains
  the blocks ``r, r + world, ...`` on its own (no communication while training) and
  :meth:`NodeTrainer.run` gathers every rank's nodes on rank 0. A chunk holds the same nodes
  whatever the number of ranks, so a sharded run equals a single-process run bit for bit (on a
  CPU, or with ``node_chunk`` set: a GPU's automatic chunk is all the nodes of its rank).
- **Checkpoints and resume.** After every epoch the state (parameters, best parameters, Adam
  moments, per-node early-stopping counters) of this rank's nodes is written atomically to
  ``OUT/checkpoint.safetensors`` (``OUT/checkpoint.rank{r}-of-{world}.safetensors`` when sharded),
  from a background thread while the next epoch trains. Rerunning the same training continues from
  it, and gives the same numbers as an uninterrupted run; a killed rank's work resumes from its own
  file. Only the fields in ``RESUMABLE_CHANGES`` may change between runs; anything else is refused
  with a message naming the difference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpdiff.data.windows import CityData, WindowBatch
from gpdiff.models import BaseModel
from gpdiff.models.base import masked_node_mae
from gpdiff.utils import distributed
from gpdiff.utils.config import from_mapping
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.hashing import hash_arrays
from gpdiff.zoo.checkpoint import Checkpoint, CheckpointWriter, TrainState
from gpdiff.zoo.nodelayout import NodeLayout, concat_batches, trim_slots
from gpdiff.zoo.params import flatten

# Fields that may differ between a checkpoint and the run that resumes it.
RESUMABLE_CHANGES = ("max_epochs", "patience", "compile", "node_chunk")
ADAM_BETAS, ADAM_EPS = (0.9, 0.999), 1e-8


@dataclass
class NodeTrainConfig:
    """How per-node models are trained: batches, Adam, early stopping and compute layout."""

    batch_size: int = 32  # training windows per node per step
    lr: float = 0.01
    lr_decay: float = 0.9  # the learning rate of epoch e is lr * lr_decay**e
    max_epochs: int = 60
    patience: int = 3  # epochs without validation improvement before a node stops
    steps_per_epoch: int = 25
    val_windows: int = 128  # validation windows per node for early stopping (evenly spaced)
    compile: bool = False  # torch.compile the per-chunk loss (falls back to eager on failure)
    node_chunk: int = 0  # nodes per forward/backward chunk; 0 = auto (32 on CPU, all on GPU)
    l2_init: float = 0.0  # L2 pull toward each node's initial parameters (L2-SP, Li et al. 2018); 0 = off
    trainable: list[str] = field(default_factory=list)  # tensors trained (names or globs, e.g. [fc]); [] = all

    def __post_init__(self) -> None:
        what = type(self).__name__
        if self.l2_init < 0:
            raise GpdiffError(f"{what}: l2_init must be >= 0, got {self.l2_init}.")
        for name in ("batch_size", "max_epochs", "patience", "steps_per_epoch", "val_windows"):
            if int(getattr(self, name)) < 1:
                raise GpdiffError(f"{what}: {name} must be at least 1, got {getattr(self, name)}.")
        if self.node_chunk < 0 or not self.lr > 0 or not self.lr_decay > 0:
            raise GpdiffError(f"{what}: node_chunk must be >= 0, lr and lr_decay > 0 "
                              f"(got {self.node_chunk}, {self.lr}, {self.lr_decay}).")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> NodeTrainConfig:
        return from_mapping(cls, data, f"{cls.__name__}")

    def trainer_fields(self) -> dict[str, Any]:
        """The :class:`NodeTrainConfig` part of this config (a subclass may add fields)."""
        return {f.name: getattr(self, f.name) for f in fields(NodeTrainConfig)}


# ------------------------------------------------------------------------ helpers
def adam_update(params: list[torch.Tensor], grads: list[torch.Tensor], exp_avg: list[torch.Tensor],
                exp_avg_sq: list[torch.Tensor], step: int, lr: float) -> None:
    """One in-place Adam step (torch.optim.Adam's update, no weight decay) on lists of tensors."""
    b1, b2 = ADAM_BETAS
    torch._foreach_lerp_(exp_avg, grads, 1 - b1)
    torch._foreach_mul_(exp_avg_sq, b2)
    torch._foreach_addcmul_(exp_avg_sq, grads, grads, 1 - b2)
    denom = torch._foreach_sqrt(exp_avg_sq)
    torch._foreach_div_(denom, math.sqrt(1 - b2**step))
    torch._foreach_add_(denom, ADAM_EPS)
    torch._foreach_addcdiv_(params, exp_avg, denom, -lr / (1 - b1**step))


def trainable_names(model: BaseModel, patterns: Sequence[str]) -> list[str]:
    """The names of ``model``'s tensors that match ``patterns`` (names or glob patterns, in spec
    order; all tensors when ``patterns`` is empty). Raises :class:`GpdiffError` for a pattern that
    matches no tensor, naming the model's tensors."""
    names = [s.name for s in model.spec()]
    if not patterns:
        return names
    unmatched = [p for p in patterns if not any(fnmatchcase(n, p) for n in names)]
    if unmatched:
        raise GpdiffError(f"trainable {unmatched} match(es) no tensor of base model {model.name!r}; its tensors are "
                          f"{', '.join(names)} (names or glob patterns such as 'tc3.*').")
    return [n for n in names if any(fnmatchcase(n, p) for p in patterns)]


def evenly_spaced(origins: np.ndarray, limit: int) -> np.ndarray:
    if origins.size <= limit:
        return origins
    return origins[np.linspace(0, origins.size - 1, limit).round().astype(np.int64)]


@torch.no_grad()
def forecast_windows(model: BaseModel, params: dict[str, torch.Tensor], data: CityData, origins: np.ndarray,
            in_channels: int, chunk: int = 64, windows: int = 512) -> np.ndarray:
    """Original-scale forecasts ``[N, B, H]`` of all nodes of ``data`` (``params`` rows in node order) at
    the window ``origins``, computed in chunks of nodes and windows."""
    n = data.n_nodes
    out = np.zeros((n, origins.size, data.horizon), dtype=np.float32)
    nodes = data.all_nodes()
    for lo in range(0, n, chunk):
        part = nodes[lo:lo + chunk]
        sub = {k: v[lo:lo + part.numel()] for k, v in params.items()}
        for w in range(0, origins.size, windows):
            o = torch.from_numpy(origins[w:w + windows]).to(data.device).expand(part.numel(), -1)
            batch = concat_batches([data.batch(part, o)], in_channels)
            out[lo:lo + part.numel(), w:w + windows] = data.to_original(model.forward(sub, batch), part)
    return out


@torch.no_grad()
def validation_loss(model: BaseModel, params: dict[str, torch.Tensor], param_rows: np.ndarray, data: list[CityData],
                    city: np.ndarray, node: np.ndarray, windows: int, chunk: int, segment: str = "val") -> torch.Tensor:
    """Early-stopping loss ``[n]``: parameters ``params[k][param_rows[i]]`` scored on node ``node[i]`` of
    ``data[city[i]]`` by the scaled masked MAE on at most ``windows`` evenly spaced windows of ``segment``
    (validation by default), in chunks of ``chunk`` nodes (the trainer's validation, and any other scoring
    of parameter rows on their own nodes); 0 for a node with nothing observed there."""
    device = data[0].device
    out = torch.empty(len(node), device=device)
    for c in np.unique(city):
        sel = np.flatnonzero(city == c)
        origins = torch.from_numpy(evenly_spaced(data[c].origins(segment), windows)).to(device)
        for lo in range(0, sel.size, chunk):
            part = sel[lo:lo + chunk]
            local = torch.from_numpy(node[part]).to(device)
            batch = trim_slots(concat_batches([data[c].batch(local, origins.expand(part.size, -1))],
                                              model.config.in_channels))
            idx = torch.from_numpy(param_rows[part]).to(device)
            pred = model.forward({k: v[idx] for k, v in params.items()}, batch)
            out[torch.from_numpy(part).to(device)] = masked_node_mae(pred, batch.y, batch.y_mask)
    return out


# ------------------------------------------------------------------------ trainer
@dataclass
class NodeTrainResult:
    """What :meth:`NodeTrainer.run` returns: the best parameters and per-node training records."""

    params: dict[str, torch.Tensor]  # best parameters by validation loss, [n_nodes, *shape] per tensor (CPU)
    val_loss: torch.Tensor  # [n_nodes] best early-stopping loss (scaled masked MAE)
    best_epoch: torch.Tensor  # [n_nodes] epoch of the best loss (0 = the initial parameters)
    epochs: torch.Tensor  # [n_nodes] epochs trained

    def flat(self, spec: Sequence[Any]) -> torch.Tensor:
        """The best parameters as flat rows ``[n_nodes, P]`` in ``spec`` order."""
        return flatten(self.params, list(spec))


def node_loss(model: BaseModel, compile: bool = False) -> Callable[[dict[str, torch.Tensor], WindowBatch], torch.Tensor]:
    """The training loss of a chunk: the sum over its nodes of each node's masked MAE. ``compile``:
    ``torch.compile`` it, falling back to eager with a warning when compiling or running the compiled
    graph fails."""
    def loss_fn(params: dict[str, torch.Tensor], batch: WindowBatch) -> torch.Tensor:
        return model.training_loss(params, batch).sum()

    if not compile:
        return loss_fn
    try:
        compiled = torch.compile(loss_fn, dynamic=False)
    except Exception:  # noqa: BLE001 - any compile problem: train eagerly
        return loss_fn

    def guarded(params: dict[str, torch.Tensor], batch: WindowBatch) -> torch.Tensor:
        nonlocal compiled
        if compiled is not loss_fn:
            try:
                return compiled(params, batch)
            except Exception as exc:  # noqa: BLE001
                import warnings

                warnings.warn(f"torch.compile failed ({type(exc).__name__}); training eagerly.", stacklevel=2)
                compiled = loss_fn
        return loss_fn(params, batch)

    return guarded


class NodeTrainer:
    """Trains one model per node of ``data`` (cities in order; rows of ``init`` in that node order).

    ``model`` is the node-batched base model; ``init`` holds ``[n_nodes, *shape]`` starting
    parameters per tensor; ``seed`` seeds the training windows; ``out_dir`` holds the checkpoint;
    ``shard`` = (rank, world) trains this rank's blocks of nodes only (see the module docstring;
    default: every node, in this process). :meth:`run` trains (or resumes, or returns a finished
    run) and returns a :class:`NodeTrainResult` of every node on rank 0 (``None`` on other ranks).

    Its pieces: where the nodes live (:class:`~gpdiff.zoo.nodelayout.NodeLayout`), the chunk loss
    (:func:`node_loss`, compiled or not), the checkpoint (:class:`~gpdiff.zoo.checkpoint.Checkpoint`);
    the trainer itself is the epoch loop, the Adam steps and early stopping.
    """

    def __init__(self, model: BaseModel, data: list[CityData], config: NodeTrainConfig,
                 init: dict[str, torch.Tensor], out_dir: str | Path, seed: int = 0, progress: bool = True,
                 desc: str = "train", shard: tuple[int, int] = (0, 1)) -> None:
        if not data:
            raise GpdiffError("nothing to train: no cities given.")
        self.model, self.data, self.config, self.seed = model, data, config, seed
        self.out_dir, self.progress, self.desc = Path(out_dir), progress, desc
        self.device = data[0].device
        self.spec = model.spec()
        self.in_channels = model.config.in_channels
        self.layout = NodeLayout.build(data, config.node_chunk, self.device, shard)
        n = self.layout.n_nodes
        rows = {k: int(v.shape[0]) for k, v in init.items()}
        if set(rows) != {s.name for s in self.spec} or set(rows.values()) != {n}:
            raise GpdiffError(f"initial parameters {rows} do not match {n} nodes of model "
                              f"{model.name!r} (tensors {[s.name for s in self.spec]}).")
        self.rank, self.world = shard
        self.chunk, self.rows, self.blocks = self.layout.chunk, self.layout.rows, self.layout.blocks
        idx = torch.from_numpy(self.rows).to(init[self.spec[0].name].device)
        self.init = {k: v[idx].to(self.device) for k, v in init.items()}
        self.trainable = trainable_names(model, config.trainable)
        self.loss_fn = node_loss(model, config.compile)
        self.checkpoint = Checkpoint(self.out_dir, self.identity(), self.rank, self.world)

    def identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be resumed."""
        cfg = {k: v for k, v in self.config.to_dict().items() if k not in RESUMABLE_CHANGES}
        return {"config": cfg, "seed": self.seed, "cities": [d.city.name for d in self.data],
                "nodes": [d.n_nodes for d in self.data], "n_params": self.model.n_params,
                "init": hash_arrays(flatten({k: v.cpu() for k, v in self.init.items()}, self.spec)),
                "shard": [self.rank, self.world], "rows": hash_arrays(self.rows)}

    def checkpoint_path(self) -> Path:
        """``OUT/checkpoint.safetensors``, or this rank's own file when the training is sharded."""
        return self.checkpoint.path

    # ------------------------------------------------------------------ compute
    def epoch_origins(self, rows: np.ndarray, epoch: int) -> torch.Tensor:
        """The training windows of every step of ``epoch`` for global node ``rows``: origins
        ``[steps_per_epoch, len(rows), batch_size]``, drawn (with replacement) from each node's own
        generator, seeded by (seed, epoch, node)."""
        steps, size = self.config.steps_per_epoch, self.config.batch_size
        out = np.empty((steps, rows.size, size), dtype=np.int64)
        pools = [d.origins("train") for d in self.data]
        for i, row in enumerate(rows):
            pool = pools[self.layout.node_city[row]]
            draw = np.random.default_rng((self.seed % 2**63, epoch, int(row))).integers(pool.size, size=(steps, size))
            out[:, i] = pool[draw]
        return torch.from_numpy(out).to(self.device)

    def _train_epoch(self, state: TrainState, local: np.ndarray) -> None:
        """``steps_per_epoch`` Adam steps for the nodes ``local`` (this rank's rows, all still
        training), block by block."""
        names, train = [s.name for s in self.spec], self.trainable
        lr = self.config.lr * self.config.lr_decay**state.epoch
        pull = self.config.l2_init
        training = np.zeros(self.rows.size, dtype=bool)
        training[local] = True
        for block in self.blocks:
            part = block[training[block]]
            if part.size == 0:
                continue
            rows = self.rows[part]
            idx = torch.from_numpy(part).to(self.device)
            work = {g: {k: getattr(state, g)[k][idx] for k in (names if g == "params" else train)}
                    for g in ("params", "exp_avg", "exp_avg_sq")}
            start = {k: self.init[k][idx] for k in train} if pull > 0 else {}
            for s, origins in enumerate(self.epoch_origins(rows, state.epoch)):
                for lo in range(0, rows.size, self.chunk):
                    hi = min(lo + self.chunk, rows.size)
                    leaf = {k: work["params"][k][lo:hi].detach().requires_grad_(k in train) for k in names}
                    loss = self.loss_fn(leaf, self.layout.batch(self.data, rows[lo:hi], origins[lo:hi], self.in_channels))
                    if pull > 0:
                        loss = loss + pull * sum((leaf[k] - start[k][lo:hi]).square().sum() for k in train)
                    grads = torch.autograd.grad(loss, [leaf[k] for k in train])
                    with torch.no_grad():
                        adam_update([work["params"][k][lo:hi] for k in train], list(grads),
                                    [work["exp_avg"][k][lo:hi] for k in train],
                                    [work["exp_avg_sq"][k][lo:hi] for k in train], state.step + s + 1, lr)
            for g, tensors in work.items():
                for k, v in tensors.items():
                    getattr(state, g)[k][idx] = v
        state.step += self.config.steps_per_epoch

    def _validate(self, params: dict[str, torch.Tensor], local: np.ndarray) -> torch.Tensor:
        """Early-stopping loss ``[len(local)]`` of this rank's rows ``local`` (rows of ``params``):
        scaled masked MAE on each city's validation subset, computed block by block."""
        out = torch.empty(local.size, device=self.device)
        where = np.full(self.rows.size, -1, dtype=np.int64)
        where[local] = np.arange(local.size)
        for block in self.blocks:
            part = block[where[block] >= 0]
            if part.size == 0:
                continue
            rows = self.rows[part]
            cities = self.layout.node_city[rows]
            val = validation_loss(self.model, params, part, self.data, cities, rows - self.layout.offsets[cities],
                                  self.config.val_windows, self.chunk)
            out[torch.from_numpy(where[part]).to(self.device)] = val
        return out

    # ------------------------------------------------------------------ driver
    def run(self) -> NodeTrainResult | None:
        cfg = self.config
        state = self.checkpoint.resume(self.device)
        if state is None:
            state = TrainState.fresh(self.init)
            state.best_val = self._validate(state.params, np.arange(self.rows.size))

        bar = self._progress_bar(state)
        writer = CheckpointWriter()
        try:
            while state.epoch < cfg.max_epochs and bool(state.active.any()):
                t0 = time.perf_counter()
                local = np.flatnonzero(state.active.cpu().numpy())
                self._train_epoch(state, local)
                state.epoch += 1
                val = self._validate(state.params, local)
                self._early_stopping(state, local, val)
                writer.submit(state, self.checkpoint.path, self.checkpoint.meta)
                bar.update(1)
                bar.set_postfix(training=f"{int(state.active.sum())}/{self.rows.size}",
                                val_loss=f"{float(val.mean()):.4f}", s=f"{time.perf_counter() - t0:.1f}")
        finally:
            writer.close()  # an interrupted run still finishes writing its last checkpoint
            bar.close()
        values = {**{f"params.{k}": v for k, v in state.best.items()}, "val_loss": state.best_val.float(),
                  "best_epoch": state.best_epoch.float(), "epochs": state.epochs.float()}
        if self.world > 1:
            gathered = distributed.gather_rows(values, torch.from_numpy(self.rows).to(self.device), self.layout.n_nodes)
            if gathered is None:
                return None
            values = gathered
        return NodeTrainResult(params={k[len("params."):]: v.cpu() for k, v in values.items() if k.startswith("params.")},
                               val_loss=values["val_loss"].cpu(), best_epoch=values["best_epoch"].cpu(),
                               epochs=values["epochs"].cpu())

    def _early_stopping(self, state: TrainState, local: np.ndarray, val: torch.Tensor) -> None:
        idx = torch.from_numpy(local).to(self.device)
        better = val < state.best_val[idx]
        won = idx[better]
        for k in state.best:
            state.best[k][won] = state.params[k][won]
        state.best_val[won] = val[better]
        state.best_epoch[won] = state.epoch
        state.bad_epochs[idx] = torch.where(better, 0, state.bad_epochs[idx] + 1)
        state.epochs[idx] = state.epoch
        state.active[idx[state.bad_epochs[idx] >= self.config.patience]] = False

    def _progress_bar(self, state: TrainState):  # type: ignore[no-untyped-def]
        from gpdiff.utils.progress import progress_bar

        desc = self.desc if self.world == 1 else f"{self.desc} [rank {self.rank}/{self.world}]"
        return progress_bar(total=self.config.max_epochs, initial=state.epoch, desc=desc, unit="epoch",
                            disable=not self.progress or self.rank != 0)
