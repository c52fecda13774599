"""Node prompts: a spatial and a temporal vector per node, the conditioning of the parameter generator.

- :data:`TEMPORAL_ENCODERS`: ``masked_patch`` (self-supervised masked-patch Transformer, default),
  ``stats`` (hand-made series features) and ``none`` (all ones, the ablation). Input: a node's most
  recent ``days`` days inside a segment.
- :data:`SPATIAL_ENCODERS`: ``graph`` (structure + geography + attributes, default) and ``none``
  (all ones).
- :func:`fit_prompts` (the prompts stage) fits both, as :class:`PromptsConfig` names them, on the source
  cities' *training* segments; the :class:`PromptEncoders` it returns encodes any city from exactly the
  segment it is given, and saves to / loads from one folder.
- :class:`PromptSet` holds the prompts of a set of nodes, keyed by ``(city, node_id)``.

No leakage: a source node's prompt comes from its training segment (the last ``days`` days of it),
a target node's from its few-shot days (``target_split(...).train``); nothing else is read.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gpdiff.data.city import City
from gpdiff.data.splits import Segment, SourceSplit, target_split
from gpdiff.prompts.base import PromptEncoder
from gpdiff.prompts.none import NoneConfig, NoneEncoder, NoneTemporalEncoder
from gpdiff.prompts.spatial import GraphConfig, GraphEncoder
from gpdiff.prompts.stats import StatsConfig, StatsEncoder
from gpdiff.prompts.temporal import MaskedPatchConfig, MaskedPatchEncoder
from gpdiff.utils.config import from_mapping
from gpdiff.utils.errors import GpdiffError, unknown_name
from gpdiff.utils.io import load_tensors, read_yaml, save_tensors, write_yaml
from gpdiff.zoo.noderows import NodeRows

TEMPORAL_ENCODERS: dict[str, type[PromptEncoder]] = {"masked_patch": MaskedPatchEncoder, "stats": StatsEncoder,
                                                     "none": NoneTemporalEncoder}
SPATIAL_ENCODERS: dict[str, type[PromptEncoder]] = {"graph": GraphEncoder, "none": NoneEncoder}
PROMPTS_FORMAT = "gpdiff.prompts"
ENCODERS_FORMAT = "gpdiff.prompt_encoders"
PROMPTS_FILE = "prompts.safetensors"


def prompt_file(path: str | os.PathLike[str]) -> Path:
    """The prompt file ``path`` names: the path itself, or in a folder its ``prompts.safetensors``
    (``gpdiff prompts fit``) or else its only ``prompts*.safetensors`` (a run's ``prompts/`` and
    ``target_prompts/`` stages). :class:`GpdiffError` for a folder with none or several."""
    path = Path(path)
    if not path.is_dir() or (path / PROMPTS_FILE).is_file():
        return path / PROMPTS_FILE if path.is_dir() else path
    found = sorted(path.glob("prompts*.safetensors"))
    if len(found) != 1:
        what = "no prompt file" if not found else f"{len(found)} prompt files ({', '.join(f.name for f in found)})"
        raise GpdiffError(f"{path} holds {what}; pass the folder written by `gpdiff prompts fit`, a run's "
                          "prompts/ or target_prompts/ folder, or the prompt file itself.")
    return found[0]


def get_encoder_class(kind: str, name: str) -> type[PromptEncoder]:
    """The encoder class registered as ``name`` for ``kind`` (``"temporal"`` or ``"spatial"``)."""
    registry = {"temporal": TEMPORAL_ENCODERS, "spatial": SPATIAL_ENCODERS}.get(kind)
    if registry is None:
        raise GpdiffError(f"prompt encoder kind must be 'temporal' or 'spatial', got {kind!r}.")
    if name not in registry:
        raise unknown_name(f"{kind} prompt encoder", name, registry)
    return registry[name]


def make_encoder(kind: str, name: str, config: Any = None) -> PromptEncoder:
    """An unfitted encoder; ``config`` is its config dataclass, a dict of overrides, or None (defaults)."""
    klass = get_encoder_class(kind, name)
    if config is None or isinstance(config, dict):
        config = from_mapping(klass.config_class, config, "config", f"{kind} encoder {name!r}")
    return klass(config)


# --------------------------------------------------------------------------- prompt sets
@dataclass
class PromptSet(NodeRows):
    """Spatial ``[n, ds]`` and temporal ``[n, dt]`` prompts of ``n`` nodes, keyed by (city, node id)
    (lookup by key: :class:`~gpdiff.zoo.noderows.NodeRows`)."""

    spatial: torch.Tensor
    temporal: torch.Tensor
    node_ids: list[str]
    cities: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.spatial = torch.as_tensor(self.spatial, dtype=torch.float32)
        self.temporal = torch.as_tensor(self.temporal, dtype=torch.float32)
        self.node_ids = [str(v) for v in self.node_ids]
        self.cities = [str(v) for v in self.cities]
        n = len(self.node_ids)
        if self.spatial.dim() != 2 or self.temporal.dim() != 2:
            raise GpdiffError(f"prompts must be 2-D [n, dim]; got spatial {tuple(self.spatial.shape)}, "
                              f"temporal {tuple(self.temporal.shape)}.")
        if self.spatial.shape[0] != n or self.temporal.shape[0] != n or len(self.cities) != n:
            raise GpdiffError(f"prompt set sizes disagree: {self.spatial.shape[0]} spatial, {self.temporal.shape[0]} "
                              f"temporal rows, {n} node ids, {len(self.cities)} cities.")
        if len(set(self.keys())) != n:
            raise GpdiffError("prompt set has duplicate (city, node id) keys; every node may appear once.")
        if not (torch.isfinite(self.spatial).all() and torch.isfinite(self.temporal).all()):
            raise GpdiffError("prompts contain NaN or inf; check the inputs they were computed from.")

    def __len__(self) -> int:
        return len(self.node_ids)

    @property
    def spatial_dim(self) -> int:
        return int(self.spatial.shape[1])

    @property
    def temporal_dim(self) -> int:
        return int(self.temporal.shape[1])

    def noun(self) -> str:
        return "prompts"

    def _take(self, index: torch.Tensor) -> PromptSet:
        il = index.tolist()
        return PromptSet(self.spatial[index], self.temporal[index], [self.node_ids[i] for i in il],
                         [self.cities[i] for i in il], dict(self.meta))

    @classmethod
    def concat(cls, sets: Sequence[PromptSet]) -> PromptSet:
        """Stack prompt sets made by the same encoders; notes and segments are merged."""
        if not sets:
            raise GpdiffError("nothing to concatenate: no prompt sets.")
        first = sets[0]
        for s in sets[1:]:
            for k in ("temporal_encoder", "spatial_encoder"):
                if s.meta.get(k) != first.meta.get(k):
                    raise GpdiffError(f"prompt sets made by different {k.replace('_', ' ')}s "
                                      f"({first.meta.get(k)!r} vs {s.meta.get(k)!r}) cannot be combined.")
            if (s.spatial_dim, s.temporal_dim) != (first.spatial_dim, first.temporal_dim):
                raise GpdiffError("prompt sets of different widths cannot be combined.")
        meta = dict(first.meta)
        meta["segments"] = {k: v for s in sets for k, v in s.meta.get("segments", {}).items()}
        meta["notes"] = list(dict.fromkeys(n for s in sets for n in s.meta.get("notes", [])))
        return cls(torch.cat([s.spatial for s in sets]), torch.cat([s.temporal for s in sets]),
                   [n for s in sets for n in s.node_ids], [c for s in sets for c in s.cities], meta)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """One safetensors file: tensors ``spatial``, ``temporal``; keys and meta in the header."""
        return save_tensors(path, {"spatial": self.spatial, "temporal": self.temporal},
                            {"format": PROMPTS_FORMAT, "node_ids": self.node_ids, "cities": self.cities,
                             "meta": self.meta})

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> PromptSet:
        """Read a prompt file, or the one in a folder (:func:`prompt_file`)."""
        path = prompt_file(path)
        tensors, meta = load_tensors(path)
        if meta.get("format") != PROMPTS_FORMAT or not {"spatial", "temporal"} <= set(tensors):
            raise GpdiffError(f"{path} is not a gpdiff prompt file (written by `gpdiff prompts fit`).")
        return cls(tensors["spatial"], tensors["temporal"], list(meta["node_ids"]), list(meta["cities"]),
                   dict(meta.get("meta") or {}))


# --------------------------------------------------------------------------- encoders
def fit_prompts(sources: Sequence[City], config: PromptsConfig | None = None, *,
                segments: Sequence[Segment] | None = None, seed: int = 0, progress: bool = True) -> PromptEncoders:
    """The prompts stage: the temporal and spatial encoders of ``config`` fitted on ``sources``, each city
    restricted to its training segment (``segments``; default :func:`source_segment` of each), with ``seed``.
    Encode nodes with :meth:`PromptEncoders.encode`. Raises :class:`GpdiffError` for repeated city names
    or a segment outside its city."""
    config = config or PromptsConfig()
    names = [c.name for c in sources]
    if len(set(names)) != len(names):
        raise GpdiffError(f"city names must be unique to key prompts, got {names}.")
    segments = list(segments) if segments is not None else [source_segment(c) for c in sources]
    t = make_encoder("temporal", config.temporal, config.temporal_config).fit(sources, segments, progress, seed)
    s = make_encoder("spatial", config.spatial, config.spatial_config).fit(sources, segments, progress, seed)
    return PromptEncoders(t, s)


def source_segment(city: City, split: SourceSplit | None = None) -> Segment:
    """A source city's training segment under ``split`` (default: :class:`SourceSplit`'s fractions), the
    only part its prompts and the encoder may read."""
    return (split or SourceSplit()).of(city.n_steps, city.name).train


def target_segment(city: City, days: float, val_days: float = 1, test_fraction: float = 0.2,
                   window: int = 18) -> Segment:
    """A target city's few-shot days (``target_split(...).train``)."""
    return target_split(city.n_steps, city.steps_per_day, days, val_days, test_fraction, window,
                        name=city.name).train


