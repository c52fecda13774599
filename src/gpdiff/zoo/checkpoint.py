"""The state of a batched per-node training, and its checkpoints (:class:`gpdiff.zoo.nodetrain.NodeTrainer`).

:class:`TrainState` is everything training needs to continue; :class:`Checkpoint` is this rank's file
of it (``OUT/checkpoint.safetensors``, ``OUT/checkpoint.rank{r}-of-{world}.safetensors`` when
sharded): it resumes a state whose identity (config, seed, data, starting parameters, shard) matches,
discards a damaged file, and refuses a different training or a different number of processes with a
message naming the difference. :class:`CheckpointWriter` writes from a background thread.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import load_tensors, save_tensors

CHECKPOINT = "checkpoint.safetensors"


@dataclass
class TrainState:
    """Everything training needs to continue; rows are this rank's nodes (all nodes in one process),
    in ascending global order (:attr:`NodeTrainer.rows`)."""

    params: dict[str, torch.Tensor]  # current parameters
    best: dict[str, torch.Tensor]  # best parameters so far (validation)
    exp_avg: dict[str, torch.Tensor]  # Adam moments
    exp_avg_sq: dict[str, torch.Tensor]
    best_val: torch.Tensor  # [N] best early-stopping validation loss
    best_epoch: torch.Tensor  # [N] epoch (1-based) of the best loss, 0 = initial parameters
    bad_epochs: torch.Tensor  # [N] epochs since the last improvement
    active: torch.Tensor  # [N] bool, still training
    epochs: torch.Tensor  # [N] epochs trained
    epoch: int = 0  # finished epochs
    step: int = 0  # Adam steps taken by every node still training

    GROUPS = ("params", "best", "exp_avg", "exp_avg_sq")
    VECTORS = ("best_val", "best_epoch", "bad_epochs", "active", "epochs")

    @classmethod
    def fresh(cls, init: dict[str, torch.Tensor]) -> TrainState:
        n = next(iter(init.values())).shape[0]
        dev = next(iter(init.values())).device
        return cls(params={k: v.clone() for k, v in init.items()}, best={k: v.clone() for k, v in init.items()},
                   exp_avg={k: torch.zeros_like(v) for k, v in init.items()},
                   exp_avg_sq={k: torch.zeros_like(v) for k, v in init.items()},
                   best_val=torch.full((n,), math.inf, device=dev), best_epoch=torch.zeros(n, dtype=torch.long, device=dev),
                   bad_epochs=torch.zeros(n, dtype=torch.long, device=dev),
                   active=torch.ones(n, dtype=torch.bool, device=dev), epochs=torch.zeros(n, dtype=torch.long, device=dev))

    def tensors(self) -> dict[str, torch.Tensor]:
        """A copy of the state as named tensors (what :meth:`save` writes)."""
        out = {f"{g}.{k}": v.detach().clone() for g in self.GROUPS for k, v in getattr(self, g).items()}
        out.update({k: getattr(self, k).clone() for k in self.VECTORS})
        out["active"] = self.active.to(torch.uint8)
        return out

    @classmethod
    def load(cls, path: Path, device: torch.device) -> tuple[TrainState, dict[str, Any]]:
        tensors, meta = load_tensors(path, device=device)
        groups = {g: {k[len(g) + 1:]: v for k, v in tensors.items() if k.startswith(g + ".")} for g in cls.GROUPS}
        vectors = {k: tensors[k] for k in cls.VECTORS}
        vectors["active"] = vectors["active"].bool()
        return cls(**groups, **vectors, epoch=int(meta["epoch"]), step=int(meta["step"])), meta


class CheckpointWriter:
    """Writes checkpoints in a background thread, so that the next epoch trains meanwhile.

    :meth:`submit` takes a copy of the state and returns at once; a second submit first waits for
    the previous write (at most one in flight). Every write is atomic (:func:`gpdiff.utils.io.save_tensors`).
    """

    def __init__(self) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="nodetrain-checkpoint")
        self._pending = None

    def submit(self, state: TrainState, path: Path, meta: dict[str, Any]) -> None:
        self.wait()
        tensors, meta = state.tensors(), {**meta, "epoch": state.epoch, "step": state.step}
        self._pending = self._pool.submit(save_tensors, path, tensors, meta)

    def wait(self) -> None:
        if self._pending is not None:
            self._pending.result()  # re-raises a failed write
            self._pending = None

    def close(self) -> None:
        self.wait()
        self._pool.shutdown()



class Checkpoint:
    """This rank's checkpoint file in ``out_dir`` for a training whose identity is ``identity`` (a
    mapping with a ``config`` mapping; see :meth:`NodeTrainer.identity`)."""

    def __init__(self, out_dir: Path, identity: dict[str, Any], rank: int = 0, world: int = 1) -> None:
        self.out_dir, self.identity = Path(out_dir), identity
        self.path = self.out_dir / (CHECKPOINT if world == 1
                                    else CHECKPOINT.replace(".safetensors", f".rank{rank}-of-{world}.safetensors"))

    @property
    def meta(self) -> dict[str, Any]:
        return {"identity": self.identity}

    def resume(self, device: torch.device) -> TrainState | None:
        """The saved state, or ``None`` (no file, or a damaged one, which is deleted: a checkpoint is never
        trusted). Raises :class:`GpdiffError` for checkpoints of another number of processes or of a
        training with another identity."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        others = sorted(p.name for p in self.out_dir.glob(CHECKPOINT.replace(".safetensors", "*.safetensors"))
                        if p.name != self.path.name)
        if others and not self.path.exists():
            raise GpdiffError(f"{self.out_dir} holds checkpoints of a training on another number of processes "
                              f"({', '.join(others)}); resume it with as many processes as it had, or delete them "
                              "to start over.")
        if not self.path.exists():
            return None
        try:
            state, old = TrainState.load(self.path, device)
        except (GpdiffError, KeyError, ValueError):
            self.path.unlink()
            return None
        self._check(old)
        return state

    def _check(self, meta: dict[str, Any]) -> None:
        mine, theirs = self.identity, meta.get("identity", {})
        if mine == theirs:
            return
        diffs = [f"{key}: {theirs.get(key)} -> {value}" for key, value in mine.items()
                 if key != "config" and value != theirs.get(key)]
        diffs += [f"{key}: {theirs.get('config', {}).get(key)} -> {value}" for key, value in mine["config"].items()
                  if theirs.get("config", {}).get(key) != value]
        raise GpdiffError(
            f"{self.path} was written by a training run with a different setup ({'; '.join(diffs)}). "
            f"Use another output folder, or delete {self.path} to start over."
        )
