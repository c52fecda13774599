"""The finished runs of a backtest on disk, so that an interrupted ``gpdiff backtest`` resumes.

A backtest is a list of runs, one per start day and method (:func:`gpdiff.forecaster.backtest.backtest`);
a run that has finished is written at once to ``FOLDER/<start day>-<method>.safetensors``: its point
forecasts per forecast day (``day_<k>``, ``[N, B, H]``, float64) and, in the metadata, its score rows and
the backtest's key. The key hashes everything a run's numbers depend on: the city's data, the settings
that every run shares (days, budget, blend, intervals, seed; not the list of methods or start days, so
a rerun that adds some reuses the others), the pretrained model and gpdiff's code
(:func:`gpdiff.utils.hashing.code_fingerprint`, as the stages of ``gpdiff run``). A rerun reads the runs
whose key matches and computes only the others; it gives the same result as one uninterrupted call.

Each file is written atomically (:func:`gpdiff.utils.io.save_tensors`), so a run is there whole or not
at all; a file that cannot be read, or that another backtest wrote, is recomputed and overwritten, with
a note, and never stops the backtest.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.hashing import code_fingerprint, hash_arrays, hash_json
from gpdiff.utils.io import load_tensors, save_tensors

PARTIAL = "partial"  # the folder under a backtest's output folder that holds its finished runs until it ends
Run = tuple[list[dict[str, Any]], dict[int, np.ndarray]]  # (score rows, forecasts [N, B, H] per day)


def backtest_key(city_fingerprint: str, config: Any, pretrained: Any | None) -> str:
    """The key of a backtest's runs: the city's content hash, ``config`` (a :class:`BacktestConfig`)
    without its ``methods`` and ``start_day``, the pretrained GPD (``None``: none; its anchor, sources
    and model card) and gpdiff's code."""
    shared = {k: v for k, v in dataclasses.asdict(config).items() if k not in ("methods", "start_day")}
    model = None
    if pretrained is not None:
        model = hash_arrays(pretrained.anchor, extra={"sources": pretrained.sources, "card": pretrained.card,
                                                     "architecture": pretrained.architecture})
    return hash_json({"city": city_fingerprint, "settings": shared, "pretrained": model, "code": code_fingerprint()})


@dataclasses.dataclass
class Checkpoint:
    """The finished runs of one backtest (``key``: :func:`backtest_key`) in ``folder``."""

    folder: Path
    key: str

    def path(self, start_day: int, method: str) -> Path:
        return self.folder / f"{start_day}-{method}.safetensors"

    def load(self, start_day: int, method: str, notes: list[str]) -> Run | None:
        """The finished run of ``method`` from ``start_day``, or ``None`` (not there, unreadable, or
        another backtest's: a note says which, and the run is computed again)."""
        path = self.path(start_day, method)
        if not path.is_file():
            return None
        try:
            tensors, meta = load_tensors(path)
        except GpdiffError:
            notes.append(f"{path.name} in {self.folder} cannot be read (a partial write?); computing that run again")
            return None
        if meta.get("key") != self.key or not isinstance(meta.get("rows"), list):
            notes.append(f"{path.name} in {self.folder} is from other settings, data, model or code; computing that "
                         "run again")
            return None
        forecasts = {int(k.removeprefix("day_")): v.numpy() for k, v in tensors.items()}
        return meta["rows"], forecasts

    def save(self, start_day: int, method: str, rows: list[dict[str, Any]], forecasts: dict[int, np.ndarray]) -> None:
        """Write one finished run (atomically)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"day_{k}": torch.from_numpy(np.ascontiguousarray(v, dtype=np.float64)) for k, v in forecasts.items()}
        save_tensors(self.path(start_day, method), tensors, {"key": self.key, "rows": rows})


def clear(folder: Path) -> None:
    """Remove the finished runs in ``folder`` (once the backtest's outputs are written), and the folder
    when nothing else is left in it."""
    if not folder.is_dir():
        return
    for path in folder.glob("*.safetensors"):
        path.unlink()
    if not any(folder.iterdir()):
        folder.rmdir()
