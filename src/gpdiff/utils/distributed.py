"""PyTorch's own distributed runtime (``torchrun`` / ``torch.distributed``), the parts gpdiff uses.

gpdiff never starts processes itself: a command started by ``torchrun --nproc_per_node=N ...``
finds ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` in its environment, and :func:`init` joins the
process group (``gloo`` on CPU, ``nccl`` on CUDA). Started without torchrun, every function here
is the single-process no-op (rank 0 of 1), so the same code runs either way.

What runs distributed (README, "More than one machine"):

- the model zoo, sharded by node (:class:`gpdiff.zoo.nodetrain.NodeTrainer` with ``shard``): each rank
  trains its blocks of nodes, rank 0 gathers one collection (:func:`gather_rows`);
- the denoiser, data-parallel (``DistributedDataParallel`` in :func:`gpdiff.diffusion.train.fit`).

Everything else (data checks, prompts, generation, the methods, reports) runs on rank 0; the other
ranks receive what they need by :func:`broadcast_object`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from gpdiff.utils.errors import GpdiffError

T = TypeVar("T")
# How long a rank may wait for the others: rank 0 runs whole stages (prompts, the methods, the next
# experiment of a suite) alone while the other ranks wait. GPDIFF_DIST_TIMEOUT_MINUTES overrides it.
TIMEOUT_ENV = "GPDIFF_DIST_TIMEOUT_MINUTES"
_control: Any = None  # the gloo group the control messages go through (rank 0 -> the others)


def timeout() -> timedelta:
    return timedelta(minutes=float(os.environ.get(TIMEOUT_ENV, 7 * 24 * 60)))


def launched() -> bool:
    """True in a process started by ``torchrun`` with more than one process in all."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """True once this process has joined a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def init(device: torch.device | None = None) -> None:
    """Join the process group torchrun describes (no-op without torchrun or when already joined).

    ``device``: the device this rank computes on (``nccl`` for CUDA, else ``gloo``). Raises
    :class:`GpdiffError` when the environment is only partly set (``WORLD_SIZE`` without
    ``MASTER_ADDR``), naming the fix.
    """
    if not launched() or (dist.is_available() and dist.is_initialized()):
        return
    missing = [k for k in ("RANK", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise GpdiffError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} is set but {', '.join(missing)} is not; start "
                          "distributed runs with `torchrun --nproc_per_node=N -m gpdiff ...`, or unset WORLD_SIZE.")
    global _control
    backend = "nccl" if device is not None and device.type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, timeout=timeout())
    # control messages (flags, folders, the anchor, the zoo) over gloo: a rank waiting for rank 0
    # then sleeps in a socket read instead of spinning in a CUDA synchronisation
    _control = dist.new_group(backend="gloo", timeout=timeout()) if backend == "nccl" else None


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    """This process's index on its machine (torchrun's ``LOCAL_RANK``; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if launched() else 0


def barrier() -> None:
    if active():
        dist.barrier()


def broadcast_object(obj: T, src: int = 0) -> T:
    """``obj`` from rank ``src`` on every rank (pickled; for configs, flags and modest tensors)."""
    if not active():
        return obj
    box = [obj if rank() == src else None]
    dist.broadcast_object_list(box, src=src, group=_control)
    return box[0]  # type: ignore[return-value]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in a single process)."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj, group=_control)
    return out


def gather_rows(values: Mapping[str, torch.Tensor], rows: torch.Tensor, n_rows: int
                ) -> dict[str, torch.Tensor] | None:
    """Assemble row-sharded tensors on rank 0.

    Each rank holds ``values[k]`` of shape ``[len(rows), *shape_k]``, the rows ``rows`` (global row
    indices, disjoint across ranks, together ``0 .. n_rows-1``) of a ``[n_rows, *shape_k]`` tensor.
    Rank 0 returns the whole tensors (on its device); the other ranks return ``None``. Tensors are
    padded to the largest share and sent with ``dist.gather``, one tensor at a time (rank 0 holds
    the pieces of one tensor and the assembled result at a time). Single process: ``values`` put
    in row order.
    """
    if not active():
        return {k: _place(v, rows, n_rows) for k, v in values.items()}
    sizes = [int(s) for s in all_gather_object(int(rows.numel()))]
    width = max(sizes)
    all_rows = _gather_padded(rows.long(), width, sizes)
    out: dict[str, torch.Tensor] = {}
    for k, v in values.items():
        parts = _gather_padded(v, width, sizes)
        if parts is not None and all_rows is not None:
            out[k] = _place(torch.cat(parts), torch.cat(all_rows), n_rows)
    if rank() != 0:
        return None
    return out


def _gather_padded(v: torch.Tensor, width: int, sizes: list[int]) -> list[torch.Tensor] | None:
    pad = torch.zeros((width - v.shape[0], *v.shape[1:]), dtype=v.dtype, device=v.device)
    mine = torch.cat([v, pad]).contiguous()
    bins = [torch.empty_like(mine) for _ in sizes] if rank() == 0 else None
    dist.gather(mine, bins, dst=0)
    return None if bins is None else [b[:s] for b, s in zip(bins, sizes)]


def _place(v: torch.Tensor, rows: torch.Tensor, n_rows: int) -> torch.Tensor:
    if rows.numel() != n_rows or sorted(rows.tolist()) != list(range(n_rows)):
        raise AssertionError(f"gather_rows: the shards cover {rows.numel()} rows, not exactly 0..{n_rows - 1}.")
    out = torch.empty((n_rows, *v.shape[1:]), dtype=v.dtype, device=v.device)
    out[rows.to(v.device)] = v
    return out