@dataclass
class PromptsConfig:
    """Which prompt encoders make the nodes' prompts, and their settings (``gpdiff.prompts`` registries)."""

    temporal: str = "masked_patch"
    spatial: str = "graph"
    temporal_config: dict[str, Any] = field(default_factory=dict)  # overrides of the temporal encoder's config
    spatial_config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.temporal_config = dict(self.temporal_config or {})
        self.spatial_config = dict(self.spatial_config or {})
        for kind, name, config in (("temporal", self.temporal, self.temporal_config),
                                   ("spatial", self.spatial, self.spatial_config)):
            # unknown names and settings fail here, before any work
            from_mapping(get_encoder_class(kind, name).config_class, config, "run config", _path=f"prompts.{kind}_config.")


@dataclass
class PromptEncoders:
    """A fitted temporal and spatial encoder; saved together in one folder."""

    temporal: PromptEncoder
    spatial: PromptEncoder

    def encode(self, city: City, segment: Segment) -> PromptSet:
        """Prompts of all nodes of ``city`` computed from exactly ``segment``.

        A source city: pass its training segment (:func:`source_segment`); a target city: its few-shot
        days (:func:`target_segment`). The temporal prompt reads the last ``days`` days of the segment
        (all of it when shorter); the spatial prompt reads the graph, coordinates and attributes only.
        """
        tp, t_notes = self.temporal.encode(city, segment)
        sp, s_notes = self.spatial.encode(city, segment)
        meta = {
            "temporal_encoder": self.temporal.name, "spatial_encoder": self.spatial.name,
            "temporal_config": dataclasses.asdict(self.temporal.config),
            "spatial_config": dataclasses.asdict(self.spatial.config),
            "segments": {city.name: [segment.start, segment.stop]}, "notes": s_notes + t_notes,
        }
        return PromptSet(torch.from_numpy(sp), torch.from_numpy(tp), list(city.node_ids),
                         [city.name] * city.n_nodes, meta)

    def encode_many(self, cities: Sequence[City], segments: Sequence[Segment] | None = None) -> PromptSet:
        """Prompts of every node of ``cities``, each city's from its segment (default: each source city's
        training segment, :func:`source_segment`), concatenated in city order."""
        segments = list(segments) if segments is not None else [source_segment(c) for c in cities]
        return PromptSet.concat([self.encode(c, s) for c, s in zip(cities, segments)])

    def save(self, folder: str | os.PathLike[str], extra: dict[str, Any] | None = None) -> Path:
        """``folder/{temporal,spatial}/`` plus ``folder/config.yaml`` (``extra``: anything to record)."""
        folder = Path(folder)
        self.temporal.save(folder / "temporal")
        self.spatial.save(folder / "spatial")
        write_yaml(folder / "config.yaml", {"format": ENCODERS_FORMAT, "temporal": self.temporal.name,
                                            "spatial": self.spatial.name, **(extra or {})})
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> PromptEncoders:
        folder = Path(folder)
        doc = read_yaml(folder / "config.yaml")
        if not isinstance(doc, dict) or doc.get("format") != ENCODERS_FORMAT:
            raise GpdiffError(f"{folder} is not a prompt encoder folder (written by `gpdiff prompts fit`).")
        t, s = PromptEncoder.load(folder / "temporal"), PromptEncoder.load(folder / "spatial")
        if t.kind != "temporal" or s.kind != "spatial":
            raise GpdiffError(f"{folder}: temporal/ and spatial/ hold the wrong kinds of encoder.")
        return cls(t, s)

    @staticmethod
    def read_config(folder: str | os.PathLike[str]) -> dict[str, Any]:
        """The folder's ``config.yaml`` (encoder names plus what ``save(extra=...)`` recorded)."""
        return dict(read_yaml(Path(folder) / "config.yaml") or {})


__all__ = [
    "SPATIAL_ENCODERS", "TEMPORAL_ENCODERS", "GraphConfig", "GraphEncoder", "MaskedPatchConfig",
    "MaskedPatchEncoder", "NoneConfig", "NoneEncoder", "NoneTemporalEncoder", "PromptEncoder", "PromptEncoders",
    "PromptSet", "StatsConfig", "StatsEncoder", "get_encoder_class", "make_encoder", "source_segment", "target_segment",
]
