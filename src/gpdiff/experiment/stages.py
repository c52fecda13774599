"""Run directories made of stages that are computed once.

A stage writes its outputs into ``RUN/NAME/`` and, when it finishes, ``RUN/NAME/stage.yaml`` with the
stage's key, the config itself, the seed, library versions and the wall time. The key is derived,
never built by hand: a hash of

- the stage's own config (the config sections it reads, as dataclasses or plain values),
- the keys of the stages it reads (its ``inputs``), so a change anywhere above recomputes it,
- fingerprints of the data it reads (``data``: e.g. a city's content hash),
- :func:`gpdiff.utils.hashing.code_fingerprint`, so a stage computed by other gpdiff code (an upgrade,
  an edit) is recomputed instead of silently reused.

Rerunning a stage whose key matches the finished one loads it instead of recomputing (when every
file it wrote, listed with its size and content hash in ``stage.yaml``, is still there unchanged;
a deleted, truncated or rewritten output makes it compute again); an unfinished stage
(interrupted) starts again in its folder, where trainers find their own checkpoints and resume; a
stage whose key changed is cleared and recomputed (``RUN/NAME/.started`` records which key the
folder's contents belong to).

A finished stage keeps what later stages and the report read, not the resume checkpoints of its
trainers (files named :data:`CHECKPOINTS`: :data:`gpdiff.zoo.checkpoint.CHECKPOINT`, the denoiser's
``checkpoint.safetensors``); ``Run(keep_checkpoints=True)`` (``keep_checkpoints: true`` in the run
config) keeps them for debugging. The pipeline leaves out more of what nothing reads or what is
recomputed bit for bit (:mod:`gpdiff.experiment.pipeline`: the diffusion stage's non-EMA weights, a
method's test forecasts).

One process at a time computes a stage: ``RUN/.NAME.lock`` (``CACHE/NAME/.KEY.lock``) is an OS file
lock (:mod:`filelock`) held while the stage runs. A second process (another ``gpdiff run`` or
``bench`` on the same ``--out`` or ``--cache``) says that it waits, waits, and then reuses what the
first one finished. The operating system releases the lock when its process ends, killed or not,
so a lock left by a crash never blocks.

With a ``cache`` folder (``gpdiff bench``: one per suite), a stage lives in ``CACHE/NAME/KEY/``
instead, so every run of the suite whose stage has the same key shares one computation; the run
directory's ``stages.yaml`` says where each of its stages is.
"""

from __future__ import annotations

import platform
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from gpdiff.utils import hashing
from gpdiff.utils.io import atomic_write_text, read_yaml, write_yaml, yaml_safe

CHECKPOINTS = "checkpoint*.safetensors"  # the resume state of a stage's trainers (glob, anywhere in the stage)


def versions() -> dict[str, str]:
    """Versions of gpdiff, Python and the libraries whose numerics a result depends on."""
    import diffusers
    import numpy
    import torch

    import gpdiff

    found = {"gpdiff": gpdiff.__version__, "python": platform.python_version(), "torch": torch.__version__,
             "numpy": numpy.__version__, "diffusers": diffusers.__version__, "platform": platform.platform()}
    return {k: str(v) for k, v in found.items()}  # torch's version is a str subclass YAML cannot write


@dataclass
class Stage:
    name: str
    path: Path
    key: str
    cached: bool  # True when a finished stage with the same key was found


def stage_key(config: Any, inputs: Sequence[Stage] = (), data: Mapping[str, str] | None = None) -> str:
    """The key of a stage: its config, the keys of its input stages, its data and the code (see module)."""
    return hashing.hash_json({"config": yaml_safe(config), "inputs": {s.name: s.key for s in inputs},
                              "data": dict(data or {}), "code": hashing.code_fingerprint()})


