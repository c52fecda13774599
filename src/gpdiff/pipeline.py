"""`gpdiff run`: few-shot transfer to a target city, end to end, with every baseline.

Stages (each a folder of the run directory, computed once; see :mod:`gpdiff.stages`):

    zoo -> prompts -> diffusion -> generate -> methods/<name> (one per method) -> report

The target city is split by :func:`gpdiff.data.target_split`: only its few-shot days are trained
on, its validation slice drives early stopping, and its test period is scored once, the same way
for every method.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpdiff.config import from_mapping
from gpdiff.data.catalog import FLOW_CITIES, load_city
from gpdiff.data.city import City
from gpdiff.data.splits import target_split
from gpdiff.data.windows import CityData
from gpdiff.errors import GpdiffError
from gpdiff.io import load_tensors, read_yaml, save_tensors, write_yaml
from gpdiff.metrics import Metrics, masked_metrics
from gpdiff.stages import Run, key_of

DEFAULT_TARGET = "melbourne-ped"


@dataclass
class RunConfig:
    """Every knob of a run. YAML files and CLI flags override these defaults."""

    target: str = DEFAULT_TARGET
    sources: list[str] = field(default_factory=list)  # empty: the other bundled flow cities / data-dir cities
    data_dir: str | None = None  # folder with cities in any supported format (one per subfolder/file)
    target_days: float = 3.0
    val_days: float = 1.0
    test_fraction: float = 0.2
    target_scale_floor: float = 0.05  # target nodes' std >= this x the target's pooled std (NodeScaler.fit)
    history: int = 12
    horizon: int = 6
    k: int = 7
    model: str = "stgcn"
    preset: str = "small"
    condition: str = "pre_inductive"
    denoiser: str = "small"  # denoiser preset
    sampler: str = "ddim"
    steps: int = 50
    guidance: float = 1.0
    seed: int = 0
    device: str = "auto"
    out: str = "runs/default"
    methods: list[str] = field(default_factory=lambda: [
        "seasonal_naive", "historical_average", "target_only", "transfer", "mean_params", "retrieval",
        "reptile", "gpd_zero_shot", "gpd"])
    zoo: dict[str, Any] = field(default_factory=dict)  # ZooConfig overrides
    prompts: dict[str, Any] = field(default_factory=dict)  # temporal/spatial encoder names and configs
    diffusion: dict[str, Any] = field(default_factory=dict)  # DiffusionConfig overrides
    finetune: dict[str, Any] = field(default_factory=dict)  # FinetuneConfig overrides
    baselines: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-method settings, e.g. reptile

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> RunConfig:
        data = dict(data or {})
        for name in ("sources", "methods"):
            if isinstance(data.get(name), str):
                data[name] = [s.strip() for s in data[name].split(",") if s.strip()]
        return from_mapping(cls, data, "run config")

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict[str, Any] | None = None) -> RunConfig:
        doc = read_yaml(path)
        if doc is not None and not isinstance(doc, dict):
            raise GpdiffError(f"{path}: a run config must be a mapping of settings, got {type(doc).__name__}.")
        return cls.from_dict({**(doc or {}), **(overrides or {})})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunResult:
    out: Path
    rows: list[dict[str, Any]]  # results.csv rows
    report: Path
    timings: dict[str, float]


# ----------------------------------------------------------------------- cities
def _find_in_dir(data_dir: Path, name: str) -> Path | None:
    for p in sorted(data_dir.iterdir()):
        if p.name == name or p.stem == name or p.name == f"Data_{name}":
            return p
    return None


def load_named(name: str, data_dir: str | None) -> City:
    """A city by name: from ``data_dir`` when given (subfolder or file named so), else bundled/cached."""
    if data_dir:
        d = Path(data_dir)
        if not d.is_dir():
            raise GpdiffError(f"--data-dir {d} is not a folder; pass the folder that holds your cities.")
        p = _find_in_dir(d, name)
        if p is not None:
            city = load_city(p)
            return dataclasses.replace(city, name=name) if city.name != name else city
    return load_city(name)


def default_sources(cfg: RunConfig) -> list[str]:
    if cfg.sources:
        return list(cfg.sources)
    if cfg.data_dir:
        names = [p.stem if p.is_file() else p.name.removeprefix("Data_") for p in sorted(Path(cfg.data_dir).iterdir())
                 if not p.name.startswith(".")]
        return [n for n in names if n != cfg.target]
    return [c for c in FLOW_CITIES if c != cfg.target]


def city_fingerprint(city: City) -> str:
    h = hashlib.sha256()
    for a in (city.values, city.mask, city.adjacency):
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(f"{city.start}|{city.interval_minutes}|{','.join(city.node_ids)}".encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------------- pipeline
def run_pipeline(cfg: RunConfig, progress: bool = True, log: Any = print) -> RunResult:
    """Run (or resume) the whole experiment described by ``cfg``; see the module docstring."""
    from gpdiff.adapt import FinetuneConfig
    from gpdiff.baselines import NEEDS_GENERATION, Context, get_method
    from gpdiff.device import resolve_device
    from gpdiff.diffusion.train import DiffusionConfig
    from gpdiff.zoo import ZooConfig

    for m in cfg.methods:
        get_method(m)  # fail early on an unknown name
    t_start = time.perf_counter()
    run = Run(cfg.out)
    write_yaml(run.root / "config.yaml", cfg.to_dict())
    device = resolve_device(cfg.device)

    # ---- data
    source_names = default_sources(cfg)
    if cfg.target in source_names:
        raise GpdiffError(f"target {cfg.target!r} is also a source; a target must be new to the model.")
    if not source_names:
        raise GpdiffError("no source cities; pass --sources or put more than one city in --data-dir.")
    target = load_named(cfg.target, cfg.data_dir)
    sources = [load_named(n, cfg.data_dir) for n in source_names]
    window = cfg.history + cfg.horizon
    split = target_split(target.n_steps, target.steps_per_day, cfg.target_days, cfg.val_days, cfg.test_fraction,
                         window, name=target.name)
    fps = {c.name: city_fingerprint(c) for c in [target, *sources]}
    log(f"target {target.name}: {target.n_nodes} nodes, {cfg.target_days:g} few-shot days "
        f"(steps {split.train.start}-{split.train.stop}), validation {split.val.start}-{split.val.stop}, "
        f"test {split.test.start}-{split.test.stop}; sources: {', '.join(source_names)}")

    # ---- zoo
    zoo_cfg = ZooConfig.from_dict({"model": cfg.model, "preset": cfg.preset, "history": cfg.history,
                                   "horizon": cfg.horizon, "k": cfg.k, "seed": cfg.seed, "device": cfg.device,
                                   **cfg.zoo})
    from gpdiff.zoo import load_zoo, train_zoo

    zoo_key = {"zoo": zoo_cfg.to_dict(), "cities": {n: fps[n] for n in source_names}}
    with run.stage("zoo", zoo_key, cfg.seed) as st:
        log(f"[zoo] {'reusing' if st.cached else 'training'} {cfg.model}/{cfg.preset} on "
            f"{sum(c.n_nodes for c in sources)} source nodes")
        zoo = load_zoo(st.path) if st.cached else train_zoo(sources, zoo_cfg, st.path, progress=progress)
    zoo_key_s = key_of(zoo_key)

    # ---- prompts
    from gpdiff.prompts import PromptEncoders, PromptSet, source_segment

    pcfg = {"temporal": "mae", "spatial": "graph", "temporal_config": {}, "spatial_config": {}, **cfg.prompts}
    prompt_key = {"prompts": pcfg, "cities": fps, "split": split.to_dict(), "zoo_split": [zoo_cfg.train, zoo_cfg.val,
                                                                                         zoo_cfg.test],
                  "seed": cfg.seed}
    with run.stage("prompts", prompt_key, cfg.seed) as st:
        src_file, tgt_file = st.path / "prompts_source.safetensors", st.path / "prompts_target.safetensors"
        if st.cached:
            log("[prompts] reusing")
            src_prompts, tgt_prompts = PromptSet.load(src_file), PromptSet.load(tgt_file)
        else:
            log(f"[prompts] fitting {pcfg['temporal']} temporal and {pcfg['spatial']} spatial encoders on the "
                "sources' training periods")
            segs = [source_segment(c, zoo_cfg.train, zoo_cfg.val, zoo_cfg.test) for c in sources]
            tcfg = {"seed": cfg.seed, **(pcfg.get("temporal_config") or {})} if pcfg["temporal"] == "mae" else \
                pcfg.get("temporal_config")
            enc = PromptEncoders.fit(sources, segs, temporal=pcfg["temporal"], spatial=pcfg["spatial"],
                                     temporal_config=tcfg, spatial_config=pcfg.get("spatial_config"),
                                     progress=progress)
            enc.save(st.path / "encoders")
            src_prompts = enc.encode_many(sources, segs)
            tgt_prompts = enc.encode(target, split.train)  # the few-shot days only
            for note in tgt_prompts.meta.get("notes", []):
                log(f"[prompts] {note}")
            src_prompts.save(src_file)
            tgt_prompts.save(tgt_file)
    src_prompts = src_prompts.select(zoo.keys())

    # ---- diffusion
    from gpdiff.diffusion.sample import generate
    from gpdiff.diffusion.train import DiffusionModel, pretrain

    dcfg = DiffusionConfig.from_preset(cfg.denoiser, **{"condition": cfg.condition, "seed": cfg.seed,
                                                        "device": cfg.device, **cfg.diffusion})
    diff_key = {"diffusion": dcfg.to_dict(), "zoo": zoo_key_s, "prompts": key_of(prompt_key)}
    with run.stage("diffusion", diff_key, cfg.seed) as st:
        log(f"[diffusion] {'reusing' if st.cached else 'pre-training'} the {cfg.condition} denoiser "
            f"({dcfg.iters} iterations)")
        dmodel = DiffusionModel.load(st.path) if st.cached else pretrain(zoo, src_prompts, dcfg, st.path, progress)

    # ---- generation
    gen_key = {"diffusion": key_of(diff_key), "sampler": cfg.sampler, "steps": cfg.steps, "guidance": cfg.guidance,
               "seed": cfg.seed}
    generated = None
    if any(m in NEEDS_GENERATION for m in cfg.methods):
        from gpdiff.params import ParamCollection

        with run.stage("generate", gen_key, cfg.seed) as st:
            f = st.path / "generated.safetensors"
            if st.cached:
                generated = ParamCollection.load(f)
            else:
                log(f"[generate] sampling parameters for {target.n_nodes} target nodes ({cfg.sampler}, "
                    f"{cfg.steps} steps)")
                generated = generate(dmodel, tgt_prompts, cfg.sampler, cfg.steps, cfg.guidance, cfg.seed,
                                     progress=progress)
                generated.save(f)

    # ---- methods
    from gpdiff.models import get_model
    from gpdiff.zoo import prepare_cities

    model = get_model(cfg.model, zoo_cfg.model_config())
    tdata = CityData(target, split, history=cfg.history, horizon=cfg.horizon, k=cfg.k, device=device,
                     min_rel_std=cfg.target_scale_floor)
    tdata.require_windows("train")
    tdata.require_windows("val")
    test_origins = tdata.require_windows("test")
    truth, tmask = tdata.truth(test_origins)
    sdata = prepare_cities(sources, zoo_cfg, model, device)
    ft = FinetuneConfig.from_dict(cfg.finetune)
    outputs: dict[str, dict[str, Any]] = {}
    rows: list[dict[str, Any]] = []
    for name in cfg.methods:
        key = {"method": name, "finetune": ft.to_dict(), "options": cfg.baselines.get(name, {}), "zoo": zoo_key_s, "prompts": key_of(prompt_key),
               "target": fps[target.name], "split": split.to_dict(), "scale_floor": cfg.target_scale_floor,
               "seed": cfg.seed,
               "generation": key_of(gen_key) if name in NEEDS_GENERATION else None}
        with run.stage(f"methods/{name}", key, cfg.seed) as st:
            f = st.path / "output.safetensors"
            if st.cached:
                tensors, meta = load_tensors(f)
            else:
                log(f"[{name}] running")
                ctx = Context(model=model, sources=sdata, target=tdata, zoo=zoo, source_prompts=src_prompts,
                              target_prompts=tgt_prompts, finetune=ft, seed=cfg.seed, workdir=st.path,
                              generated=generated, progress=progress, options=dict(cfg.baselines.get(name) or {}))
                out = get_method(name)(ctx)
                tensors = {"pred": torch.from_numpy(np.ascontiguousarray(out.pred, dtype=np.float32))}
                if out.params is not None:
                    tensors["params"] = out.params.float().cpu()
                if out.init is not None:
                    tensors["init"] = out.init.float().cpu()
                meta = {"notes": out.notes}
                save_tensors(f, tensors, meta)
        pred = tensors["pred"].numpy()
        if pred.shape != truth.shape:
            raise AssertionError(f"{name}: predictions {pred.shape} vs truth {truth.shape}")
        metrics: Metrics = masked_metrics(pred, truth, tmask)
        rows += metrics.rows(name)
        outputs[name] = {"pred": pred, "params": tensors.get("params"), "init": tensors.get("init"),
                         "metrics": metrics, "notes": meta.get("notes", {})}

    # ---- report
    from gpdiff.report import write_run_report

    run.timings["total"] = time.perf_counter() - t_start
    report = write_run_report(run.root, cfg, target, split, tdata, test_origins, truth, outputs, rows, zoo,
                              generated, run.timings, source_names,
                              [f"target prompts: {n}" for n in tgt_prompts.meta.get("notes", [])])
    return RunResult(run.root, rows, report, dict(run.timings))
