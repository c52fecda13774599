"""Content hashes: one place for every fingerprint gpdiff compares (stage keys, data, checkpoints, code).

All return the first 16 hex digits of a SHA-256, which is plenty to tell runs apart.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

DIGITS = 16


def hash_json(obj: Any) -> str:
    """Hash of a JSON-able value (dict keys sorted; anything else by ``str``)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:DIGITS]


def hash_arrays(*arrays: np.ndarray | torch.Tensor, extra: Any = None) -> str:
    """Hash of array contents and shapes (tensors are hashed as float32 on the CPU), plus ``extra``."""
    h = hashlib.sha256()
    for a in arrays:
        if isinstance(a, torch.Tensor):
            a = a.detach().float().cpu().numpy()
        a = np.ascontiguousarray(a)
        h.update(f"{a.shape}|{a.dtype}".encode())
        h.update(a.tobytes())
    if extra is not None:
        h.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return h.hexdigest()[:DIGITS]


@functools.cache
def code_fingerprint() -> str:
    """gpdiff's version plus a hash of every Python source file of the installed package.

    Part of every stage key (:mod:`gpdiff.experiment.stages`): after an upgrade, or any edit of the code, a
    stage computed by other code is recomputed instead of silently reused.
    """
    import gpdiff

    root = Path(gpdiff.__file__).resolve().parent
    h = hashlib.sha256(str(gpdiff.__version__).encode())
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(path.read_bytes())
    return f"{gpdiff.__version__}+{h.hexdigest()[:DIGITS]}"


def hash_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hash of a file's bytes (read in ``chunk``-byte pieces): what :mod:`gpdiff.experiment.stages` records of
    every output, so that a file changed at the same size is noticed."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()[:DIGITS]
