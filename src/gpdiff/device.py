"""Choosing the torch device once, the same way for every stage."""

from __future__ import annotations

import torch

from gpdiff.errors import GpdiffError


def resolve_device(device: str) -> torch.device:
    """``auto`` (CUDA when available), ``cpu``, ``cuda``, ``cuda:1``, ... -> a torch device."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise GpdiffError(f"unknown device {device!r}; use auto, cpu or cuda[:i].") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GpdiffError(f"device {device!r} requested but CUDA is not available; use --device cpu.")
    return dev
