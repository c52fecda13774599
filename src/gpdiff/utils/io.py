"""Small file helpers shared by every stage: atomic writes, YAML, safetensors with metadata."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import save as st_save_torch

from gpdiff.utils.errors import GpdiffError, disk_full, is_disk_full

_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    An interrupted write leaves the old file (or none), never a half-written one. Every file gpdiff
    writes (stages, checkpoints, reports, cities, forecasters) goes through here.

    Raises :class:`GpdiffError` naming ``path`` when the disk is full or the quota is spent
    (``ENOSPC`` / ``EDQUOT``, :func:`gpdiff.utils.errors.disk_full`); the temporary file is removed and the
    old file is left as it was. Other ``OSError`` exceptions propagate unchanged.
    """
    path = Path(path)
    tmp: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; use the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if is_disk_full(exc):
            raise disk_full(path, exc) from None  # type: ignore[arg-type]
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def link_if_same(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> bool:
    """Make ``dst`` a hard link to ``src`` when both are files with the same bytes, so the disk holds
    them once; ``True`` when they are one file afterwards (linked now or before).

    Safe for gpdiff's files: every write replaces a file by a rename (:func:`atomic_write_bytes`),
    which gives the written path a new file and leaves the other path's bytes as they were; deleting
    either path leaves the other whole, and a copy of either folder copies the bytes. Where a link
    cannot be made (another file system, one without hard links, too many links), ``dst`` stays the
    copy it was and this returns ``False``; a missing file or other bytes also return ``False``."""
    import filecmp

    src, dst = Path(src), Path(dst)
    if not (src.is_file() and dst.is_file()):
        return False
    if os.path.samefile(src, dst):
        return True
    if not filecmp.cmp(src, dst, shallow=False):
        return False
    tmp = dst.with_name(f".{dst.name}.link-{os.getpid()}")
    try:
        tmp.unlink(missing_ok=True)
        os.link(src, tmp)
        os.replace(tmp, dst)
    except OSError:
        tmp.unlink(missing_ok=True)
        return False
    return True


def yaml_safe(obj: Any) -> Any:
    """``obj`` as plain YAML-safe (and JSON-able) data: dataclass instances (configs) as dicts, dict
    keys as strings, tuples as lists, numpy scalars as Python numbers, anything else that is not
    ``None``/bool/int/float/str as its ``str``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return yaml_safe(dataclasses.asdict(obj))
    if isinstance(obj, np.generic):  # before the Python types: np.float64 is a float yaml cannot write
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if isinstance(obj, Mapping):
        return {str(k): yaml_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [yaml_safe(v) for v in obj]
    return str(obj)


def write_yaml(path: str | os.PathLike[str], data: Any) -> Path:
    return atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


def read_yaml(path: str | os.PathLike[str]) -> Any:
    path = Path(path)
    if not path.is_file():
        raise GpdiffError(f"{path} does not exist; check the path.")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise GpdiffError(f"{path} is not UTF-8 text; save it as UTF-8 (a YAML file).") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise GpdiffError(f"{path} is not valid YAML{where}: {problem}.") from None


def save_tensors(path: str | os.PathLike[str], tensors: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, Any] | None = None) -> Path:
    """Save tensors to safetensors atomically; ``metadata`` values are JSON-encoded."""
    meta = {k: json.dumps(v, sort_keys=True) for k, v in (metadata or {}).items()}
    seen: set[int] = set()
    plain = {}
    for k, v in tensors.items():
        v = v.detach().contiguous().cpu()
        if v.numel() and v.data_ptr() in seen:  # safetensors refuses tensors that share memory
            v = v.clone()
        seen.add(v.data_ptr())
        plain[k] = v
    data = _sorted_metadata(st_save_torch(plain, metadata=meta))
    return atomic_write_bytes(path, data)


def _sorted_metadata(data: bytes) -> bytes:
    """safetensors bytes with the header's ``__metadata__`` keys in sorted order.

    safetensors writes the metadata from a Rust ``HashMap``, whose order changes from one process to
    the next, so the same tensors and metadata gave different bytes (a rebuilt pretrained model
    differed from the shipped one in its header only). Reordering keeps the header's length, so the
    data offsets are untouched; if the header does not re-encode to exactly its own bytes, the file
    is returned as written."""
    n = int.from_bytes(data[:8], "little")
    raw = data[8:8 + n]
    text = raw.rstrip(b" ").decode("utf-8")
    header = json.loads(text, object_pairs_hook=dict)
    dump = functools.partial(json.dumps, separators=(",", ":"), ensure_ascii=False)
    if "__metadata__" not in header or dump(header).encode() != text.encode():
        return data
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    new = dump(header).encode()
    return data[:8] + new + raw[len(new):] + data[8 + n:]


def load_tensors(path: str | os.PathLike[str], device: str | torch.device = "cpu"
                 ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a safetensors file written by :func:`save_tensors`: (tensors, decoded metadata)."""
    path = Path(path)
    if not path.is_file():
        raise GpdiffError(f"{path} does not exist; check the path (did the stage that writes it finish?).")
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            raw = f.metadata() or {}
    except Exception as exc:  # noqa: BLE001
        raise GpdiffError(f"{path} is not a readable safetensors file ({exc}); delete it and rerun.") from None
    meta = {}
    for k, v in raw.items():
        try:
            meta[k] = json.loads(v)
        except json.JSONDecodeError:
            meta[k] = v
    return tensors, meta
