"""`gpdiff run`: few-shot transfer to a target city, end to end, with every comparison method.

Stages (each a folder of the run directory, computed once; see :mod:`gpdiff.experiment.stages`), one function
each, called in this order by :func:`run_pipeline`:

    anchor -> zoo -> prompts -> target_prompts -> diffusion -> generate -> methods/<name> (one per method)
    -> blend/<name> -> report

(``anchor`` runs when the zoo starts from it, ``zoo.init: anchor``, or a method needs it; ``blend``
runs for every method with parameters when ``blend.naive`` names naive forecasts. With
``ensemble.size`` K > 1, ``ensemble/generate`` samples GPD's members 1 .. K-1 and every method with
parameters gets stages ``ensemble/<name>/<k>``; its ``methods/<name>`` stage is member 0, and the
members' blend is fitted for their mean without a stage of its own: :mod:`gpdiff.evaluation.ensemble`.) The stages
down to ``diffusion`` read the sources only; ``target_prompts`` and everything after it read the
target, so runs that differ only in the target or its split share the denoiser.

Under ``torchrun`` (:mod:`gpdiff.utils.distributed`) rank 0 runs the pipeline as above; the ``zoo``
stage is sharded by node over every rank and the ``diffusion`` stage is data-parallel, the other
ranks joining in (:func:`follow_pipeline`) with what rank 0 sends them. Stage folders, reports
and every other stage are rank 0's.

What a finished stage keeps is what a later stage, the report or a rerun reads, once: a method stage
keeps its parameters and leaves out its test forecasts when they are recomputed from them bit for bit
(:func:`recompute_forecasts`; a naive method's from the target's data), the diffusion stage keeps the EMA
weights that generation samples with (``keep_checkpoints`` keeps the last ones too), and ``RUN/pretrained/``
hard-links the denoiser files it shares with the diffusion stage (:func:`save_pretrained`).

Each stage's key is derived from the config sections it reads, the keys of the stages it reads,
the data it reads and the code (:func:`gpdiff.experiment.stages.stage_key`). The target city is split by
:func:`gpdiff.data.target_split`: only its few-shot days are trained on, its validation slice drives
early stopping, and its test period is scored once, the same way for every method.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpdiff.data.catalog import FLOW_CITIES
from gpdiff.data.city import City, feasible
from gpdiff.data.lookup import data_dir_cities, load_named
from gpdiff.data.splits import Split, target_split
from gpdiff.data.windows import CityData, lag_steps, require_windows
from gpdiff.diffusion.functional import FunctionalLoss
from gpdiff.diffusion.pretrained import GPD, SourceZoo, ratio_to_weekly, source_record
from gpdiff.diffusion.train import DiffusionModel
from gpdiff.evaluation import ensemble, intervals
from gpdiff.evaluation.fallbacks import blend_fallback_notes, scaler_notes, unscored_note
from gpdiff.evaluation.metrics import masked_metrics, node_mae
from gpdiff.experiment.heldout import DEFAULT_FRACTION as DEFAULT_HOLDOUT
from gpdiff.experiment.heldout import HeldoutScores, check_fraction, heldout_scores
from gpdiff.experiment.report import Outcome, RunRecord, write_run_report
from gpdiff.experiment.runconfig import RunConfig
from gpdiff.experiment.stages import Run, Stage
from gpdiff.methods import (
    NEEDS_ANCHOR,
    NEEDS_GENERATION,
    NO_ZOO,
    READS_ANCHOR,
    SOURCE_FITS,
    ZERO_SHOT,
    MethodInputs,
    MethodResult,
    SourceSide,
    fit_on_sources,
    run_method,
)
from gpdiff.methods.adapt import forecast
from gpdiff.models import require_graph
from gpdiff.models.base import BaseModel
from gpdiff.prompts import PromptSet
from gpdiff.utils import distributed
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import link_if_same, load_tensors, read_yaml, save_tensors, write_yaml
from gpdiff.zoo.params import ParamCollection
from gpdiff.zoo.sourcefit import SourceFit

Log = Callable[[str], Any]
RAW_WEIGHTS = "model.safetensors"  # the denoiser's last weights, which a finished diffusion stage drops


@dataclass
class RunResult:
    out: Path
    rows: list[dict[str, Any]]  # results.csv rows
    report: Path
    timings: dict[str, float]
    computed: list[str]  # stages computed by this call, in order
    reused: list[str]  # stages found finished and reused


@dataclass
class Cities:
    """The loaded data of a run: the target with its split, the sources, and content hashes of each
    (``gpdiff pretrain --sources`` has no target: ``target`` and ``split`` are ``None``)."""

    target: City
    sources: list[City]
    split: Split
    fingerprints: dict[str, str]  # city name -> content hash

    def source_names(self) -> list[str]:
        return [c.name for c in self.sources]


# ----------------------------------------------------------------------- cities
def default_sources(cfg: RunConfig) -> list[str]:
    if cfg.sources:
        return list(cfg.sources)
    if cfg.data_dir:
        return [n for n in data_dir_cities(cfg.data_dir) if n != cfg.target]
    return [c for c in FLOW_CITIES if c != cfg.target]


def load_cities(cfg: RunConfig) -> Cities:
    """Target and sources of ``cfg``, and the target's split; clear errors before any expensive stage."""
    if cfg.data_dir and not Path(cfg.data_dir).is_dir():
        raise GpdiffError(f"--data-dir {cfg.data_dir} is not a folder; pass the folder that holds your cities.")
    source_names = default_sources(cfg)
    if cfg.target in source_names:
        raise GpdiffError(f"target {cfg.target!r} is also a source; a target must be new to the model.")
    target = load_named(cfg.target, cfg.data_dir)  # an unknown target is named before missing sources
    if not source_names:
        raise GpdiffError("no source cities; pass --sources or put more than one city in --data-dir.")
    sources = [load_named(n, cfg.data_dir) for n in source_names]
    w = cfg.window
    # every check the data can decide, before anything trains (gpdiff bench runs this for every experiment);
    # the few-shot days must hold a training window (with its seasonal lag) only for methods that train there
    fitting = [m for m in cfg.methods if m not in ZERO_SHOT]
    lag = lag_steps(w.context, target.steps_per_day)
    try:
        split = target_split(target.n_steps, target.steps_per_day, cfg.target_days, cfg.val_days,
                             cfg.test_fraction, w.length, name=target.name, lag=lag if fitting else 0)
        if fitting:
            require_windows(target, split.train, "train", w.history, w.horizon, w.context)
    except GpdiffError as exc:
        if not (lag and fitting):
            raise
        raise GpdiffError(f"{exc} Methods {', '.join(fitting)} train on the few-shot days; a run of zero-shot "
                          f"methods only ({', '.join(ZERO_SHOT)}) does not need such a window.") from None
    for segment in ("val", "test"):
        require_windows(target, getattr(split, segment), segment, w.history, w.horizon, w.context)
    require_graph(target, cfg.model.name)
    check_sources(cfg, sources)
    return Cities(target, sources, split, {c.name: c.fingerprint() for c in [target, *sources]})


