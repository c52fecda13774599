"""A pretrained GPD: everything a new city needs from the source cities, in one folder.

GPD (Yuan et al., ICLR 2024, arXiv 2402.11922, section 3) pre-trains on the sources once; a target
city then only needs its nodes' prompts to get parameters. :class:`GPD` holds those parts: the base
model's architecture and window shape, the anchor (the pooled source model every zoo member was
fine-tuned from, and the ``transfer`` methods' start), the fitted prompt encoders, the denoiser (EMA
weights, with its tokenizer and parameter standardiser) and the generation settings, plus a model
card. It round-trips through a folder with :meth:`GPD.save_pretrained` / :meth:`GPD.from_pretrained`
(the diffusers names)::

    P/
      gpd.yaml               format, format_version, gpdiff version, window, base model, generation,
                             the sources (name, nodes, span, interval, content hash); written last
      anchor.safetensors     the anchor [P]
      encoders/              the prompt encoders (PromptEncoders.save)
      denoiser/              config.yaml, ema.safetensors, standardizer.safetensors (DiffusionModel.save, EMA only)
      README.md              the model card

safetensors and YAML only, nothing pickled. ``gpdiff run`` writes one into its run folder
(``pretrained/``), ``gpdiff pretrain --sources ...`` builds one, and one ships in the package
(:func:`bundled_path`), pretrained on the five bundled cities.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from gpdiff import __version__
from gpdiff.data.city import City
from gpdiff.data.splits import Segment
from gpdiff.data.windows import WindowConfig
from gpdiff.diffusion.sample import GenerateConfig, generate
from gpdiff.diffusion.train import DiffusionModel
from gpdiff.models.base import BaseModel
from gpdiff.models.config import BaseModelConfig
from gpdiff.prompts import PromptEncoders, PromptSet
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import atomic_write_text, load_tensors, read_yaml, save_tensors, write_yaml

FORMAT = "gpdiff.pretrained"
FORMAT_VERSION = 1
FILES = ("gpd.yaml", "anchor.safetensors", "encoders/config.yaml", "denoiser/config.yaml", "denoiser/ema.safetensors",
         "denoiser/standardizer.safetensors")
ARCHITECTURE = ("model", "preset", "in_channels", "residual")  # BaseModelConfig.architecture(): the base model


def bundled_path() -> Path:
    """The folder of the pretrained GPD that ships in the package (all five bundled cities as sources,
    the default settings; rebuilt by ``scripts/build_pretrained.py``)."""
    return Path(__file__).resolve().parents[1] / "forecaster" / "bundled"


@dataclass
class GPD:
    """A pretrained GPD (see the module docstring).

    ``window`` and ``architecture`` (:meth:`BaseModelConfig.architecture`: ``model``, ``preset``,
    ``in_channels``, ``residual``) fix the base model; ``anchor`` is its pooled source parameters ``[P]``;
    ``sources`` one record per source city (``name``, ``nodes``, ``start``, ``end``,
    ``interval_minutes``, ``fingerprint``); ``card`` what the model card reports."""

    window: WindowConfig
    architecture: dict[str, Any]
    anchor: torch.Tensor
    encoders: PromptEncoders
    denoiser: DiffusionModel
    generation: GenerateConfig = field(default_factory=GenerateConfig)
    sources: list[dict[str, Any]] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        model = self.build_model()
        self.denoiser.check_base(model.name, {"preset": model.config.preset}, model.spec())
        if self.anchor.shape != (model.n_params,):
            raise GpdiffError(f"the anchor has {tuple(self.anchor.shape)} parameters, the base model "
                              f"{model.name!r} {model.n_params}; the pretrained parts come from different runs.")

    # ------------------------------------------------------------------ use
    def build_model(self) -> BaseModel:
        """The base model every generated parameter vector belongs to."""
        return BaseModelConfig.from_architecture(self.architecture).build(self.window)

    @property
    def source_names(self) -> list[str]:
        return [str(s["name"]) for s in self.sources]

    def check_target(self, city: City, fingerprint: str) -> None:
        """:class:`GpdiffError` when ``city`` (by name or content) is one of the sources: generating
        for a city the model was pretrained on would leak its data into every score."""
        for s in self.sources:
            if s["name"] == city.name or s.get("fingerprint") == fingerprint:
                others = [n for n in self.source_names if n != s["name"]]
                raise GpdiffError(
                    f"city {city.name!r} is one of this pretrained GPD's sources ({s['name']}), so its forecasts would "
                    f"be scored on data it was trained on; pretrain without it: gpdiff pretrain --sources "
                    f"{','.join(others) or 'A,B'} --out my-gpd, then pass --pretrained my-gpd.")

    def prompts(self, city: City, segment: Segment) -> PromptSet:
        """Prompts of every node of ``city`` from exactly ``segment`` (spatial: graph and coordinates;
        temporal: the series in ``segment``), ``[N, ds]`` and ``[N, dt]``."""
        return self.encoders.encode(city, segment)

    def generate(self, prompts: PromptSet, seed: int = 0, progress: bool = False) -> torch.Tensor:
        """Parameters ``[n, P]`` for the nodes of ``prompts``, sampled with :attr:`generation` (the mean of
        ``num_samples`` samples, seeds ``seed``...). Deterministic for a given seed."""
        return generate(self.denoiser, prompts, self.generation, seed=seed, progress=progress).params

    # ---------------------------------------------------------------- folder
    def save_pretrained(self, path: str | Path) -> Path:
        """Write the folder (module docstring). Atomic: the folder is assembled beside ``path`` and
        moved into place, so an interrupted save leaves an existing ``path`` as it was."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            save_tensors(tmp / "anchor.safetensors", {"anchor": self.anchor.float().cpu().contiguous()})
            self.encoders.save(tmp / "encoders")
            d = tmp / "denoiser"
            d.mkdir()
            save_tensors(d / "ema.safetensors", self.denoiser.ema.state_dict())
            save_tensors(d / "standardizer.safetensors",
                         {**self.denoiser.standardizer.state(), "center": self.denoiser.center})
            write_yaml(d / "config.yaml", self.denoiser.config_dict())
            atomic_write_text(tmp / "README.md", self.model_card())
            write_yaml(tmp / "gpd.yaml", self._manifest())  # last: marks the folder complete
            old = None
            if path.exists():
                old = path.with_name(f".{path.name}.old-{time.time_ns()}")
                path.rename(old)
            tmp.rename(path)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return path

    def _manifest(self) -> dict[str, Any]:
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "gpdiff_version": __version__,
                "window": asdict(self.window), "architecture": dict(self.architecture),
                "generation": asdict(self.generation), "sources": list(self.sources), "card": dict(self.card)}

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str = "cpu") -> GPD:
        """The GPD saved in ``path`` (``None``: the one that ships in the package). Raises
        :class:`GpdiffError` naming what is wrong: not a folder, incomplete (which file), written by
        another format version (which gpdiff made it), or parts that do not fit together."""
        path = bundled_path() if path is None else Path(path)
        if not path.is_dir():
            raise GpdiffError(f"pretrained GPD {path} is not a folder; pass a folder written by `gpdiff pretrain "
                              "--sources ...`, `gpdiff run` (its pretrained/ folder) or GPD.save_pretrained.")
        missing = [f for f in FILES if not (path / f).is_file()]
        if missing:
            raise GpdiffError(f"pretrained GPD {path} is incomplete: {', '.join(missing)} missing (an interrupted copy?); "
                              "copy or build it again.")
        doc = read_yaml(path / "gpd.yaml")
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise GpdiffError(f"{path / 'gpd.yaml'} is not a pretrained GPD manifest.")
        if doc.get("format_version") != FORMAT_VERSION:
            raise GpdiffError(
                f"pretrained GPD {path} has format version {doc.get('format_version')} (written by gpdiff "
                f"{doc.get('gpdiff_version', '?')}); this gpdiff {__version__} reads version {FORMAT_VERSION}. Build it "
                "again with this version (gpdiff pretrain --sources ...), or use the gpdiff that wrote it.")
        try:
            window = WindowConfig(**doc["window"])
            generation = GenerateConfig(**doc["generation"])
            architecture = {k: doc["architecture"][k] for k in ARCHITECTURE}
        except (KeyError, TypeError) as exc:
            raise GpdiffError(f"{path / 'gpd.yaml'} lacks a setting ({exc}); build the folder again.") from None
        anchor = load_tensors(path / "anchor.safetensors")[0]["anchor"]
        denoiser = DiffusionModel.load(path / "denoiser", device=device)
        return cls(window, architecture, anchor, PromptEncoders.load(path / "encoders"), denoiser, generation,
                   list(doc.get("sources") or []), dict(doc.get("card") or {}))

    # ------------------------------------------------------------ model card
    def model_card(self) -> str:
        """The folder's README.md: what it was trained on, with which settings, how well, how long."""
        a, w, g = self.architecture, self.window, self.generation
        lines = [
            "# Pretrained GPD", "",
            "Generates per-node forecasting-model parameters for a new city from its nodes' prompts (GPD, Yuan et al., "
            "ICLR 2024, arXiv 2402.11922). Load with `gpdiff.GPD.from_pretrained(path)`; use with "
            "`gpdiff fit CITY --pretrained path`.", "",
            f"- gpdiff {__version__} (code {self.card.get('code', '?')}), format version {FORMAT_VERSION}",
            f"- base model `{a['model']}` (preset `{a['preset']}`, {self.denoiser.n_params} parameters per node), "
            f"history {w.history} -> horizon {w.horizon} steps, {w.n_neighbors} graph neighbours",
            f"- prompts: temporal `{self.encoders.temporal.name}`, spatial `{self.encoders.spatial.name}`",
            f"- denoiser: `{self.denoiser.config.denoiser.condition}`, d_model {self.denoiser.config.denoiser.d_model}, "
            f"{self.denoiser.config.denoiser.n_layers} layers, {self.denoiser.config.iters} iterations",
            f"- generation: {g.sampler}, {g.num_inference_steps} steps, guidance {g.guidance_scale}, "
            f"mean of {g.num_samples} samples",
            f"- seed {self.card.get('seed', '?')}; pre-training wall time {self.card.get('wall_time', '?')}", "",
            "## Sources", "",
            "Do not use it for these cities: their data trained it (`gpdiff fit` refuses them).", "",
            "| city | nodes | interval | span |", "|---|---|---|---|",
        ]
        lines += [f"| {s['name']} | {s['nodes']} | {s['interval_minutes']} min | {s['start']} .. {s['end']} |"
                  for s in self.sources]
        scores = self.card.get("scores") or {}
        if scores:
            lines += ["", "## Held-out scores on the sources", ""]
            lines += [f"- {k}: {v}" for k, v in scores.items()]
        return "\n".join(lines) + "\n"


def source_record(city: City, fingerprint: str) -> dict[str, Any]:
    """One entry of :attr:`GPD.sources`."""
    return {"name": city.name, "nodes": city.n_nodes, "interval_minutes": city.interval_minutes,
            "start": f"{city.start:%Y-%m-%d %H:%M}", "end": f"{city.end:%Y-%m-%d %H:%M}", "fingerprint": fingerprint}
