"""A source fit: what one comparison method learned from the source cities alone, before any target.

Some methods fit something on the sources that does not depend on the target (``pooled_linear``'s ridge
coefficients, ``knn_residual``'s neighbour count and shrinkage chosen on held-out source nodes,
``reptile``'s meta-learned start; :data:`gpdiff.methods.SOURCE_FITS`). A pretrained folder keeps them
(:mod:`gpdiff.diffusion.pretrained`), so that a forecaster, which has no source data, can run those
methods; ``gpdiff run`` makes them on the spot. Each is tensors plus a JSON-able record, one
safetensors file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import load_tensors, save_tensors

FORMAT = "gpdiff.source_fit"


@dataclass
class SourceFit:
    """``tensors`` (any shapes, the method's) and ``meta`` (JSON-able: the method's name under ``method``,
    its settings and seed, what it chose)."""

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """One safetensors file at ``path`` (atomic), the record in its header."""
        return save_tensors(path, {k: v.contiguous() for k, v in self.tensors.items()},
                            {"format": FORMAT, "record": self.meta})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SourceFit:
        """The fit :meth:`save` wrote; :class:`GpdiffError` for a file that is not one."""
        tensors, meta = load_tensors(path)
        if meta.get("format") != FORMAT:
            raise GpdiffError(f"{path} is not a gpdiff source fit (written by gpdiff pretrain).")
        return cls(tensors, dict(meta.get("record") or {}))