def check_sources(cfg: RunConfig, sources: list[City]) -> None:
    """Every check of the source cities the data can decide, before anything trains."""
    w = cfg.window
    for city in sources:
        require_graph(city, cfg.model.name)
        s = cfg.source_split.of(city.n_steps, city.name)
        for segment in ("train", "val"):
            require_windows(city, getattr(s, segment), segment, w.history, w.horizon, w.context)


def target_data(cfg: RunConfig, cities: Cities, device: torch.device) -> CityData:
    """The target under its split (checked by :func:`load_cities`), scaled with its few-shot days only."""
    w = cfg.window
    return CityData(cities.target, cities.split, history=w.history, horizon=w.horizon, n_neighbors=w.n_neighbors,
                    device=device, min_rel_std=cfg.target_scale_floor, context=w.context)


# ----------------------------------------------------------------------- stages
def anchor_stage(run: Run, cfg: RunConfig, cities: Cities, progress: bool, log: Log) -> tuple[Stage, torch.Tensor]:
    """One model on all source nodes (:func:`gpdiff.zoo.anchor.fit_anchor`)."""
    from gpdiff.zoo.anchor import Anchor, fit_anchor

    data = {n: cities.fingerprints[n] for n in cities.source_names()}
    reads = {"window": cfg.window, "model": cfg.model, "source_split": cfg.source_split, "anchor": cfg.anchor,
             "seed": cfg.seed}
    with run.stage("anchor", reads, data=data, seed=cfg.seed) as st:
        log(f"[anchor] {'reusing' if st.cached else 'training'} one {cfg.model.name}/{cfg.model.preset} on all "
            f"{sum(c.n_nodes for c in cities.sources)} source nodes ({cfg.anchor.balance}-balanced)")
        if not st.cached:
            fit_anchor(cities.sources, cfg.anchor, model=cfg.model, window=cfg.window, split=cfg.source_split,
                       seed=cfg.seed, device=cfg.device, progress=progress, workdir=st.path)
        anchor = Anchor.load(st.path)  # what was saved, so a fresh and a reused stage give the same result
    record = anchor.record
    if record.get("improved") is False:
        log(f"[anchor] warning: training never beat the initial parameters (source validation loss "
            f"{record['initial_val_loss']:.4f}), so the anchor is its start"
            f"{' (the seasonal value, model.residual seasonal)' if cfg.model.residual == 'seasonal' else ''}; "
            "a lower anchor.lr may let it learn.")
    return st, anchor.params


def zoo_stage(run: Run, cfg: RunConfig, cities: Cities, anchor: tuple[Stage, torch.Tensor] | None, progress: bool,
              log: Log) -> tuple[Stage, ParamCollection]:
    """One model per source node (:func:`gpdiff.zoo.train.train_zoo`), fine-tuned from the anchor when
    ``zoo.init`` is ``anchor``."""
    from gpdiff.utils.device import resolve_device
    from gpdiff.zoo.train import load_zoo, train_zoo

    data = {n: cities.fingerprints[n] for n in cities.source_names()}
    start = anchor if cfg.zoo.init == "anchor" else None
    inputs = [start[0]] if start is not None else []
    reads: dict[str, Any] = {"window": cfg.window, "model": cfg.model, "source_split": cfg.source_split,
                             "zoo": cfg.zoo, "seed": cfg.seed}
    if distributed.world_size() > 1 and cfg.zoo.node_chunk == 0 and resolve_device(cfg.device).type == "cuda":
        reads["ranks"] = distributed.world_size()  # a GPU's automatic chunk is a process's share of the nodes
    with run.stage("zoo", reads, inputs, data=data, seed=cfg.seed) as st:
        ranks = f" on {distributed.world_size()} processes" if distributed.active() else ""
        members = f", {cfg.zoo.members} members per node" if cfg.zoo.members > 1 else ""
        log(f"[zoo] {'reusing' if st.cached else 'training'} {cfg.model.name}/{cfg.model.preset} on "
            f"{sum(c.n_nodes for c in cities.sources)} source nodes (init: {cfg.zoo.init}){members}{ranks}")
        anchor_params = start[1].cpu() if start is not None else None
        distributed.broadcast_object(None if st.cached else (str(st.path), anchor_params))  # the ranks' share
        zoo = load_zoo(st.path) if st.cached else train_zoo(
            cities.sources, cfg.zoo, model=cfg.model, window=cfg.window, split=cfg.source_split,
            anchor=anchor_params, seed=cfg.seed, device=cfg.device, progress=progress, workdir=st.path)
    assert zoo is not None
    return st, zoo


def prompts_stage(run: Run, cfg: RunConfig, cities: Cities, progress: bool, log: Log
                  ) -> tuple[Stage, PromptSet]:
    """Prompt encoders fitted on the sources' training segments, and the prompts of every source node
    (from its training segment). Reads the sources only, so runs that differ in the target's split
    (``target_days``) share it, and with it the denoiser."""
    from gpdiff.prompts import fit_prompts, source_segment

    p = cfg.prompts
    segments = [source_segment(c, cfg.source_split) for c in cities.sources]
    reads = {"prompts": p, "seed": cfg.seed, "source_segments": dict(zip(cities.source_names(), segments))}
    data = {n: cities.fingerprints[n] for n in cities.source_names()}
    with run.stage("prompts", reads, data=data, seed=cfg.seed) as st:
        src_file = st.path / "prompts_source.safetensors"
        if st.cached:
            log("[prompts] reusing the source prompts")
            return st, PromptSet.load(src_file)
        log(f"[prompts] fitting {p.temporal} temporal and {p.spatial} spatial encoders on the sources' training "
            "periods")
        enc = fit_prompts(cities.sources, p, segments=segments, seed=cfg.seed, progress=progress)
        enc.save(st.path / "encoders")
        source = enc.encode_many(cities.sources, segments)
        source.save(src_file)
    return st, source


