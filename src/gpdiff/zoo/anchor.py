"""The anchor: one base model trained on the windows of all source nodes, the shared starting point.

Every member of an anchored zoo is fine-tuned from it (:mod:`gpdiff.zoo.train`, ``zoo.init: anchor``), the
diffusion model generates differences from it (:mod:`gpdiff.diffusion.train`), and the pooled
``transfer`` baselines start from it. Anchoring follows the parameter-generation methods whose
collections start from one trained point (p-diff; HyperDiffusion; G.pt's residual on a reference;
FNFM, tsinghua-fib-lab/FNFM, which fine-tunes per-environment copies of one general STGCN): members
fine-tuned from one trained model stay in one basin, so their differences are small and comparable.

Training: Adam on the mean over nodes of each node's masked MAE (scaled values), every step
``nodes_per_step`` source nodes drawn with city-balanced weights (:class:`gpdiff.zoo.sourcepool.SourcePool`;
``balance: proportional`` draws every node equally) and ``batch_size`` random training windows each;
every ``eval_every`` steps the loss on one fixed set of source validation windows decides the best
parameters, and ``patience`` evaluations without improvement stop training. The start is the
model's shared random initialisation for the run's seed.

Output folder: ``anchor.safetensors`` (the parameters ``[P]``, the validation history and the settings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from gpdiff.data.city import City
from gpdiff.data.splits import SourceSplit
from gpdiff.data.windows import CityData, WindowBatch, WindowConfig
from gpdiff.models.base import BaseModel
from gpdiff.models.config import BaseModelConfig
from gpdiff.utils.device import resolve_device
from gpdiff.utils.errors import GpdiffError, unknown_name
from gpdiff.utils.io import load_tensors, save_tensors, yaml_safe
from gpdiff.utils.progress import progress_bar
from gpdiff.zoo.params import flatten, unflatten
from gpdiff.zoo.sourcepool import BALANCES, SourcePool, prepare_cities

FILE = "anchor.safetensors"


@dataclass
class AnchorConfig:
    """How the anchor is trained (see the module docstring). Defaults: those of the earlier pooled
    ``transfer`` baseline, with city-balanced sampling."""

    lr: float = 0.005
    max_steps: int = 1500
    nodes_per_step: int = 128
    batch_size: int = 16  # training windows per drawn node
    eval_every: int = 50
    patience: int = 6  # evaluations without improvement before training stops
    val_nodes: int = 512  # nodes (drawn with the same weights) in the fixed validation batch
    balance: str = "city"  # city: every source city drawn equally often; proportional: every node

    def __post_init__(self) -> None:
        if self.balance not in BALANCES:
            raise unknown_name("anchor.balance", self.balance, BALANCES)
        for name in ("max_steps", "nodes_per_step", "batch_size", "eval_every", "patience", "val_nodes"):
            if int(getattr(self, name)) < 1:
                raise GpdiffError(f"anchor.{name} must be at least 1, got {getattr(self, name)}.")
        if not self.lr > 0:
            raise GpdiffError(f"anchor.lr must be positive, got {self.lr}.")


def _loss(model: BaseModel, theta: torch.Tensor, batch: WindowBatch) -> torch.Tensor:
    n = batch.x.shape[0]
    return model.training_loss(unflatten(theta.expand(n, -1), model.spec()), batch).mean()


def train_anchor(model: BaseModel, sources: list[CityData], config: AnchorConfig = AnchorConfig(), seed: int = 0,
                 progress: bool = True) -> tuple[torch.Tensor, dict[str, Any]]:
    """The anchor's parameters ``[P]`` (CPU, best by source validation loss, the initial parameters
    included) and a record of its training (``val_loss``, ``initial_val_loss``, ``improved``: whether
    training beat the start, ``steps``, ``history`` of (step, validation loss)).

    ``improved`` False means the anchor is its start: for ``residual: seasonal`` that is the seasonal
    value, and at too high a learning rate the zero read-out's network can switch off for good
    (BENCHMARKS.md, the weekly context); the pipeline says so."""
    if not sources:
        raise GpdiffError("the anchor needs at least one source city.")
    device = sources[0].device
    pool = SourcePool(sources, model.config.in_channels, config.balance)
    gen = torch.Generator().manual_seed(seed)
    val_batch = pool.sample(config.val_nodes, 32, torch.Generator().manual_seed(seed + 1), "val")
    init = flatten(model.init(1, seed=seed, shared=True), model.spec())
    theta = init.to(device).requires_grad_()
    opt = torch.optim.Adam([theta], lr=config.lr)
    with torch.no_grad():  # the start competes too: a residual model's start is the seasonal value
        initial = float(_loss(model, theta, val_batch))
    best, best_val, bad, history, step = theta.detach().clone(), initial, 0, [], 0
    bar = progress_bar(range(config.max_steps), desc=f"anchor {model.name} (pooled)", disable=not progress,
                       unit="step")
    for step in bar:
        loss = _loss(model, theta, pool.sample(config.nodes_per_step, config.batch_size, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % config.eval_every == 0:
            with torch.no_grad():
                v = float(_loss(model, theta, val_batch))
            history.append((step + 1, v))
            bar.set_postfix(val=f"{v:.4f}")
            if v < best_val:
                best, best_val, bad = theta.detach().clone(), v, 0
            else:
                bad += 1
                if bad >= config.patience:
                    break
    bar.close()
    record = {"val_loss": best_val, "initial_val_loss": initial, "improved": best_val < initial,
              "steps": step + 1, "history": history,
              "cities": {d.city.name: d.n_nodes for d in sources}, "balance": config.balance}
    return best[0].cpu(), record


@dataclass
class Anchor:
    """A trained anchor: its parameters ``[P]`` (CPU, float32) and the record of its training
    (:func:`train_anchor`; ``identity``: the settings and cities it was fitted with, when fitted by
    :func:`fit_anchor`). Saved as one file, ``folder/anchor.safetensors``."""

    params: torch.Tensor
    record: dict[str, Any]

    def save(self, folder: str | Path) -> Path:
        """Write ``folder/anchor.safetensors`` (atomically); returns the file."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        return save_tensors(folder / FILE, {"params": self.params.float().cpu()},
                            {"format": "gpdiff.anchor", **self.record})

    @classmethod
    def load(cls, folder: str | Path) -> Anchor:
        """The anchor a :meth:`save` wrote into ``folder``. Raises :class:`GpdiffError` when there is none."""
        path = Path(folder) / FILE
        if not path.is_file():
            raise GpdiffError(f"{path} does not exist; the anchor has not been trained there.")
        tensors, meta = load_tensors(path)
        if meta.pop("format", None) != "gpdiff.anchor":
            raise GpdiffError(f"{path} is not a gpdiff anchor.")
        return cls(tensors["params"].float(), meta)


