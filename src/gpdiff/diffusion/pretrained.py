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
      fits/<method>.safetensors   optional: a method's fit on the sources (SourceFit), e.g. pooled_linear's
                             ridge coefficients (a few kB), so a forecaster runs the method without source data
      zoo/                   optional (``gpdiff pretrain --with-zoo``): what the zoo methods (knn_residual,
        params.safetensors   mean_params, retrieval, reptile) read: the zoo's parameters [n, P] (member 0,
        prompts.safetensors  with the anchor), the prompts of its rows [n, ds] / [n, dt], and their source
        fits/<method>.safetensors   fits (knn_residual's choice of k and shrinkage, reptile's start [P])
      README.md              the model card (lists which optional parts it holds)

safetensors and YAML only, nothing pickled. ``gpdiff run`` writes one into its run folder
(``pretrained/``, without the zoo: the run keeps it in its zoo stage), ``gpdiff pretrain --sources ...``
builds one (``--with-zoo`` adds the zoo, 17-21 MB for the five bundled cities), and one ships in the
package (:func:`bundled_path`), pretrained on the five bundled cities, without the zoo.

Format version 2 added the optional parts, listed in ``gpd.yaml`` under ``contents``; a version-1
folder (none of them) still loads.
"""

from __future__ import annotations

import dataclasses
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
from gpdiff.zoo.params import ParamCollection
from gpdiff.zoo.sourcefit import SourceFit

FORMAT = "gpdiff.pretrained"
FORMAT_VERSION = 2  # 2: optional fits/ and zoo/, listed under gpd.yaml's contents
READS = (1, 2)  # the format versions this gpdiff loads
FILES = ("gpd.yaml", "anchor.safetensors", "encoders/config.yaml", "denoiser/config.yaml", "denoiser/ema.safetensors",
         "denoiser/standardizer.safetensors")
ARCHITECTURE = ("model", "preset", "in_channels", "residual")  # BaseModelConfig.architecture(): the base model


def bundled_path() -> Path:
    """The folder of the pretrained GPD that ships in the package (all five bundled cities as sources,
    the default settings; rebuilt by ``scripts/build_pretrained.py``)."""
    return Path(__file__).resolve().parents[1] / "forecaster" / "bundled"


@dataclass
class SourceZoo:
    """The sources' model zoo as the zoo methods read it: ``params`` ``[n, P]`` (member 0 of every source
    node, with the anchor), ``prompts`` the prompts of its rows (aligned by key), and ``fits``: the source
    fits of the zoo methods that make one (:data:`gpdiff.methods.SOURCE_FITS`), by method name."""

    params: ParamCollection
    prompts: PromptSet
    fits: dict[str, SourceFit] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.params.members is not None:  # further members train the denoiser only; the methods read member 0
            self.params = dataclasses.replace(self.params, members=None)
        if self.prompts.keys() != self.params.keys():
            raise GpdiffError("the zoo's prompts are not aligned with its parameter rows; select them by the zoo's keys.")

    def save(self, folder: Path) -> None:
        """``folder/params.safetensors``, ``folder/prompts.safetensors``, ``folder/fits/<method>.safetensors``."""
        folder.mkdir(parents=True, exist_ok=True)
        self.params.save(folder / "params.safetensors")
        self.prompts.save(folder / "prompts.safetensors")
        _save_fits(self.fits, folder / "fits")

    @classmethod
    def load(cls, folder: Path, fits: list[str]) -> SourceZoo:
        """The zoo :meth:`save` wrote, with the source fits named ``fits``."""
        return cls(ParamCollection.load(folder / "params.safetensors"), PromptSet.load(folder / "prompts.safetensors"),
                   _load_fits(folder / "fits", fits))


@dataclass
class GPD:
    """A pretrained GPD (see the module docstring).

    ``window`` and ``architecture`` (:meth:`BaseModelConfig.architecture`: ``model``, ``preset``,
    ``in_channels``, ``residual``) fix the base model; ``anchor`` is its pooled source parameters ``[P]``;
    ``sources`` one record per source city (``name``, ``nodes``, ``start``, ``end``,
    ``interval_minutes``, ``fingerprint``); ``card`` what the model card reports; ``fits`` the source fits
    of methods that need no zoo (``pooled_linear``), by method name; ``zoo`` the zoo part, or ``None``."""

    window: WindowConfig
    architecture: dict[str, Any]
    anchor: torch.Tensor
    encoders: PromptEncoders
    denoiser: DiffusionModel
    generation: GenerateConfig = field(default_factory=GenerateConfig)
    sources: list[dict[str, Any]] = field(default_factory=list)
    card: dict[str, Any] = field(default_factory=dict)
    fits: dict[str, SourceFit] = field(default_factory=dict)
    zoo: SourceZoo | None = None

    def __post_init__(self) -> None:
        model = self.build_model()
        self.denoiser.check_base(model.name, {"preset": model.config.preset}, model.spec())
        if self.anchor.shape != (model.n_params,):
            raise GpdiffError(f"the anchor has {tuple(self.anchor.shape)} parameters, the base model "
                              f"{model.name!r} {model.n_params}; the pretrained parts come from different runs.")
        if self.zoo is not None and self.zoo.params.params.shape[1] != model.n_params:
            raise GpdiffError(f"the zoo's rows have {self.zoo.params.params.shape[1]} parameters, the base model "
                              f"{model.name!r} {model.n_params}; the pretrained parts come from different runs.")

    # ------------------------------------------------------------------ use
    def build_model(self) -> BaseModel:
        """The base model every generated parameter vector belongs to."""
        return BaseModelConfig.from_architecture(self.architecture).build(self.window)

    @property
    def source_names(self) -> list[str]:
        return [str(s["name"]) for s in self.sources]

    def source_fits(self) -> dict[str, SourceFit]:
        """Every source fit this GPD holds (its own and its zoo's), by method name: a method's ``MethodInputs.fits``."""
        return {**self.fits, **(self.zoo.fits if self.zoo is not None else {})}

    def pretrain_hint(self, with_zoo: bool = False) -> str:
        """The command that builds a pretrained folder like this one (``--with-zoo``: with the zoo)."""
        return (f"gpdiff pretrain --sources {','.join(self.source_names) or 'A,B'}"
                + (" --with-zoo" if with_zoo else "") + " --out my-gpd")

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
    def save_pretrained(self, path: str | Path, include_zoo: bool | None = None) -> Path:
        """Write the folder (module docstring). ``include_zoo``: write the zoo part (``True``; a
        :class:`GpdiffError` when this GPD holds none), leave it out (``False``), or write it when held
        (``None``). Atomic: the folder is assembled beside ``path`` and moved into place, so an
        interrupted save leaves an existing ``path`` as it was."""
        path = Path(path)
        if include_zoo and self.zoo is None:
            raise GpdiffError(f"this pretrained GPD holds no source zoo to include; pretrain one with it: "
                              f"{self.pretrain_hint(with_zoo=True)}.")
        zoo = self.zoo if include_zoo is not False else None
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            save_tensors(tmp / "anchor.safetensors", {"anchor": self.anchor.float().cpu().contiguous()})
            self.encoders.save(tmp / "encoders")
            d = tmp / "denoiser"
            d.mkdir()
            save_tensors(d / "ema.safetensors", self.denoiser.ema.state_dict())
            save_tensors(d / "standardizer.safetensors",
                         {**self.denoiser.standardizer.state(), "center": self.denoiser.reference})
            write_yaml(d / "config.yaml", self.denoiser.config_dict())
            _save_fits(self.fits, tmp / "fits")
            if zoo is not None:
                zoo.save(tmp / "zoo")
            atomic_write_text(tmp / "README.md", self.model_card(zoo is not None))
            write_yaml(tmp / "gpd.yaml", self._manifest(zoo))  # last: marks the folder complete
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

    def _manifest(self, zoo: SourceZoo | None) -> dict[str, Any]:
        contents = {"fits": sorted(self.fits), "zoo": zoo is not None,
                    "zoo_fits": sorted(zoo.fits) if zoo is not None else [],
                    "zoo_nodes": len(zoo.params) if zoo is not None else 0}
        return {"format": FORMAT, "format_version": FORMAT_VERSION, "gpdiff_version": __version__,
                "window": asdict(self.window), "architecture": dict(self.architecture),
                "generation": asdict(self.generation), "sources": list(self.sources), "card": dict(self.card),
                "contents": contents}

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
        if doc.get("format_version") not in READS:
            raise GpdiffError(
                f"pretrained GPD {path} has format version {doc.get('format_version')} (written by gpdiff "
                f"{doc.get('gpdiff_version', '?')}); this gpdiff {__version__} reads versions "
                f"{', '.join(map(str, READS))}. Build it again with this version (gpdiff pretrain --sources ...), or "
                "use the gpdiff that wrote it.")
        try:
            window = WindowConfig(**doc["window"])
            generation = GenerateConfig(**doc["generation"])
            architecture = {k: doc["architecture"][k] for k in ARCHITECTURE}
            contents = dict(doc.get("contents") or {})  # version 1: no optional part
            fit_names, zoo_fit_names = list(contents.get("fits", [])), list(contents.get("zoo_fits", []))
        except (KeyError, TypeError) as exc:
            raise GpdiffError(f"{path / 'gpd.yaml'} lacks a setting ({exc}); build the folder again.") from None
        _require_parts(path, fit_names, bool(contents.get("zoo")), zoo_fit_names)
        anchor = load_tensors(path / "anchor.safetensors")[0]["anchor"]
        denoiser = DiffusionModel.load(path / "denoiser", device=device)
        zoo = SourceZoo.load(path / "zoo", zoo_fit_names) if contents.get("zoo") else None
        return cls(window, architecture, anchor, PromptEncoders.load(path / "encoders"), denoiser, generation,
                   list(doc.get("sources") or []), dict(doc.get("card") or {}), _load_fits(path / "fits", fit_names),
                   zoo)

    # ------------------------------------------------------------ model card
    def model_card(self, with_zoo: bool | None = None) -> str:
        """The folder's README.md: what it was trained on, with which settings, how well, how long, and
        which optional parts it holds (``with_zoo``: whether the folder holds the zoo; default: whether
        this GPD does)."""
        a, w, g = self.architecture, self.window, self.generation
        with_zoo = self.zoo is not None if with_zoo is None else with_zoo
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
            f"{self.denoiser.config.denoiser.n_layers} layers, {self.denoiser.config.max_steps} training steps",
            f"- generation: {g.sampler}, {g.num_inference_steps} steps, guidance {g.guidance_scale}, "
            f"mean of {g.num_samples} samples",
            f"- seed {self.card.get('seed', '?')}; pre-training wall time {self.card.get('wall_time', '?')}", "",
            "## Contents", "",
            *self._contents_lines(with_zoo), "",
            "## Sources", "",
            "Do not use it for these cities: their data trained it (`gpdiff fit` refuses them).", "",
            "| city | nodes | interval | span |", "|---|---|---|---|",
        ]
        lines += [f"| {s['name']} | {s['nodes']} | {s['interval_minutes']} min | {s['start']} .. {s['end']} |"
                  for s in self.sources]
        lines += ["", "## Held-out source nodes", ""]
        held = self.card.get("heldout")
        lines += (heldout_lines(held) if held else
                  ["Not measured (a run's `pretrained/` folder, or `gpdiff pretrain --holdout 0`); "
                   "`gpdiff pretrain --sources ...` measures it."])
        scores = self.card.get("scores") or {}
        if scores:
            lines += ["", "## Training scores", ""]
            lines += [f"- {k}: {v}" for k, v in scores.items()]
        return "\n".join(lines) + "\n"


    def _contents_lines(self, with_zoo: bool) -> list[str]:
        """The model card's list of the optional parts (module docstring) and what each enables."""
        ridge = ("- pooled_linear ridge coefficients: included (`gpdiff fit --method pooled_linear`)"
                 if "pooled_linear" in self.fits else
                 f"- pooled_linear ridge coefficients: not included (build it again to add them: {self.pretrain_hint()})")
        if with_zoo and self.zoo is not None:
            zoo = (f"- source model zoo: included, {len(self.zoo.params)} source nodes with their prompts (methods "
                   "knn_residual, mean_params, retrieval, reptile); source fits: "
                   f"{', '.join(sorted(self.zoo.fits)) or 'none'}")
        else:
            zoo = ("- source model zoo: not included (methods knn_residual, mean_params, retrieval and reptile need it: "
                   f"{self.pretrain_hint(with_zoo=True)})")
        return [ridge, zoo]


def heldout_lines(doc: dict[str, Any]) -> list[str]:
    """The model card's table of held-out source-node scores (``card.heldout``, written by
    :mod:`gpdiff.experiment.heldout`): what was held out, MAE per city and column, and each column's mean
    ratio to weekly naive over the cities (their units differ, so MAE is not pooled)."""
    rows = doc["mae"]
    columns = list(next(iter(rows.values())))
    lines = [f"{doc['n_held']} source nodes ({doc['fraction']:.0%} of every city's) were held out of a second "
             f"denoiser trained with the same settings on the other {doc['n_kept']}; their generated parameters "
             "forecast their own node's test windows of the source split (never trained on). MAE in each city's "
             "units; lower is better.", "",
             "| city | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    lines += [f"| {city} | " + " | ".join(f"{row[c]:.4g}" for c in columns) + " |" for city, row in rows.items()]
    if "weekly naive" in columns:
        ratio = ratio_to_weekly(rows)
        lines.append("| **mean ratio to weekly naive** | " + " | ".join(f"{ratio[c]:.3f}" for c in columns) + " |")
    return lines


def ratio_to_weekly(mae: dict[str, dict[str, float]]) -> dict[str, float]:
    """Each column's MAE as a ratio to weekly naive's, averaged over the cities of ``mae`` (city -> column ->
    MAE, as in ``card.heldout``): the cities' units differ, so their MAE is not pooled."""
    columns = list(next(iter(mae.values())))
    return {c: sum(r[c] / r["weekly naive"] for r in mae.values()) / len(mae) for c in columns}


def _save_fits(fits: dict[str, SourceFit], folder: Path) -> None:
    """Every fit as ``folder/<method>.safetensors`` (nothing, not even the folder, when there is none)."""
    for name, fit in sorted(fits.items()):
        folder.mkdir(parents=True, exist_ok=True)
        fit.save(folder / f"{name}.safetensors")


def _load_fits(folder: Path, names: list[str]) -> dict[str, SourceFit]:
    return {name: SourceFit.load(folder / f"{name}.safetensors") for name in names}


def _require_parts(path: Path, fits: list[str], zoo: bool, zoo_fits: list[str]) -> None:
    """:class:`GpdiffError` naming the optional parts ``gpd.yaml`` lists that are missing from ``path``."""
    want = [f"fits/{n}.safetensors" for n in fits]
    if zoo:
        want += ["zoo/params.safetensors", "zoo/prompts.safetensors", *[f"zoo/fits/{n}.safetensors" for n in zoo_fits]]
    missing = [f for f in want if not (path / f).is_file()]
    if missing:
        raise GpdiffError(f"pretrained GPD {path} is incomplete: {', '.join(missing)} missing (an interrupted copy?); "
                          "copy or build it again.")


def source_record(city: City, fingerprint: str) -> dict[str, Any]:
    """One entry of :attr:`GPD.sources`."""
    return {"name": city.name, "nodes": city.n_nodes, "interval_minutes": city.interval_minutes,
            "start": f"{city.start:%Y-%m-%d %H:%M}", "end": f"{city.end:%Y-%m-%d %H:%M}", "fingerprint": fingerprint}