def target_prompts_stage(run: Run, cfg: RunConfig, cities: Cities, prompts_st: Stage, log: Log
                         ) -> tuple[Stage, PromptSet]:
    """The prompts of every target node, from its few-shot days only, by the encoders of ``prompts_st``."""
    from gpdiff.prompts import PromptEncoders

    data = {cities.target.name: cities.fingerprints[cities.target.name]}
    reads = {"target_segment": cities.split.train, "seed": cfg.seed}
    with run.stage("target_prompts", reads, [prompts_st], data=data, seed=cfg.seed) as st:
        f = st.path / "prompts_target.safetensors"
        if st.cached:
            return st, PromptSet.load(f)
        log(f"[target_prompts] encoding {cities.target.n_nodes} target nodes from their few-shot days")
        target = PromptEncoders.load(prompts_st.path / "encoders").encode(cities.target, cities.split.train)
        for note in target.meta.get("notes", []):
            log(f"[target_prompts] {note}")
        target.save(f)
    return st, target


def diffusion_stage(run: Run, cfg: RunConfig, cities: Cities, zoo: tuple[Stage, ParamCollection],
                    prompts: tuple[Stage, PromptSet], progress: bool, log: Log) -> tuple[Stage, DiffusionModel]:
    """The denoiser pre-trained on the zoo, conditioned on the source prompts."""
    from gpdiff.diffusion.train import train_denoiser

    (zoo_st, collection), (prompts_st, source_prompts) = zoo, prompts
    d = cfg.diffusion
    ranks = distributed.world_size()  # data-parallel training depends on it (one process: not in the key)
    reads = {"diffusion": d, "seed": cfg.seed, **({"ranks": ranks} if ranks > 1 else {})}
    with run.stage("diffusion", reads, [zoo_st, prompts_st], seed=cfg.seed) as st:
        log(f"[diffusion] {'reusing' if st.cached else 'pre-training'} the {d.denoiser.condition} denoiser "
            f"({d.max_steps} training steps)")
        distributed.broadcast_object(None if st.cached or not distributed.active()
                                     else (str(st.path), collection, source_prompts))
        if not st.cached:
            train_denoiser(collection, source_prompts, d, seed=cfg.seed, device=cfg.device, progress=progress,
                           workdir=st.path, functional=functional_loss(cfg, cities, collection))
            if not cfg.keep_checkpoints:  # generation samples with the EMA weights: the last ones are not kept
                (st.path / RAW_WEIGHTS).unlink(missing_ok=True)
        # what was saved, so a fresh and a reused stage give the same model (a stage of an older version keeps both)
        model = DiffusionModel.load(st.path, device=cfg.device)
    return st, model


def functional_loss(cfg: RunConfig, cities: Cities, zoo: ParamCollection) -> FunctionalLoss | None:
    """The denoiser's functional loss on the source cities' training windows (only with
    ``diffusion.functional_weight > 0``)."""
    from gpdiff.utils.device import resolve_device

    if cfg.diffusion.functional_weight <= 0:
        return None
    return FunctionalLoss.for_zoo(zoo, cities.sources, cfg.diffusion.functional_windows, resolve_device(cfg.device))


def generate_stage(run: Run, cfg: RunConfig, diffusion: tuple[Stage, DiffusionModel], target_st: Stage,
                   target_prompts: PromptSet, progress: bool, log: Log) -> tuple[Stage, ParamCollection]:
    """Parameters for every target node, sampled from its prompts."""
    from gpdiff.diffusion.sample import generate

    diff_st, model = diffusion
    g = cfg.generate
    with run.stage("generate", {"generate": g, "seed": cfg.seed}, [diff_st, target_st], seed=cfg.seed) as st:
        f = st.path / "generated.safetensors"
        if st.cached:
            return st, ParamCollection.load(f)
        log(f"[generate] sampling parameters for {len(target_prompts)} target nodes ({g.sampler}, "
            f"{g.num_inference_steps} steps, mean of {g.num_samples} sample(s))")
        generated = generate(model, target_prompts, g, seed=cfg.seed, progress=progress)
        generated.save(f)
    return st, generated


def member_generate_stage(run: Run, cfg: RunConfig, diffusion: tuple[Stage, DiffusionModel], target_st: Stage,
                          target_prompts: PromptSet, progress: bool, log: Log) -> tuple[Stage, torch.Tensor]:
    """The generations of GPD's ensemble members 1 .. K-1 ``[K - 1, N, P]`` (:func:`gpdiff.evaluation.ensemble.member_generations`)."""
    diff_st, model = diffusion
    reads = {"generate": cfg.generate, "seed": cfg.seed, "ensemble_size": cfg.ensemble.size}
    with run.stage("ensemble/generate", reads, [diff_st, target_st], seed=cfg.seed) as st:
        f = st.path / "members.safetensors"
        if st.cached:
            return st, load_tensors(f)[0]["params"]
        log(f"[generate] sampling {cfg.ensemble.size - 1} more ensemble member(s) for {len(target_prompts)} target "
            "nodes")
        params = torch.stack([g.params for g in ensemble.member_generations(
            model, target_prompts, cfg.generate, cfg.seed, cfg.ensemble.size, progress)])
        save_tensors(f, {"params": params}, {"seeds": [ensemble.member_seed(cfg.seed, k)
                                                       for k in range(1, cfg.ensemble.size)]})
    return st, params


def source_fit_stage(run: Run, cfg: RunConfig, cities: Cities, name: str, side: SourceSide, log: Log,
                     inputs: list[Stage] | None = None) -> tuple[Stage, SourceFit]:
    """Method ``name``'s fit on the sources alone (:data:`gpdiff.methods.SOURCE_FITS`) with its run-config
    settings and the run's seed: what a pretrained folder keeps, and what the method's own stage reads.
    ``inputs``: the zoo and prompts stages, for the fits of the zoo methods."""
    data = {n: cities.fingerprints[n] for n in cities.source_names()}
    reads = {"method": name, "settings": cfg.methods.get(name, {}), "window": cfg.window, "model": cfg.model,
             "source_split": cfg.source_split, "seed": cfg.seed}
    with run.stage(f"fits/{name}", reads, inputs or [], data=data, seed=cfg.seed) as st:
        f = st.path / "fit.safetensors"
        if not st.cached:
            log(f"[fits] fitting {name} on the sources")
            fit_on_sources(name, dataclasses.replace(side, options=dict(cfg.methods.get(name, {})))).save(f)
    return st, SourceFit.load(f)  # what was saved, so a fresh and a reused stage give the same result


