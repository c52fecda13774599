"""Run directories made of stages that are computed once.

A stage writes its outputs into ``RUN/NAME/`` and, when it finishes, ``RUN/NAME/stage.yaml`` with the
stage's key (a hash of its config and of the keys of the stages it read), the config itself, the
seed, library versions and the wall time. Rerunning a stage whose key matches the finished one
loads it instead of recomputing; an unfinished stage (interrupted) starts again in its folder, where
trainers find their own checkpoints and resume; a stage whose inputs changed is cleared and recomputed
(``RUN/NAME/.started`` records which key the folder's contents belong to).
"""

from __future__ import annotations

import hashlib
import json
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpdiff.io import atomic_write_text, read_yaml, write_yaml


def versions() -> dict[str, str]:
    import diffusers
    import numpy
    import torch

    import gpdiff

    found = {"gpdiff": gpdiff.__version__, "python": platform.python_version(), "torch": torch.__version__,
             "numpy": numpy.__version__, "diffusers": diffusers.__version__, "platform": platform.platform()}
    return {k: str(v) for k, v in found.items()}  # torch's version is a str subclass YAML cannot write


def key_of(config: Any) -> str:
    """Stable short hash of a JSON-able config."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass
class Stage:
    name: str
    path: Path
    key: str
    cached: bool  # True when a finished stage with the same key was found


class Run:
    """A run directory; ``with run.stage(name, config) as st:`` computes or reuses one stage."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.timings: dict[str, float] = {}

    def finished(self, name: str, key: str) -> bool:
        f = self.root / name / "stage.yaml"
        return f.is_file() and (read_yaml(f) or {}).get("key") == key

    @contextmanager
    def stage(self, name: str, config: dict[str, Any], seed: int | None = None) -> Iterator[Stage]:
        key = key_of(config)
        path = self.root / name
        cached = self.finished(name, key)
        started = path / ".started"
        if not cached and path.exists() and (not started.is_file() or started.read_text().strip() != key):
            shutil.rmtree(path)  # made from other inputs: neither its result nor its checkpoints apply
        path.mkdir(parents=True, exist_ok=True)
        if not cached:
            atomic_write_text(started, key)
        t0 = time.perf_counter()
        st = Stage(name, path, key, cached)
        yield st
        if cached:
            self.timings[name] = float((read_yaml(path / "stage.yaml") or {}).get("wall_s", 0.0))
            return
        wall = time.perf_counter() - t0
        self.timings[name] = wall
        write_yaml(path / "stage.yaml", {"stage": name, "key": key, "seed": seed, "wall_s": round(wall, 3),
                                         "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                         "versions": versions(), "config": json.loads(json.dumps(config, default=str))})