class Run:
    """A run directory; ``with run.stage(name, config, inputs) as st:`` computes or reuses one stage.

    ``computed`` and ``reused`` list the stage names in the order they were met (for reports and tests).
    ``keep_checkpoints`` keeps the trainers' resume checkpoints of finished stages (default: deleted);
    ``log`` receives a line when this process waits for another one computing the same stage.
    """

    def __init__(self, root: str | Path, cache: str | Path | None = None, keep_checkpoints: bool = False,
                 log: Callable[[str], Any] | None = None) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.cache = Path(cache) if cache is not None else None
        if self.cache is None:  # a list of cached stages from an earlier run of this folder no longer applies
            (self.root / "stages.yaml").unlink(missing_ok=True)
        self.keep_checkpoints = keep_checkpoints
        self.log = log or (lambda message: None)
        self.timings: dict[str, float] = {}
        self.computed: list[str] = []
        self.reused: list[str] = []
        self.waited: list[str] = []  # stages this process waited for (another process held them)
        self.paths: dict[str, Path] = {}

    def path_of(self, name: str, key: str) -> Path:
        """Where stage ``name`` with ``key`` lives: ``RUN/NAME`` or, with a cache, ``CACHE/NAME/KEY``."""
        return self.root / name if self.cache is None else self.cache / name / key

    @staticmethod
    def lock_of(path: Path) -> Path:
        """The lock file of the stage folder ``path``: ``.NAME.lock`` beside it (outside, since a stage
        folder may be cleared while the lock is held)."""
        return path.with_name(f".{path.name}.lock")

    def finished(self, name: str, key: str) -> bool:
        """Whether stage ``name`` finished with ``key`` and every file it wrote is still there, at the
        size and with the content hash it had (a deleted, truncated or changed output makes the stage
        compute again)."""
        path = self.path_of(name, key)
        try:
            record = read_yaml(path / "stage.yaml") if (path / "stage.yaml").is_file() else None
        except Exception:  # noqa: BLE001 - an unreadable stage.yaml means: not finished, recompute
            return False
        if not isinstance(record, dict) or record.get("key") != key:
            return False
        files = record.get("files") or {}
        if not isinstance(files, dict):
            return False
        for rel, saved in files.items():
            f = path / rel
            if not isinstance(saved, dict) or not f.is_file() or f.stat().st_size != saved.get("bytes"):
                return False  # the size first: cheap, and catches truncation without reading
            if hashing.hash_file(f) != saved.get("sha256"):
                return False
        return True

    @contextmanager
    def stage(self, name: str, config: Any, inputs: Sequence[Stage] = (), data: Mapping[str, str] | None = None,
              seed: int | None = None) -> Iterator[Stage]:
        key = stage_key(config, inputs, data)
        path = self.path_of(name, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.lock_of(path))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            self.log(f"[{name}] another gpdiff process is computing this stage in {path}; waiting for it "
                     f"(lock {lock.lock_file})")
            lock.acquire()  # released when that process finishes the stage, stops, or is killed
            self.waited.append(name)
        try:
            cached = self.finished(name, key)
            if name in self.waited:
                self.log(f"[{name}] the other process {'finished' if cached else 'stopped before finishing'} it; "
                         f"{'reusing it' if cached else 'computing it here (resuming from its checkpoints)'}")
            yield from self._enter(name, key, path, cached, config, inputs, data, seed)
        finally:
            lock.release()

    def _enter(self, name: str, key: str, path: Path, cached: bool, config: Any, inputs: Sequence[Stage],
               data: Mapping[str, str] | None, seed: int | None) -> Iterator[Stage]:
        """The body of :meth:`stage`, under the stage's lock."""
        started = path / ".started"
        if not cached and path.exists() and ((path / "stage.yaml").exists() or not started.is_file()
                                             or started.read_text().strip() != key):
            shutil.rmtree(path)  # other inputs, or a finished stage missing outputs: nothing in it applies
        path.mkdir(parents=True, exist_ok=True)
        if not cached:
            atomic_write_text(started, key)
        (self.reused if cached else self.computed).append(name)
        self.paths[name] = path
        if self.cache is not None:
            write_yaml(self.root / "stages.yaml", {n: str(p) for n, p in self.paths.items()})
        t0 = time.perf_counter()
        st = Stage(name, path, key, cached)
        yield st
        if cached:
            self.timings[name] = float((read_yaml(path / "stage.yaml") or {}).get("wall_s", 0.0))
            return
        wall = time.perf_counter() - t0
        self.timings[name] = wall
        resume = set() if self.keep_checkpoints else set(path.rglob(CHECKPOINTS))
        files = {str(f.relative_to(path)): {"bytes": f.stat().st_size, "sha256": hashing.hash_file(f)}
                 for f in sorted(path.rglob("*"))
                 if f.is_file() and f.name not in ("stage.yaml", ".started") and f not in resume}
        write_yaml(path / "stage.yaml", {"stage": name, "key": key, "seed": seed, "wall_s": round(wall, 3),
                                         "files": files,
                                         "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                         "inputs": {s.name: s.key for s in inputs}, "data": dict(data or {}),
                                         "code": hashing.code_fingerprint(), "versions": versions(),
                                         "config": yaml_safe(config)})
        for f in resume:  # after stage.yaml: a stage that could not be recorded (a full disk) can still resume
            f.unlink()


def folder_size(path: str | Path) -> int:
    """Bytes of every file under ``path`` (0 when it does not exist): what a run or a bench leaves on disk.
    A file with several hard links under ``path`` (a run's ``pretrained/`` denoiser weights and its
    diffusion stage's) counts once, as ``du`` counts it."""
    path = Path(path)
    if not path.is_dir():
        return 0
    sizes = {}
    for f in path.rglob("*"):
        if f.is_file() and not f.is_symlink():
            st = f.stat()
            sizes[(st.st_dev, st.st_ino)] = st.st_size
    return sum(sizes.values())


def human_size(n: int) -> str:
    """``n`` bytes as a short human string: ``512 B``, ``3.4 kB``, ``27.1 MB``, ``1.2 GB`` (powers of 1000)."""
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")