def method_stage(run: Run, cfg: RunConfig, name: str, inputs: list[Stage], cities: Cities,
                 method_inputs: Callable[[Path], MethodInputs], log: Log, member: int = 0) -> tuple[Stage, MethodResult]:
    """One comparison method, run on the target (``method_inputs(workdir)`` builds what it may use);
    ``member`` > 0: that member of the method's ensemble (:mod:`gpdiff.evaluation.ensemble`), its own stage."""
    # the sources' data and split too: a method without a zoo stage among its inputs (pooled_linear) reads them
    reads = {"method": name, "settings": cfg.methods[name], "finetune": cfg.finetune, "window": cfg.window,
             "split": cities.split, "target_scale_floor": cfg.target_scale_floor, "seed": cfg.seed,
             "source_split": cfg.source_split}
    folder = f"methods/{name}"
    if member:
        reads["member"], folder = member, f"ensemble/{name}/{member}"
    data = dict(cities.fingerprints)
    with run.stage(folder, reads, inputs, data=data, seed=cfg.seed) as st:
        f = st.path / "output.safetensors"
        ctx = method_inputs(st.path)
        fresh = None  # a computed stage's forecasts as recomputed (what its file leaves out, if it does)
        if not st.cached:
            log(f"[{name}] running" + (f" ensemble member {member + 1} of {cfg.ensemble.size}" if member else ""))
            result = run_method(name, ctx)
            # the test forecasts stay out of the file when what it keeps gives them back bit for bit
            fresh = recompute_forecasts(name, result.params, ctx.model, ctx.target)
            result.save(f, forecasts=not same_forecasts(result.pred, fresh))
    # what was saved, so a fresh and a reused stage give the same result
    return st, MethodResult.load(f, lambda params: fresh if fresh is not None
                                 else recompute_forecasts(name, params, ctx.model, ctx.target))


def recompute_forecasts(name: str, params: torch.Tensor | None, model: BaseModel, target: CityData
                        ) -> np.ndarray | None:
    """Method ``name``'s test forecasts ``[N, B, H]`` (original scale, float32) recomputed from what its
    stage keeps: its parameters ``params [N, P]`` (as saved, float32) through ``model``, or, for a naive
    method, the target's data alone; ``None`` for a method whose forecasts are neither (pooled_linear).
    :func:`method_stage` leaves a method's forecasts out of its file only when this gives them back bit
    for bit (a few seconds per method on a CPU against megabytes per stage)."""
    from gpdiff.evaluation.blend import NAIVE

    if params is not None:
        pred = forecast(model, params.float().cpu(), target, "test")
    elif name in NAIVE:
        pred = NAIVE[name](target, target.origins("test"))
    else:
        return None
    return np.ascontiguousarray(pred, dtype=np.float32)


def same_forecasts(a: np.ndarray, b: np.ndarray | None) -> bool:
    """Whether ``b`` is ``a`` bit for bit once both are float32 (NaNs included); ``False`` for ``None``."""
    if b is None:
        return False
    a32, b32 = (np.ascontiguousarray(x, dtype=np.float32) for x in (a, b))
    return a32.shape == b32.shape and a32.tobytes() == b32.tobytes()


def blend_stage(run: Run, cfg: RunConfig, name: str, method: tuple[Stage, MethodResult], model: BaseModel,
                tdata: CityData, cities: Cities, log: Log) -> tuple[MethodResult, np.ndarray]:
    """The method's test forecasts blended with the naive forecasts of ``cfg.blend``, the weights
    fitted on its validation forecasts (:mod:`gpdiff.evaluation.blend`); parameters and init stay the method's.
    Returns the blended result and the weights ``[H, K]``."""
    from gpdiff.evaluation import blend

    method_st, result = method
    assert result.params is not None or result.val_pred is not None  # only learned methods are blended
    names = cfg.blend.naive
    reads = {"blend": cfg.blend, "window": cfg.window, "split": cities.split,
             "target_scale_floor": cfg.target_scale_floor}
    data = {cities.target.name: cities.fingerprints[cities.target.name]}
    with run.stage(f"blend/{name}", reads, [method_st], data=data, seed=cfg.seed) as st:
        f = st.path / "blend.safetensors"  # the weights only: the blended forecasts are recomputed from them
        if not st.cached:
            val = result.val_pred if result.val_pred is not None else forecast(model, result.params, tdata, "val")
            fitted = blend.fit_blend(val, tdata, cfg.blend)
            fitted.save(f)
            log(f"[blend] {name}: validation MAE {fitted.val_mae[0]:.4g} -> {fitted.val_mae[1]:.4g} "
                f"({blend.weights_note(names, fitted.weights)})")
    fitted = blend.BlendFit.load(f)
    weights = fitted.weights
    notes = {**result.notes, "blend": blend.weights_note(fitted.names, weights),
             "blend_val_mae": " -> ".join(f"{float(v):.5g}" for v in fitted.val_mae)}  # alone -> blended
    short = {n: v for n, v in fitted.val_lagged.items() if v < 1}
    if short:  # the validation day has no week (or day) before it inside the few-shot days
        notes["blend_val_fallback"] = "; ".join(
            f"{n} is the lagged value for {v:.0%} of the validation values, the few-shot days' profile for the "
            "rest (nothing before the few-shot days is read)" for n, v in short.items())
    pred = fitted.apply(result.pred, tdata, tdata.origins("test"))
    return MethodResult(pred=pred, params=result.params, notes=notes, val_pred=result.val_pred), weights