def fit_anchor(sources: Sequence[City], config: AnchorConfig | None = None, *, model: BaseModelConfig | None = None,
               window: WindowConfig | None = None, split: SourceSplit | None = None, seed: int = 0,
               device: str = "auto", progress: bool = True, workdir: str | Path | None = None) -> Anchor:
    """The anchor stage: one base model trained on every node of ``sources`` (:func:`train_anchor`).

    ``config``: how it trains; ``model``: the base model; ``window``: the windows' shape; ``split``: the
    source cities' train/val/test fractions (defaults: each config's own). ``workdir``: a folder to save it in; one that already
    holds an anchor of the same settings and cities is loaded instead of retrained. Raises
    :class:`GpdiffError` for unusable sources, or a ``workdir`` holding an anchor of other settings."""
    config, window = config or AnchorConfig(), window or WindowConfig()
    arch, split = model or BaseModelConfig(), split or SourceSplit()
    base = arch.build(window)
    identity = yaml_safe({"model": arch.to_dict(), "source_split": asdict(split), "window": vars(window).copy(),
                          "anchor": vars(config).copy(), "seed": seed, "cities": [c.name for c in sources]})
    if workdir is not None and (Path(workdir) / FILE).is_file():
        found = Anchor.load(workdir)
        if found.record.get("identity") == identity:
            return found
        raise GpdiffError(f"{Path(workdir) / FILE} holds an anchor trained with other settings or cities; use "
                          f"another folder, or delete {Path(workdir) / FILE} to retrain it.")
    data = prepare_cities(sources, window, split, base, resolve_device(device))
    params, record = train_anchor(base, data, config, seed, progress)
    anchor = Anchor(params, {**record, "identity": identity})
    if workdir is not None:
        anchor.save(workdir)
    return anchor
