"""Choosing the torch device once, the same way for every stage."""

from __future__ import annotations

import os

import torch

from gpdiff.utils.errors import GpdiffError


def check_device_name(device: str) -> None:
    """:class:`GpdiffError` unless ``device`` is ``auto`` or a torch device name (``cpu``, ``cuda``,
    ``cuda:1``, ...); whether it exists on this machine is :func:`resolve_device`'s check."""
    if device == "auto":
        return
    try:
        torch.device(device)
    except RuntimeError:
        raise GpdiffError(f"unknown device {device!r}; use auto, cpu or cuda[:i].") from None


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``, ... -> a torch device.

    Under ``torchrun`` (:mod:`gpdiff.utils.distributed`), ``auto`` and ``cuda`` mean this process's own
    GPU, ``cuda:LOCAL_RANK``."""
    from gpdiff.utils.distributed import launched, local_rank

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and launched() and torch.cuda.is_available():
        device = f"cuda:{local_rank()}"
    elif device.startswith("cuda:") and launched() and int(os.environ.get("LOCAL_WORLD_SIZE", "1")) > 1:
        raise GpdiffError(f"device {device!r} under torchrun would put every process of this machine on one GPU; "
                          "use --device cuda (or auto): each process then takes its own, cuda:LOCAL_RANK.")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise GpdiffError(f"unknown device {device!r}; use auto, cpu or cuda[:i].") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GpdiffError(f"device {device!r} requested but CUDA is not available; use --device cpu.")
    return dev