def ensemble_members(run: Run, cfg: RunConfig, name: str, inputs: list[Stage], first: MethodResult,
                     members_gen: tuple[Stage, torch.Tensor] | None, cities: Cities,
                     method_inputs: Callable[[str, int], Callable[[Path], MethodInputs]], model: BaseModel, tdata: CityData,
                     truth: np.ndarray, mask: np.ndarray, log: Log) -> tuple[MethodResult, ensemble.Members]:
    """Method ``name``'s ensemble of ``cfg.ensemble.size`` members (``first``: member 0, the method's own
    stage; the others each a stage ``ensemble/<name>/<k>``), blended as configured: the result's
    forecasts are the members' mean, its parameters member 0's (:mod:`gpdiff.evaluation.ensemble`)."""
    from gpdiff.evaluation import blend

    extra = [members_gen[0]] if name in NEEDS_GENERATION and members_gen is not None else []
    results = [first] + [method_stage(run, cfg, name, inputs + extra, cities, method_inputs(name, k), log, member=k)[1]
                         for k in range(1, cfg.ensemble.size)]
    kind = cities.target.kind
    raw_test = np.stack([r.pred for r in results])
    raw_val = np.stack([r.pred if r.params is None else forecast(model, r.params, tdata, "val") for r in results])
    m = ensemble.combine(raw_test, raw_val, tdata, cfg.blend, kind)
    notes = {**first.notes, "ensemble": f"{cfg.ensemble.size} members (mean forecast), "
             + ("generations of seeds " if name in NEEDS_GENERATION else "fine-tuning seeds ")
             + ", ".join(str(ensemble.member_seed(cfg.seed, k)) for k in range(cfg.ensemble.size))}
    if m.weights is not None and m.blend_val_mae is not None:
        alone = masked_metrics(feasible(raw_test.mean(0, dtype=np.float64).astype(np.float32), kind), truth, mask)
        notes.update({"blend": blend.weights_note(list(cfg.blend.naive), m.weights),
                      "blend_val_mae": " -> ".join(f"{v:.5g}" for v in m.blend_val_mae),
                      "mae_without_blend": round(float(alone.mae_avg), 5)})
        short = {n: v for n, v in m.val_lagged.items() if v < 1}
        if short:  # as in blend_stage: the validation day has no week (or day) before it inside the few-shot days
            notes["blend_val_fallback"] = "; ".join(
                f"{n} is the lagged value for {v:.0%} of the validation values, the few-shot days' profile for the "
                "rest (nothing before the few-shot days is read)" for n, v in short.items())
        log(f"[blend] {name} ensemble: validation MAE {m.blend_val_mae[0]:.4g} -> {m.blend_val_mae[1]:.4g}")
    return MethodResult(pred=m.point, params=first.params, notes=notes), m


def val_forecast(cfg: RunConfig, name: str, result: MethodResult, weights: np.ndarray | None, model: BaseModel,
                 tdata: CityData) -> np.ndarray:
    """A method's final forecasts ``[N, B, H]`` of the target's validation windows (blended with the
    weights its blend stage fitted there, and feasible), the calibration set of its intervals."""
    from gpdiff.evaluation import blend

    origins = tdata.origins("val")
    if result.params is None and result.val_pred is None:  # a naive method
        pred = blend.NAIVE[name](tdata, origins)
    else:
        pred = result.val_pred if result.val_pred is not None else forecast(model, result.params, tdata, "val")
        if weights is not None:
            pred = blend.apply_weights(pred, blend.naive_forecasts(tdata, origins, cfg.blend.naive), weights)
    return feasible(pred, tdata.city.kind)


def pretrained_gpd(cfg: RunConfig, cities: Cities, anchor: tuple[Stage, torch.Tensor], prompts_st: Stage,
                   denoiser: DiffusionModel, timings: dict[str, float], fits: dict[str, SourceFit] | None = None,
                   zoo: SourceZoo | None = None, heldout: HeldoutScores | None = None) -> GPD:
    """The pretrained GPD of a run's source stages (:mod:`gpdiff.diffusion.pretrained`), with the source
    fits ``fits`` of methods that need no zoo, the zoo part ``zoo`` (``None``: without it) and the model
    card's held-out scores ``heldout`` (``None``: not measured, as in a run's ``pretrained/``)."""
    from gpdiff.prompts import PromptEncoders
    from gpdiff.utils.hashing import code_fingerprint
    from gpdiff.zoo.anchor import Anchor

    wall = sum(timings.get(k, 0.0) for k in ("anchor", "zoo", "prompts", "diffusion"))
    record = Anchor.load(anchor[0].path).record
    scores = {"anchor: validation loss on the sources' validation steps (scaled MAE)": round(float(record["val_loss"]), 5),
              "denoiser: final training loss": round(float(denoiser.info.get("final_loss", float("nan"))), 5)}
    card = {"code": code_fingerprint(), "seed": cfg.seed, "wall_time": f"{wall:.0f} s (anchor, zoo, prompts, denoiser)",
            "scores": scores, **({"heldout": heldout.to_dict()} if heldout is not None else {})}
    return GPD(cfg.window, cfg.model.architecture(), anchor[1],
               PromptEncoders.load(prompts_st.path / "encoders"), denoiser, cfg.generate,
               [source_record(c, cities.fingerprints[c.name]) for c in cities.sources], card, dict(fits or {}), zoo)


def heldout_stage(run: Run, cfg: RunConfig, cities: Cities, anchor: tuple[Stage, torch.Tensor],
                  zoo: tuple[Stage, ParamCollection], prompts: tuple[Stage, PromptSet], side: SourceSide,
                  fraction: float, progress: bool, log: Log) -> HeldoutScores:
    """The model card's held-out source-node scores (:func:`gpdiff.experiment.heldout.heldout_scores`); the
    check denoiser is deleted once scored (``keep_checkpoints`` keeps it)."""
    import shutil

    data = {n: cities.fingerprints[n] for n in cities.source_names()}
    reads = {"holdout": fraction, "diffusion": cfg.diffusion, "generate": cfg.generate, "window": cfg.window,
             "model": cfg.model, "source_split": cfg.source_split, "seed": cfg.seed}
    with run.stage("heldout", reads, [anchor[0], zoo[0], prompts[0]], data=data, seed=cfg.seed) as st:
        f = st.path / "scores.yaml"
        if not st.cached:
            log(f"[heldout] training a check denoiser without {fraction:.0%} of every source city's nodes, then "
                "scoring their generated parameters on the sources' test windows")
            scores = heldout_scores(zoo[1], prompts[1], side.sources, side.model, cfg.diffusion, cfg.generate,
                                    anchor[1], fraction=fraction, seed=cfg.seed, device=cfg.device,
                                    workdir=st.path / "denoiser", functional=cfg.diffusion.functional_weight > 0,
                                    progress=progress)
            write_yaml(f, scores.to_dict())
            if not cfg.keep_checkpoints:
                shutil.rmtree(st.path / "denoiser", ignore_errors=True)
    scores = HeldoutScores.from_dict(read_yaml(f))
    ratio = ratio_to_weekly(scores.mae)
    log(f"[heldout] {scores.n_held} held-out source nodes, test MAE as a ratio to weekly naive (mean over "
        f"cities): generated {ratio['generated']:.3f}, anchor alone {ratio['anchor alone']:.3f}")
    return scores


