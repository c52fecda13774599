"""What every prompt encoder shares: a config dataclass, ``fit``, ``encode``, and a self-describing folder.

An encoder folder holds ``config.yaml`` (kind, name, config, what it was fitted on) and
``weights.safetensors`` (its fitted state: network weights, feature statistics). Loading needs
nothing but the folder: :meth:`PromptEncoder.load` reads the name and picks the class.
"""

from __future__ import annotations

import dataclasses
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch

from gpdiff.data.city import City
from gpdiff.data.splits import Segment
from gpdiff.utils.config import from_mapping
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import load_tensors, read_yaml, save_tensors, write_yaml, yaml_safe

ENCODER_FORMAT = "gpdiff.prompt_encoder"
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.yaml"

E = TypeVar("E", bound="PromptEncoder")


class PromptEncoder(ABC):
    """A node prompt encoder. Subclasses set ``kind``, ``name`` and ``config_class``."""

    kind: ClassVar[str] = ""  # "temporal" or "spatial"
    name: ClassVar[str] = ""
    config_class: ClassVar[type] = object

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_class()
        self.fitted = False
        self.seed = 0  # the seed of the last fit (encoders that sample while encoding reuse it)
        self.info: dict[str, Any] = {}  # what it was fitted on (with the seed), training summary

    # ------------------------------------------------------------------ interface
    @property
    @abstractmethod
    def dim(self) -> int:
        """Width of the prompt vectors."""

    def fit(self: E, cities: Sequence[City], segments: Sequence[Segment], progress: bool = False,
            seed: int = 0) -> E:
        """Fit on the given (source) cities, each restricted to its segment. Returns ``self``.

        ``seed`` seeds every random choice of the fit; it is recorded in :attr:`info` and kept for
        :meth:`encode`.
        """
        if not cities or len(cities) != len(segments):
            raise GpdiffError("fit needs at least one city and exactly one (training) segment per city.")
        self.seed = seed
        self._fit(cities, segments, progress)
        self.info["seed"] = seed
        self.fitted = True
        return self

    @abstractmethod
    def _fit(self, cities: Sequence[City], segments: Sequence[Segment], progress: bool) -> None:
        """Fit the state on ``cities`` (at least one, one segment each) with :attr:`seed`; set :attr:`info`."""

    @abstractmethod
    def encode(self, city: City, segment: Segment) -> tuple[np.ndarray, list[str]]:
        """Prompts ``[N, dim]`` float32 of all nodes of ``city`` from ``segment`` alone, plus notes."""

    @abstractmethod
    def state(self) -> dict[str, torch.Tensor]:
        """Fitted tensors to save."""

    @abstractmethod
    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`state` returned."""

    # ------------------------------------------------------------------ storage
    def _require_fitted(self) -> None:
        if not self.fitted:
            raise GpdiffError(f"the {self.name!r} {self.kind} prompt encoder is not fitted; call fit() or load().")

    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``config.yaml`` and ``weights.safetensors`` into ``folder``."""
        self._require_fitted()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_tensors(folder / WEIGHTS_FILE, self.state(), {"format": ENCODER_FORMAT, "name": self.name})
        write_yaml(folder / CONFIG_FILE, {
            "format": ENCODER_FORMAT, "kind": self.kind, "name": self.name, "dim": self.dim,
            "config": yaml_safe(dataclasses.asdict(self.config)), "info": yaml_safe(self.info),
        })
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> PromptEncoder:
        """Load any encoder folder written by :meth:`save` (the class comes from ``config.yaml``)."""
        # the registries live in the package, which imports this module
        from gpdiff.prompts import get_encoder_class

        folder = Path(folder)
        doc = read_yaml(folder / CONFIG_FILE)
        if not isinstance(doc, dict) or doc.get("format") != ENCODER_FORMAT:
            raise GpdiffError(f"{folder / CONFIG_FILE} is not a prompt encoder config (written by "
                              "`gpdiff prompts fit`).")
        klass = get_encoder_class(doc["kind"], doc["name"])
        if cls is not PromptEncoder and not issubclass(klass, cls):
            raise GpdiffError(f"{folder} holds a {doc['name']!r} encoder, not a {cls.name!r} one.")
        enc = klass(from_mapping(klass.config_class, doc.get("config"), "config", str(folder / CONFIG_FILE),
                                 upgrade=True))  # an encoder saved by an older gpdiff
        tensors, _ = load_tensors(folder / WEIGHTS_FILE)
        enc.load_state(tensors)
        enc.info = dict(doc.get("info") or {})
        enc.seed = int(enc.info.get("seed", 0))
        enc.fitted = True
        return enc


def check_segment(city: City, segment: Segment) -> None:
    """Raise if ``segment`` is empty or outside the city's time axis."""
    if not (0 <= segment.start < segment.stop <= city.n_steps):
        raise GpdiffError(f"{city.name}: segment [{segment.start}, {segment.stop}) is empty or outside the "
                          f"series (0..{city.n_steps} steps).")