def pretrained_fits(run: Run, cfg: RunConfig, cities: Cities, side: SourceSide, log: Log
                    ) -> tuple[dict[str, Stage], dict[str, SourceFit]]:
    """The source fits a pretrained folder keeps without the zoo (``pooled_linear``'s ridge), each a stage.
    A fit the sources cannot give (e.g. a horizon longer than a day) is left out with a log line, unless
    the run's methods need it (then its :class:`GpdiffError` stops the run)."""
    stages, fits = {}, {}
    for name in [n for n in SOURCE_FITS if n in NO_ZOO]:
        try:
            stages[name], fits[name] = source_fit_stage(run, cfg, cities, name, side, log)
        except GpdiffError as exc:
            if name in cfg.methods:
                raise
            log(f"[fits] {name} left out of the pretrained folder: {exc}")
    return stages, fits


def zoo_part(run: Run, cfg: RunConfig, cities: Cities, zoo: tuple[Stage, ParamCollection],
             prompts: tuple[Stage, PromptSet], side: SourceSide, log: Log) -> SourceZoo:
    """The zoo part of a pretrained folder (``gpdiff pretrain --with-zoo``): the zoo, its rows' prompts,
    and the source fits of the zoo methods (each a stage reading the zoo and prompts stages)."""
    side = dataclasses.replace(side, zoo=zoo[1], source_prompts=prompts[1])
    fits = {name: source_fit_stage(run, cfg, cities, name, side, log, [zoo[0], prompts[0]])[1]
            for name in SOURCE_FITS if name not in NO_ZOO}
    return SourceZoo(zoo[1], prompts[1], fits)


def save_pretrained(gpd: GPD, path: Path, diffusion_st: Stage) -> Path:
    """:meth:`GPD.save_pretrained` to ``path``, then each file of its ``denoiser/`` (the EMA weights, the
    standardiser, the config) a hard link to the diffusion stage's file of that name where the bytes are
    the same (:func:`gpdiff.utils.io.link_if_same`), so the disk holds them once; the folder stays whole
    on its own (a copy where no link can be made)."""
    gpd.save_pretrained(path)
    for f in sorted((path / "denoiser").iterdir()):
        link_if_same(diffusion_st.path / f.name, f)
    return path


def pretrain_sources(cfg: RunConfig, out: str | Path, work: str | Path | None = None, progress: bool = True,
                     log: Log = print, with_zoo: bool = False, holdout: float = DEFAULT_HOLDOUT) -> GPD:
    """Pretrain GPD on ``cfg.sources`` (the stages anchor, zoo, prompts, diffusion and the source fits,
    kept and resumed in ``work``, default ``OUT.stages``) and save it to ``out`` as a pretrained folder,
    with the zoo part when ``with_zoo`` (the zoo methods' inputs; 17-21 MB for the bundled cities).
    ``holdout`` > 0: the model card's held-out scores, from a second denoiser trained without that share
    of every source city's nodes (:mod:`gpdiff.experiment.heldout`; one more denoiser training).
    Raises :class:`GpdiffError` before any training for missing or unusable sources or a bad ``holdout``."""
    from gpdiff.utils.device import resolve_device
    from gpdiff.zoo.sourcepool import prepare_cities

    check_fraction(holdout)
    if not cfg.sources:
        raise GpdiffError("pretraining needs source cities; pass --sources a,b,... (bundled names or cities in "
                          "--data-dir).")
    sources = [load_named(n, cfg.data_dir) for n in cfg.sources]
    check_sources(cfg, sources)
    cities = Cities(None, sources, None, {c.name: c.fingerprint() for c in sources})  # type: ignore[arg-type]
    distributed.init(resolve_device(cfg.device))
    out = Path(out)
    run = Run(Path(work) if work else out.with_name(out.name + ".stages"), keep_checkpoints=cfg.keep_checkpoints,
              log=log)
    write_yaml(run.root / "config.yaml", cfg.to_dict())
    anchor = anchor_stage(run, cfg, cities, progress, log)
    zoo_st, zoo = zoo_stage(run, cfg, cities, anchor, progress, log)
    prompts_st, source_prompts = prompts_stage(run, cfg, cities, progress, log)
    source_prompts = source_prompts.select(zoo.keys())
    diffusion_st, denoiser = diffusion_stage(run, cfg, cities, (zoo_st, zoo), (prompts_st, source_prompts), progress,
                                             log)
    model = cfg.model.build(cfg.window)
    side = SourceSide(model, prepare_cities(sources, cfg.window, cfg.source_split, model, resolve_device(cfg.device)),
                      None, None, cfg.seed, progress=progress)
    _, fits = pretrained_fits(run, cfg, cities, side, log)
    part = zoo_part(run, cfg, cities, (zoo_st, zoo), (prompts_st, source_prompts), side, log) if with_zoo else None
    held = None
    if holdout > 0 and distributed.active():  # the check denoiser would wait for ranks that have stopped
        log("[heldout] not measured under torchrun; pretrain in one process for the model card's held-out scores")
    elif holdout > 0:
        held = heldout_stage(run, cfg, cities, anchor, (zoo_st, zoo), (prompts_st, source_prompts), side, holdout,
                             progress, log)
    gpd = pretrained_gpd(cfg, cities, anchor, prompts_st, denoiser, run.timings, fits, part, held)
    save_pretrained(gpd, out, diffusion_st)
    log(f"[pretrain] wrote the pretrained GPD to {out} (sources: {', '.join(cfg.sources)}"
        f"{'; with the zoo' if with_zoo else ''})")
    return gpd


# ---------------------------------------------------------------------- pipeline
def follow_pipeline(cfg: RunConfig, cities: Cities) -> None:
    """A rank other than 0 under torchrun: take part in the zoo and diffusion stages of the run rank 0
    makes of ``cfg`` (in the same order, with what rank 0 sends), then return."""
    from gpdiff.diffusion.train import train_denoiser
    from gpdiff.zoo.train import train_zoo

    if all(m in NO_ZOO for m in cfg.methods):  # rank 0 trains nothing on the sources either
        return
    share = distributed.broadcast_object(None)  # zoo_stage: None when cached, else (folder, anchor)
    if share is not None:
        path, anchor = share
        train_zoo(cities.sources, cfg.zoo, model=cfg.model, window=cfg.window, split=cfg.source_split, anchor=anchor,
                  seed=cfg.seed, device=cfg.device, progress=False, workdir=path)
    if any(m in NEEDS_GENERATION for m in cfg.methods):
        share = distributed.broadcast_object(None)  # diffusion_stage: None when cached, else (folder, zoo, prompts)
        if share is not None:
            path, zoo, prompts = share
            train_denoiser(zoo, prompts, cfg.diffusion, seed=cfg.seed, device=cfg.device, progress=False,
                           workdir=path, functional=functional_loss(cfg, cities, zoo))


@dataclass
class SourceStages:
    """What the stages before the methods produced (each ``None`` when no method of the run needs it):
    the anchor, the zoo, the source and target prompts, the denoiser, the generated parameters and
    the ensemble's extra generations, each with its stage, plus the source fits."""

    anchor: tuple[Stage, torch.Tensor] | None = None
    zoo_st: Stage | None = None
    zoo: ParamCollection | None = None
    prompts_st: Stage | None = None
    source_prompts: PromptSet | None = None
    target_st: Stage | None = None
    target_prompts: PromptSet | None = None
    diffusion: tuple[Stage, DiffusionModel] | None = None
    gen_st: Stage | None = None
    generated: ParamCollection | None = None
    members_gen: tuple[Stage, torch.Tensor] | None = None
    fit_stages: dict[str, Stage] = dataclasses.field(default_factory=dict)
    fits: dict[str, SourceFit] = dataclasses.field(default_factory=dict)

    def inputs_of(self, name: str) -> list[Stage]:
        """The stages method ``name``'s stage reads (its key depends on theirs)."""
        inputs = [st for st in (self.zoo_st, self.target_st) if st is not None]
        inputs += [self.gen_st] if name in NEEDS_GENERATION and self.gen_st is not None else []
        inputs += [self.anchor[0]] if name in READS_ANCHOR and self.anchor is not None else []
        return inputs + ([self.fit_stages[name]] if name in self.fit_stages else [])


def source_stages(run: Run, cfg: RunConfig, cities: Cities, model: BaseModel, sources: list[CityData],
                  progress: bool, log: Log) -> SourceStages:
    """Every stage before the methods that ``cfg.methods`` need, in pipeline order, and the run's
    pretrained folder (``RUN/pretrained/``) when a denoiser was trained from an anchor."""
    out = SourceStages()
    needs_zoo = any(m not in NO_ZOO for m in cfg.methods)  # naive and pooled_linear only: no source training stage
    if (cfg.zoo.init == "anchor" and needs_zoo) or any(m in NEEDS_ANCHOR for m in cfg.methods):
        out.anchor = anchor_stage(run, cfg, cities, progress, log)
    if needs_zoo:
        out.zoo_st, out.zoo = zoo_stage(run, cfg, cities, out.anchor, progress, log)
        out.prompts_st, prompts = prompts_stage(run, cfg, cities, progress, log)
        out.source_prompts = prompts.select(out.zoo.keys())
        out.target_st, out.target_prompts = target_prompts_stage(run, cfg, cities, out.prompts_st, log)
    if any(m in NEEDS_GENERATION for m in cfg.methods):
        out.diffusion = diffusion_stage(run, cfg, cities, (out.zoo_st, out.zoo), (out.prompts_st, out.source_prompts),
                                        progress, log)
        out.gen_st, out.generated = generate_stage(run, cfg, out.diffusion, out.target_st, out.target_prompts,
                                                   progress, log)
        if cfg.ensemble.active:
            out.members_gen = member_generate_stage(run, cfg, out.diffusion, out.target_st, out.target_prompts,
                                                    progress, log)
    writes_pretrained = out.diffusion is not None and out.anchor is not None
    if writes_pretrained or any(m in SOURCE_FITS and m in NO_ZOO for m in cfg.methods):  # pooled_linear's ridge
        out.fit_stages, out.fits = pretrained_fits(run, cfg, cities, SourceSide(model, sources, None, None, cfg.seed,
                                                                                 progress=progress), log)
    if writes_pretrained:  # everything a new city needs from these sources, as one folder (gpdiff fit --pretrained);
        # without the zoo, which the run keeps in its zoo stage (gpdiff pretrain --with-zoo makes one with it)
        assert out.anchor is not None and out.diffusion is not None and out.prompts_st is not None
        save_pretrained(pretrained_gpd(cfg, cities, out.anchor, out.prompts_st, out.diffusion[1], run.timings, out.fits),
                        run.root / "pretrained", out.diffusion[0])
    return out


@dataclass
class Scoring:
    """The target's test and validation windows a method is scored and calibrated on."""

    tdata: CityData
    origins: np.ndarray  # [B] test origins
    truth: np.ndarray  # [N, B, H] test targets, original scale
    mask: np.ndarray  # [N, B, H] observed
    val_truth: np.ndarray  # [N, Bv, H] validation targets
    val_mask: np.ndarray

    def daily(self, first: intervals.Calibration, scores: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Quantiles ``[L, B, H]`` of the test windows recalibrated once a day on the nonconformity
        ``scores [N, B, H]`` of the day before (:func:`gpdiff.evaluation.intervals.daily_quantiles`)."""
        return intervals.daily_quantiles(first, scores, self.mask, self.origins, self.tdata.split.test.start,
                                         self.tdata.city.steps_per_day)


def score_method(cfg: RunConfig, name: str, result: MethodResult, weights: np.ndarray | None,
                 members: ensemble.Members | None, model: BaseModel,
                 sc: Scoring) -> Outcome:
    """Method ``name``'s test scores: its forecasts clipped at 0 for a flow city (noted), its point
    metrics and per-node MAE, its conformal intervals calibrated on the validation day (and, with
    ``intervals.calibration: daily``, recalibrated every test day on the day before), and its
    ensemble's scores when it has members. Raises ``RuntimeError`` for forecasts of the wrong shape."""
    kind, std = sc.tdata.city.kind, sc.tdata.scaler.std[:, 0]
    negative = float((result.pred < 0).mean()) if kind == "flow" else 0.0
    if negative > 0:  # counts cannot be negative: such forecasts are scored (and reported) as 0
        result.pred = feasible(result.pred, kind)
        result.notes["clipped_at_0"] = f"{negative:.1%} of the test forecasts were negative and count as 0"
    if result.pred.shape != sc.truth.shape:
        raise RuntimeError(f"method {name!r} returned forecasts of shape {result.pred.shape}, "
                           f"expected {sc.truth.shape} (nodes, test windows, horizon)")
    levels = sorted({*cfg.intervals.levels, *intervals.RELIABILITY_LEVELS})  # the report's reliability plot too
    val_pred = members.val_point if members is not None else val_forecast(cfg, name, result, weights, model, sc.tdata)
    cal = intervals.calibrate(val_pred, sc.val_truth, sc.val_mask, std, levels)
    for note in cal.notes:
        if any(note.startswith(f"{intervals.level_name(v)}% ") for v in cfg.intervals.levels):
            result.notes.setdefault("intervals", note)
    daily = sc.daily if cfg.intervals.calibration == "daily" else None
    if daily is None:
        bnds = intervals.band(result.pred, std, cal, kind)
    else:
        bnds, notes = intervals.daily_band(result.pred, std[:, None, None], sc.truth, cal, daily, kind)
        if notes:
            result.notes.setdefault("intervals", notes[0])
    scores = intervals.score(result.pred, bnds, sc.truth, sc.mask, cal.levels, cfg.intervals.levels)
    ens = None
    if members is not None:
        ens = ensemble.score_ensemble(members.test, members.val, sc.truth, sc.mask, sc.val_truth, sc.val_mask, std,
                                      levels, cfg.ensemble.spread_floor, kind, daily, cfg.intervals.levels)
    return Outcome(result, masked_metrics(result.pred, sc.truth, sc.mask), node_mae(result.pred, sc.truth, sc.mask),
                   scores, ens)


def method_outcome(run: Run, cfg: RunConfig, name: str, st: SourceStages, cities: Cities,
                   method_inputs: Callable[[str, int], Callable[[Path], MethodInputs]], model: BaseModel, sc: Scoring,
                   log: Log) -> Outcome:
    """Method ``name``'s stage (run or reused), then its ensemble members or its blend with the naive
    forecasts (each a stage), then its scores (:func:`score_method`)."""
    inputs = st.inputs_of(name)
    method_st, result = method_stage(run, cfg, name, inputs, cities, method_inputs(name, 0), log)
    if "fallback" in result.notes:
        log(f"[{name}] {result.notes['fallback']}")
    weights, members = None, None
    if cfg.ensemble.active and ensemble.ensembled(name, result.params is not None):
        result, members = ensemble_members(run, cfg, name, inputs, result, st.members_gen, cities, method_inputs,
                                           model, sc.tdata, sc.truth, sc.mask, log)
    elif cfg.blend.active and result.blend and (result.params is not None or result.val_pred is not None):
        alone = masked_metrics(feasible(result.pred, cities.target.kind), sc.truth, sc.mask).mae_avg
        result, weights = blend_stage(run, cfg, name, (method_st, result), model, sc.tdata, cities, log)
        result.notes["mae_without_blend"] = round(float(alone), 5)
        if "blend_val_fallback" in result.notes:
            log(f"[blend] {name}: {result.notes['blend_val_fallback']}")
    return score_method(cfg, name, result, weights, members, model, sc)


def run_pipeline(cfg: RunConfig, progress: bool = True, log: Log = print, cache: str | Path | None = None
                 ) -> RunResult | None:
    """Run (or resume) the whole experiment described by ``cfg``; see the module docstring.

    ``cache``: a folder shared by several runs (``gpdiff bench``), where stages live by key so that
    runs with equal stages compute them once (:class:`gpdiff.experiment.stages.Run`). Under torchrun the ranks
    other than 0 return ``None`` (:func:`follow_pipeline`)."""
    from gpdiff.evaluation.blend import NAIVE
    from gpdiff.utils.device import resolve_device
    from gpdiff.zoo.sourcepool import prepare_cities

    t_start = time.perf_counter()
    cities = load_cities(cfg)
    device = resolve_device(cfg.device)
    distributed.init(device)
    if not distributed.is_main():
        follow_pipeline(cfg, cities)
        return None
    tdata = target_data(cfg, cities, device)
    data_notes = scaler_notes(cities.target, tdata.scaler, cfg.target_scale_floor)  # what the run worked around
    run = Run(cfg.out, cache, keep_checkpoints=cfg.keep_checkpoints, log=log)
    write_yaml(run.root / "config.yaml", cfg.to_dict())
    s = cities.split
    log(f"target {cities.target.name}: {cities.target.n_nodes} nodes, {cfg.target_days:g} few-shot days "
        f"(steps {s.train.start}-{s.train.stop}), validation {s.val.start}-{s.val.stop}, "
        f"test {s.test.start}-{s.test.stop}; sources: {', '.join(cities.source_names())}")
    for note in data_notes:
        log(f"[note] {note}")
    model = cfg.model.build(cfg.window)
    sources = prepare_cities(cities.sources, cfg.window, cfg.source_split, model, device)
    st = source_stages(run, cfg, cities, model, sources, progress, log)

    def method_inputs(name: str, member: int = 0) -> Callable[[Path], MethodInputs]:
        gen = st.generated
        if member and st.generated is not None and st.members_gen is not None:
            gen = dataclasses.replace(st.generated, params=st.members_gen[1][member - 1])
        return lambda workdir: MethodInputs(
            model=model, sources=sources, target=tdata, zoo=st.zoo, source_prompts=st.source_prompts,
            target_prompts=st.target_prompts, finetune=cfg.finetune, seed=ensemble.member_seed(cfg.seed, member),
            workdir=workdir, generated=gen, anchor=st.anchor[1] if st.anchor else None, progress=progress,
            options=cfg.methods[name], fits={name: st.fits[name]} if name in st.fits else {})

    origins = tdata.origins("test")
    sc = Scoring(tdata, origins, *tdata.truth(origins), *tdata.truth(tdata.origins("val")))
    later = [n for n in [unscored_note(cities.target, sc.mask)] if n]
    if cfg.blend.active and any(m not in NAIVE for m in cfg.methods):  # some method is blended
        later += blend_fallback_notes(tdata, origins, cfg.blend.naive)
    prompt_notes = [f"target prompts: {n}" for n in (st.target_prompts.meta.get("notes", []) if st.target_prompts else [])]
    for note in (prompt_notes if st.target_st is not None and st.target_st.cached else []) + later:  # a computed stage logged its own
        log(f"[note] {note}")
    data_notes += later
    outcomes = {name: method_outcome(run, cfg, name, st, cities, method_inputs, model, sc, log) for name in cfg.methods}

    run.timings["total"] = time.perf_counter() - t_start
    record = RunRecord(root=run.root, config=cfg, target=tdata, origins=origins, truth=sc.truth, outcomes=outcomes,
                       zoo=st.zoo, generated=st.generated, timings=run.timings, sources=cities.source_names(),
                       data_notes=prompt_notes + data_notes)
    report = write_run_report(record, log)
    return RunResult(run.root, record.rows(), report, dict(run.timings), list(run.computed), list(run.reused))
