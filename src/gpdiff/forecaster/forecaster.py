"""The forecaster: fit a city on all its data, forecast its next steps, update it with each new day.

What a city analyst uses, in the forecasting ecosystem's terms (darts / neuralforecast: ``fit`` and
``predict`` on pandas frames; diffusers: a folder that round-trips)::

    f = Forecaster.fit(city)                  # GPD from the pretrained model that ships, blended
    df = f.predict(horizon=24)                # timestamp, node, step, forecast (original units)
    f.save("my-city.forecaster")
    f = Forecaster.load("my-city.forecaster").update(newer_city)   # warm start on the new day(s)

**Fit.** All of the city's data: the last ``val_days`` (default 1) validate (early stopping, the
blend weights), every step before them trains (:func:`gpdiff.data.splits.fit_split`); nothing is
held out. Per method (:data:`STARTS`): ``gpd`` generates every node's parameters from its prompts
with a :class:`~gpdiff.forecaster.pretrained.GPD` and fine-tunes them (the run's ``finetune``
budget); ``gpd_zero_shot`` keeps them as generated; ``transfer`` / ``transfer_zero_shot`` start from
the pretrained anchor; ``target_only`` from a random initialisation; the zoo methods
(:data:`NEEDS_ZOO`: ``knn_residual``, ``mean_params``, ``retrieval``, ``reptile``) run through
:func:`gpdiff.methods.run_method`, as in ``gpdiff run``, with the source zoo, its prompts and the
methods' source fits that a pretrained folder made with ``--with-zoo`` holds; ``pooled_linear``
applies the ridge fitted on the sources that the pretrained folder holds
(:func:`gpdiff.methods.pooled_linear.forecast_windows`); the naive methods (``seasonal_naive``,
``weekly_naive``, ``historical_average``) train nothing. Every method with parameters is blended with
the naive forecasts of ``blend.naive``, weights fitted on the last day (:mod:`gpdiff.evaluation.blend`),
as in ``gpdiff run``; ``pooled_linear`` is not blended, as in ``gpdiff run`` (its module says why).

**Predict.** From the latest ``history`` steps before the forecast origin, the next ``horizon`` steps
(default one day), with prediction intervals (default 80% and 95%) calibrated on the validation days
by split conformal prediction (:mod:`gpdiff.evaluation.intervals`). Up to the model's horizon the forecast is direct; beyond it the (blended)
forecasts are fed back as history and the naive forecasts read them where the lagged value lies in
the future: the recursive strategy (Taieb et al., "A review and comparison of strategies for
multi-step ahead time series forecasting", 2012). Nodes are matched by id; a node the forecaster has
never seen gets parameters generated from its prompts (no other node changes), or the seasonal
naive forecast without a pretrained model; a node without enough observed history is listed, not
forecast. A ``flow`` city's forecasts are clipped at 0 (counts).

**Folder** (:meth:`Forecaster.save`)::

    F/
      forecaster.yaml       format, format_version, gpdiff version, the current version, every version
      pretrained/           the pretrained GPD it was fitted with (new nodes are generated from it)
      versions/0001/        state.safetensors (parameters [N, P], scaler, blend weights, graph),
                            prompts.safetensors (the nodes' prompts, for the generating methods),
                            forecaster.yaml (settings, node ids, time axis, validation scores),
                            history.city (the last days, so predict() needs no data), README.md (model card)
      versions/0002/ ...    one per update; the previous ones stay loadable (``load(F, version=1)``)

A version folder is written beside its final name and renamed, and ``forecaster.yaml`` is rewritten
last, so an interrupted save or update leaves ``F`` as it was.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from gpdiff import __version__
from gpdiff.data.catalog import load_city
from gpdiff.data.city import City, feasible
from gpdiff.data.scaler import TARGET_SCALE_FLOOR, NodeScaler
from gpdiff.data.splits import Segment, Split, fit_split
from gpdiff.data.windows import CityData, WindowConfig
from gpdiff.diffusion.pretrained import GPD
from gpdiff.evaluation import blend
from gpdiff.evaluation.blend import BlendConfig
from gpdiff.evaluation.fallbacks import scaler_notes
from gpdiff.evaluation.intervals import Calibration, IntervalConfig, bounds, calibrate, level_name
from gpdiff.evaluation.metrics import masked_metrics
from gpdiff.methods import NEEDS_ZOO, SOURCE_FITS, MethodInputs, run_method
from gpdiff.methods import pooled_linear as linear
from gpdiff.methods.adapt import FinetuneConfig, expand, finetune, forecast, shared_init, target_start
from gpdiff.methods.gpd import GpdConfig, shrunk_start
from gpdiff.models.base import BaseModel
from gpdiff.prompts import PromptSet
from gpdiff.utils.config import from_mapping, require_range, to_mapping
from gpdiff.utils.errors import GpdiffError, unknown_name
from gpdiff.utils.hashing import code_fingerprint
from gpdiff.utils.io import atomic_write_bytes, atomic_write_text, load_tensors, read_yaml, save_tensors, write_yaml
from gpdiff.zoo.nodetrain import forecast_windows
from gpdiff.zoo.params import unflatten

FORMAT = "gpdiff.forecaster"
FORMAT_VERSION = 1
Log = Callable[[str], Any]

# method -> (where its parameters start, whether they are fine-tuned on the city)
STARTS: dict[str, tuple[str, bool]] = {
    "gpd": ("generated", True), "gpd_zero_shot": ("generated", False),
    "transfer": ("anchor", True), "transfer_zero_shot": ("anchor", False), "target_only": ("random", True),
}
NAIVE = blend.NAIVE  # the naive forecasts by name, as gpdiff run and the blend have them
LINEAR = "pooled_linear"  # no parameters: the ridge of the pretrained folder's fits
METHODS = (*STARTS, *NEEDS_ZOO, LINEAR, *NAIVE)  # every forecaster method
HISTORY_DAYS = 8  # days of data a forecaster keeps: a week back for weekly naive, plus the history window
MIN_OBSERVED = 0.5  # a node is forecast when at least this share of its history window is observed


@dataclass
class ForecasterConfig:
    """How a forecaster is fitted. ``method``: one of :data:`METHODS`; ``val_days``:
    the last days that validate; ``finetune``: the per-node budget (as in ``gpdiff run``);
    ``blend``: the naive forecasts every method with parameters is blended with; ``target_scale_floor``:
    each node's std at least this share of the city's pooled std (as ``RunConfig.target_scale_floor``);
    ``clip``: clip forecasts at 0 (``None``: for ``flow`` cities); ``intervals``: the levels of the
    conformal prediction intervals; ``gpd``: method ``gpd``'s settings, as the run config's ``methods.gpd``
    (its start shrunk toward the anchor, :class:`~gpdiff.methods.gpd.GpdConfig`), refused for another method."""

    RENAMED: ClassVar[dict[str, str]] = {"scale_floor": "target_scale_floor"}  # gpdiff 0.1.0 before issue 26
    method: str = "gpd"
    val_days: float = 1.0
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    target_scale_floor: float = TARGET_SCALE_FLOOR
    clip: bool | None = None
    intervals: IntervalConfig = field(default_factory=IntervalConfig)  # prediction-interval levels
    gpd: GpdConfig = field(default_factory=GpdConfig)  # method gpd's settings (run config methods.gpd)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise unknown_name("forecaster method", self.method, METHODS)
        if self.gpd != GpdConfig() and self.method != "gpd":
            raise GpdiffError(f"the gpd settings ({to_mapping(self.gpd)}) are method gpd's and this forecaster's "
                              f"method is {self.method!r}; drop them or use method gpd.")
        require_range(self, ("val_days",), above=0)
        require_range(self, ("target_scale_floor",), at_least=0, at_most=1)
        if self.seed < 0:
            raise GpdiffError(f"seed must be >= 0 (numpy's generators refuse negative seeds), got {self.seed}.")

    @property
    def learned(self) -> bool:
        """Whether the method has base-model parameters per node."""
        return self.method in STARTS or self.method in NEEDS_ZOO

    @property
    def finetuned(self) -> bool:
        """Whether its parameters are fine-tuned on the city (at fit and at every update)."""
        return STARTS[self.method][1] if self.method in STARTS else self.method in NEEDS_ZOO

    @property
    def needs_pretrained(self) -> bool:
        """Whether fitting it needs a pretrained GPD (every method but the naive ones)."""
        return self.method not in NAIVE

    @property
    def blended(self) -> bool:
        """Whether its forecasts are blended with ``blend.naive`` (not pooled_linear's, as in ``gpdiff run``)."""
        return self.blend.active and self.method != LINEAR


@dataclass
class Forecaster:
    """A fitted forecaster for one city (see the module docstring). Build with :meth:`fit` or :meth:`load`."""

    config: ForecasterConfig
    window: WindowConfig
    node_ids: list[str]
    scaler: NodeScaler  # [N, C] fitted on the training days
    adjacency: np.ndarray  # [N, N]
    history: City  # the last HISTORY_DAYS days the forecaster has seen
    meta: dict[str, Any]  # city name, kind, units, interval, tz, last timestamp, fingerprint; fit record
    params: torch.Tensor | None = None  # [N, P]
    blend_weights: np.ndarray | None = None  # [H, K] for config.blend.naive
    pretrained: GPD | None = None
    version: int = 1
    notes: list[str] = field(default_factory=list)
    prompts: PromptSet | None = None  # the nodes' prompts the parameters were generated from (gpd methods)
    calibration: Calibration | None = None  # conformal quantiles of the scaled error, from the validation days

    # ================================================================== fit
    @classmethod
    def fit(cls, data: City | str | Path | pd.DataFrame, pretrained: GPD | str | Path | None = None,
            config: ForecasterConfig | None = None, progress: bool = False, log: Log = lambda m: None,
            **overrides: Any) -> Forecaster:
        """Fit a forecaster on all of ``data`` (a :class:`City`, a path in any supported format, or a
        DataFrame as :func:`as_city` reads it). ``pretrained``: a :class:`GPD` or its folder (``None``:
        the one that ships, for methods that need one). ``overrides``: :class:`ForecasterConfig` fields
        (``method="weekly_naive"``, ``finetune={"max_epochs": 10}``). Raises :class:`GpdiffError`,
        before any training, for a city too short to fit, a city the pretrained model was trained on,
        or an unknown method."""
        t0 = time.perf_counter()
        config = config or ForecasterConfig()
        if overrides:
            config = from_mapping(ForecasterConfig, {**to_mapping(config), **overrides}, "forecaster setting")
        city = as_city(data)
        gpd = _pretrained_for(config, pretrained)
        if gpd is not None:
            gpd.check_target(city, city.fingerprint())
            require_parts(config.method, gpd)
        window = gpd.window if gpd is not None else WindowConfig()
        split = fit_split(city.n_steps, city.steps_per_day, config.val_days, window.length, city.name)
        data_ = CityData(city, split, window.history, window.horizon, window.n_neighbors,
                         min_rel_std=config.target_scale_floor, context=window.context)
        data_.require_windows("val")
        if config.finetuned:
            data_.require_windows("train")
        log(f"[fit] {city.name}: {city.n_nodes} nodes, {split.train.stop / city.steps_per_day:.2f} days to train, "
            f"the last {config.val_days:g} to validate; method {config.method}")
        params = prompts = None
        notes: list[str] = []
        if config.method in NEEDS_ZOO:
            assert gpd is not None
            params, prompts = _run_zoo_method(config, gpd, data_, progress, log)
        elif config.learned:
            assert gpd is not None
            params, prompts, notes = _start(config, gpd, data_, progress, log)
            if config.finetuned:
                with tempfile.TemporaryDirectory(prefix="gpdiff-fit-") as work:
                    params = finetune(gpd.build_model(), params, data_, config.finetune, Path(work), config.seed,
                                      progress, config.method)
        f = cls(config, window, list(city.node_ids), data_.scaler, city.adjacency.copy(), _tail(city), {},
                params, None, gpd, prompts=prompts)
        f.notes.extend(notes)
        f._validate(data_, log)
        for note in scaler_notes(city, data_.scaler, config.target_scale_floor, "training days", "target_scale_floor"):
            f.notes.append(note)  # the version's README.md lists them
            log(f"[fit] {note}")
        f.meta = {**_city_meta(city), **f.meta, "fit_seconds": round(time.perf_counter() - t0, 2),
                  "trained_on": _span(city, split.train), "validated_on": _span(city, split.val)}
        return f

    def _validate(self, data: CityData, log: Log) -> None:
        """Blend weights on the validation days (methods with parameters), and the validation MAE of the
        forecaster against both naive baselines, into :attr:`meta`."""
        origins = data.origins("val")
        truth, mask = data.truth(origins)
        if self.params is not None:
            pred = forecast(self.model(), self.params, data, "val")
        else:
            pred = self.raw_forecast(data, origins)
        if self.params is not None and self.config.blended:
            fitted = blend.fit_blend(pred, data, self.config.blend)
            self.blend_weights = fitted.weights
            pred = fitted.apply(pred, data, origins)
            log(f"[fit] blend: {blend.weights_note(fitted.names, fitted.weights)}")
        pred = self._clip(pred, data.city.kind)
        self.calibration = calibrate(pred, truth, mask, data.scaler.std[:, 0], self.config.intervals.levels)
        for note in self.calibration.notes:
            self.notes.append(f"validation days too short to calibrate: {note}")
            log(f"[fit] {note}")
        scores = {self.config.method: masked_metrics(pred, truth, mask).mae_avg}
        for name in ("seasonal_naive", "weekly_naive"):
            scores[name] = masked_metrics(NAIVE[name](data, origins), truth, mask).mae_avg
        self.meta["validation_mae"] = {k: round(float(v), 6) for k, v in scores.items()}
        log("[fit] validation MAE: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))

    # ============================================================== predict
    def raw_forecast(self, data: CityData, origins: np.ndarray) -> np.ndarray:
        """Forecasts ``[N, B, H]`` (original units, ``data``'s nodes in the forecaster's order) at ``origins``
        before blend and clipping: the base model with :attr:`params`, pooled_linear's ridge, or the naive
        forecast. ``H`` is ``data.horizon`` (the model's horizon for every method but the naive ones)."""
        if self.params is not None:
            model = self.model()
            return forecast_windows(model, unflatten(self.params, model.spec()), data, origins, model.config.in_channels)
        if self.config.method == LINEAR:
            return linear.forecast_windows(self._ridge(), data, origins)[0]
        return NAIVE[self.config.method](data, origins)

    def forecast_at(self, data: CityData, origins: np.ndarray) -> np.ndarray:
        """:meth:`raw_forecast` blended with the fitted weights (when there are any), not clipped."""
        pred = self.raw_forecast(data, origins)
        if self.blend_weights is not None:
            pred = blend.apply_weights(pred, blend.naive_forecasts(data, origins, self.config.blend.naive),
                                       self.blend_weights)
        return pred

    def _ridge(self) -> linear.PooledLinear:
        if self.pretrained is None:
            raise GpdiffError("internal: a pooled_linear forecaster always keeps its pretrained GPD.")
        return linear.from_source_fit(self.pretrained.fits[LINEAR])

    def model(self) -> BaseModel:
        if self.pretrained is None:
            raise GpdiffError("this forecaster has no base model (a naive method).")
        return self.pretrained.build_model()

    @property
    def last_timestamp(self) -> pd.Timestamp:
        return pd.Timestamp(self.meta["last_timestamp"])

    def predict(self, data: City | str | Path | pd.DataFrame | None = None, horizon: int | None = None,
                at: str | pd.Timestamp | None = None, progress: bool = False) -> pd.DataFrame:
        """Forecasts of the ``horizon`` steps (default: one day) after the last time of ``data`` (default:
        the data the forecaster last saw), or after ``at``, per node.

        Returns a long DataFrame ``timestamp, node, step, forecast`` (original units, the data's time
        zone; ``step`` 1 is one interval after the origin). ``df.attrs["notes"]`` lists new nodes,
        nodes left out and why. Raises :class:`GpdiffError` for data at another interval, with no node
        in common, ``at`` outside the data, or a ``horizon`` < 1."""
        city = self.history if data is None else as_city(data, like=self)
        self._check_interval(city)
        horizon = city.steps_per_day if horizon is None else int(horizon)
        if horizon < 1:
            raise GpdiffError(f"horizon must be at least 1 step, got {horizon}.")
        origin = self._origin(city, at)
        known = [i for i in city.node_ids if i in self._index]
        new = [i for i in city.node_ids if i not in self._index]
        if not known:  # new sensors come beside known ones; none known is another city (or renamed ids)
            raise GpdiffError(f"{city.name}: no node in common with the forecaster (data: {_first(city.node_ids, 3)}; "
                              f"forecaster: {_first(self.node_ids, 3)}); nodes are matched by id, so give the city "
                              "it was fitted on, or fit a forecaster for this one.")
        notes: list[str] = []
        absent = [i for i in self.node_ids if i not in set(city.node_ids)]
        if absent:
            notes.append(f"{len(absent)} node(s) of the forecaster are not in the data and are not forecast: "
                         f"{_first(absent)}")
        order = [city.node_ids.index(i) for i in known + new]
        fc, ok, why, scale = self._forecast(city, order, len(known), origin, horizon, notes)
        skipped = [f"{(known + new)[j]} ({why[j]})" for j in np.flatnonzero(~ok)]
        if skipped:
            notes.append(f"{len(skipped)} node(s) lack the observed history to forecast from: {_first(skipped)}")
        ts = pd.date_range(city.timestamps[origin - 1], periods=horizon + 1, freq=pd.Timedelta(minutes=city.interval_minutes))[1:]
        ids = np.asarray(known + new, dtype=object)[ok]
        n = ids.size
        df = pd.DataFrame({"timestamp": np.tile(ts, n), "node": np.repeat(ids, horizon),
                           "step": np.tile(np.arange(1, horizon + 1), n), "forecast": fc[ok].reshape(-1)})
        if self.calibration is not None:  # conformal intervals: the point forecast -+ q[step] x the node's scale
            b = bounds(fc[ok], scale[ok], self.calibration, city.kind)  # [L, 2, n, horizon]
            for i, level in enumerate(self.calibration.levels):
                df[f"lower_{level_name(level)}"] = b[i, 0].reshape(-1)
                df[f"upper_{level_name(level)}"] = b[i, 1].reshape(-1)
            if horizon > self.window.horizon:
                notes.append(f"steps after {self.window.horizon} (the model's horizon) are recursive; their intervals "
                             f"have the width calibrated for step {self.window.horizon}, which understates their error")
            if new:
                notes.append("the new nodes' intervals are calibrated on the fitted nodes, whose parameters were "
                             "fine-tuned; generated ones may err more")
        df.attrs["notes"] = notes
        return df

    def _forecast(self, city: City, order: list[int], n_known: int, origin: int, horizon: int, notes: list[str]
                  ) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
        """Forecasts ``[n, horizon]`` for the city's nodes ``order`` (known first), whether each was
        forecast, why not, and each node's scale ``[n]`` (original units per scaled unit)."""
        w = self.window
        # steps per call: the model's horizon; a naive forecast's up to a day (the seasonal lag)
        step = w.horizon if self.config.method not in NAIVE else min(horizon, city.steps_per_day)
        work = _padded(city, order, origin, horizon + step)
        n, end = len(order), origin + horizon + step
        scaler = self._scaler_for(work, n_known, origin)
        split = Split(Segment(0, origin), Segment(origin, end), Segment(end, end), role="fit")
        data = CityData(work, split, w.history, step, w.n_neighbors, context=w.context, scaler=scaler)
        seen = work.mask[origin - w.history:origin].mean(0)  # [n] share of the history window observed
        ok = seen >= MIN_OBSERVED
        why = [f"{seen[j]:.0%} of the last {w.history} steps observed, fewer than {MIN_OBSERVED:.0%}" for j in range(n)]
        params = None
        if self.params is not None:
            params = torch.zeros(n, self.params.shape[1])
            params[:n_known] = self.params[[self._index[i] for i in work.node_ids[:n_known]]]
            if n > n_known:
                params[n_known:] = self._new_node_params(work, n_known, origin, notes)
        elif n > n_known:
            notes.append(f"{n - n_known} new node(s) get the {self.config.method} forecast like every other: "
                         f"{_first(work.node_ids[n_known:])}")
        out = np.zeros((n, horizon), dtype=np.float32)
        at = dataclasses.replace(self, params=params)  # the known nodes' parameters, then the new nodes'
        for t in range(origin, origin + horizon, step):
            pred = self._clip(at.forecast_at(data, np.array([t]))[:, 0], work.kind)
            k = min(step, origin + horizon - t)
            out[:, t - origin:t - origin + k] = pred[:, :k]
            _write_back(data, t, pred[:, :k])  # later windows read it as history, lagged values as their past
        return out, ok, why, scaler.std[:, 0].astype(np.float64)

    def _new_node_params(self, work: City, n_known: int, origin: int, notes: list[str]) -> torch.Tensor:
        """Parameters for the nodes ``work.node_ids[n_known:]`` the forecaster has never seen: generated by
        the pretrained GPD from their prompts (spatial: the data's graph and coordinates; temporal: the
        days they have before the origin), not fine-tuned. Nothing else changes."""
        new = work.node_ids[n_known:]
        if self.pretrained is None:
            raise GpdiffError("internal: a forecaster with parameters always keeps its pretrained GPD.")
        prompts = self.pretrained.prompts(work, Segment(0, origin)).take(torch.arange(n_known, work.n_nodes))
        params = self.pretrained.generate(prompts, seed=self.config.seed)
        notes.append(f"{len(new)} new node(s) got parameters generated from their prompts (zero-shot, no other node "
                     f"changed): {_first(new)}")
        return params

    def _scaler_for(self, work: City, n_known: int, origin: int) -> NodeScaler:
        """The fitted scaler for the known nodes (``work.node_ids[:n_known]``); a new node's own
        statistics of its steps before ``origin``."""
        idx = [self._index[i] for i in work.node_ids[:n_known]]
        mean, std = self.scaler.mean[idx], self.scaler.std[idx]
        if work.n_nodes > n_known:
            own = NodeScaler.fit(work, Segment(0, origin), self.config.target_scale_floor)
            mean = np.concatenate([mean, own.mean[n_known:, : mean.shape[1]]])
            std = np.concatenate([std, own.std[n_known:, : std.shape[1]]])
        return NodeScaler(mean.astype(np.float32), std.astype(np.float32))

    def _clip(self, pred: np.ndarray, kind: str) -> np.ndarray:
        """:func:`gpdiff.data.city.feasible`, unless ``config.clip`` says otherwise."""
        if self.config.clip is None:
            return feasible(pred, kind)
        return np.maximum(pred, 0.0) if self.config.clip else pred

    def _check_interval(self, city: City) -> None:
        if city.interval_minutes != self.meta["interval_minutes"]:
            raise GpdiffError(f"{city.name}: data at a {city.interval_minutes}-minute interval, but the forecaster was "
                              f"fitted at {self.meta['interval_minutes']} minutes; give data at its interval.")

    def _origin(self, city: City, at: str | pd.Timestamp | None) -> int:
        """The step index of the first forecast step: one after ``at``, or after the data's last step."""
        if at is None:
            origin = city.n_steps
        else:
            stamp = pd.Timestamp(at)
            if stamp.tz is None and city.start.tz is not None:
                stamp = stamp.tz_localize(city.start.tz)
            pos = (stamp - city.start) / pd.Timedelta(minutes=city.interval_minutes)
            if not float(pos).is_integer() or not 0 <= pos < city.n_steps:
                raise GpdiffError(f"--at {at}: not a time step of {city.name} ({city.start} .. {city.end}, every "
                                  f"{city.interval_minutes} min); give a time on that grid within the data.")
            origin = int(pos) + 1
        if origin < self.window.history:
            raise GpdiffError(f"{city.name}: {origin} steps before the forecast origin, fewer than the history window "
                              f"({self.window.history} steps); give more data.")
        return origin

    @property
    def _index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.node_ids)}

    # =============================================================== update
    def update(self, data: City | str | Path | pd.DataFrame, progress: bool = False, log: Log = lambda m: None
               ) -> Forecaster:
        """A new version fitted on ``data``, which must reach past :attr:`last_timestamp` by at least one
        day: the parameters are fine-tuned from the current ones (warm start, the same budget), early
        stopped and blend-weighted on the newest ``val_days``; the scaler stays the one fitted first.
        Returns ``self`` unchanged (with a note) when ``data`` holds no new day. Raises
        :class:`GpdiffError` for data at another interval, ending before :attr:`last_timestamp`,
        or sharing no node with the forecaster."""
        city = as_city(data, like=self)
        self._check_interval(city)
        keep = [i for i in city.node_ids if i in self._index]
        if not keep:
            raise GpdiffError(f"{city.name}: no node in common with the forecaster ({_first(self.node_ids)}); nodes "
                              "are matched by id.")
        last = self.last_timestamp
        if city.end < last:
            raise GpdiffError(f"{city.name}: the data end at {city.end}, before the forecaster's last time {last}; "
                              "give the data that follow it (a newer export, or the same file with rows appended).")
        step = pd.Timedelta(minutes=city.interval_minutes)
        new_steps = int((city.end - last) / step)
        if new_steps < city.steps_per_day:
            self.notes = [f"no new day: the data end {new_steps} step(s) after {last}, an update needs "
                          f"{city.steps_per_day} (one day); nothing changed"]
            log(f"[update] {self.notes[0]}")
            return self
        if city.start > last + step:
            raise GpdiffError(f"{city.name}: the data start at {city.start}, after a gap from the forecaster's last "
                              f"time {last}; include the days from {last + step} on.")
        dropped = [i for i in city.node_ids if i not in self._index]
        city = _select(city, [city.node_ids.index(i) for i in keep])
        split = fit_split(city.n_steps, city.steps_per_day, self.config.val_days, self.window.length, city.name)
        w = self.window
        scaler = self._scaler_for(city, len(keep), city.n_steps)
        data_ = CityData(city, split, w.history, w.horizon, w.n_neighbors, context=w.context, scaler=scaler)
        data_.require_windows("val")
        params = None
        if self.params is not None:
            start = self.params[[self._index[i] for i in keep]]
            if self.config.finetuned:
                data_.require_windows("train")
                with tempfile.TemporaryDirectory(prefix="gpdiff-update-") as work:
                    start = finetune(self.model(), start, data_, self.config.finetune, Path(work),
                                     self.config.seed + self.version, progress, f"update v{self.version + 1}")
            params = start
        prompts = None if self.prompts is None else self.prompts.take(torch.tensor([self._index[i] for i in keep]))
        f = Forecaster(self.config, self.window, keep, scaler, city.adjacency.copy(), _tail(city), {}, params, None,
                       self.pretrained, self.version + 1, prompts=prompts)
        f._validate(data_, log)
        f.meta = {**_city_meta(city), **f.meta, "trained_on": _span(city, split.train),
                  "validated_on": _span(city, split.val), "updated_from": self.version}
        if dropped:
            f.notes.append(f"{len(dropped)} node(s) in the data are new to the forecaster and were not added by the "
                           f"update (predict() generates them): {_first(dropped)}")
        log(f"[update] version {f.version}: {new_steps} new step(s) up to {city.end}")
        return f

    # ============================================================ save/load
    def save(self, path: str | Path) -> Path:
        """Write this version into the forecaster folder ``path`` (module docstring), keeping every
        earlier version there; an interrupted save leaves the folder as it was."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        manifest = _manifest(path) if (path / "forecaster.yaml").exists() else None
        if manifest is None and any(path.iterdir()):
            raise GpdiffError(f"{path} holds files but no forecaster; choose an empty or new folder.")
        if self.pretrained is not None and not (path / "pretrained" / "gpd.yaml").is_file():
            # without the zoo: the parameters are here, and a new node's are generated by the denoiser
            self.pretrained.save_pretrained(path / "pretrained", include_zoo=False)
        final = path / "versions" / f"{self.version:04d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=_mkdir(final.parent)))
        try:
            tensors = {"scaler_mean": torch.from_numpy(self.scaler.mean), "scaler_std": torch.from_numpy(self.scaler.std),
                       "adjacency": torch.from_numpy(self.adjacency.astype(np.float32))}
            if self.params is not None:
                tensors["params"] = self.params.float().cpu().contiguous()
            if self.blend_weights is not None:
                tensors["blend_weights"] = torch.from_numpy(np.asarray(self.blend_weights, dtype=np.float64))
            if self.calibration is not None:
                tensors["interval_quantiles"] = torch.from_numpy(self.calibration.quantiles.astype(np.float64))
                tensors["interval_scores"] = torch.from_numpy(self.calibration.n_scores.astype(np.int64))
            save_tensors(tmp / "state.safetensors", tensors)
            if self.prompts is not None:
                self.prompts.save(tmp / "prompts.safetensors")
            self.history.save(tmp / "history.city")
            atomic_write_text(tmp / "README.md", self.model_card())
            write_yaml(tmp / "forecaster.yaml", {
                "version": self.version, "config": to_mapping(self.config), "window": asdict(self.window),
                "node_ids": list(self.node_ids), "meta": self.meta, "notes": list(self.notes),
                "gpdiff_version": __version__, "code": code_fingerprint(), "saved": pd.Timestamp.now("UTC").isoformat()})
            if final.exists():
                shutil.rmtree(final)
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        versions = sorted({*(manifest or {}).get("versions", []), self.version})
        write_yaml(path / "forecaster.yaml", {"format": FORMAT, "format_version": FORMAT_VERSION,
                                             "gpdiff_version": __version__, "current": self.version,
                                             "versions": versions, "city": self.meta.get("city"),
                                             "method": self.config.method})
        atomic_write_bytes(path / "README.md", (final / "README.md").read_bytes())
        return path

    @classmethod
    def load(cls, path: str | Path, version: int | None = None) -> Forecaster:
        """The forecaster saved in ``path`` (its current version, or ``version``). Raises
        :class:`GpdiffError` for a folder that is not a forecaster, was written by a gpdiff with
        another format (naming the version that wrote it), or lacks the version asked for."""
        path = Path(path)
        manifest = _manifest(path)
        v = int(manifest["current"] if version is None else version)
        if v not in manifest.get("versions", []):
            raise GpdiffError(f"{path} has versions {manifest.get('versions')}, not {v}.")
        folder = path / "versions" / f"{v:04d}"
        doc = read_yaml(folder / "forecaster.yaml")
        tensors, _ = load_tensors(folder / "state.safetensors")
        config = from_mapping(ForecasterConfig, doc["config"], "forecaster config", upgrade=True)
        pretrained = GPD.from_pretrained(path / "pretrained") if (path / "pretrained").exists() else None
        weights = tensors.get("blend_weights")
        prompts = PromptSet.load(folder / "prompts.safetensors") if (folder / "prompts.safetensors").is_file() else None
        cal = None
        if "interval_quantiles" in tensors:
            cal = Calibration(list(config.intervals.levels), tensors["interval_quantiles"].numpy(),
                              tensors["interval_scores"].numpy())
        return cls(config, WindowConfig(**doc["window"]), list(doc["node_ids"]),
                   NodeScaler(tensors["scaler_mean"].numpy(), tensors["scaler_std"].numpy()),
                   tensors["adjacency"].numpy(), City.load(folder / "history.city"), dict(doc["meta"]),
                   tensors.get("params"), None if weights is None else weights.numpy(), pretrained, v,
                   list(doc.get("notes") or []), prompts, cal)

    def model_card(self) -> str:
        m, c = self.meta, self.config
        lines = [f"# Forecaster for {m.get('city')}", "",
                 f"- version {self.version}, gpdiff {__version__}; method `{c.method}`"
                 + (f", blended with {', '.join(c.blend.naive)}" if self.blend_weights is not None else ""),
                 f"- {len(self.node_ids)} nodes, every {m.get('interval_minutes')} min, last time {m.get('last_timestamp')}",
                 f"- trained on {m.get('trained_on')}, validated on {m.get('validated_on')}",
                 f"- history {self.window.history} -> horizon {self.window.horizon} steps per model call"]
        if self.pretrained is not None:
            lines.append(f"- pretrained GPD sources: {', '.join(self.pretrained.source_names)}")
        if "fit_seconds" in m:
            lines.append(f"- fit time {m['fit_seconds']} s")
        val = m.get("validation_mae") or {}
        if val:
            lines += ["", "Validation MAE (the last day, original units):", "", "| forecaster | MAE |", "|---|---|"]
            lines += [f"| {k} | {v:.4g} |" for k, v in val.items()]
        if self.notes:
            lines += ["", "Notes:", ""] + [f"- {n}" for n in self.notes]
        return "\n".join(lines) + "\n"


# ============================================================== helpers
def as_city(data: City | str | Path | pd.DataFrame, like: Forecaster | None = None, **options: Any) -> City:
    """``data`` as a :class:`City`: a City; a path or bundled name in any supported format (``options``
    go to its reader); or a DataFrame, wide (indexed by time, one column per node id) or long
    (columns ``timestamp`` / ``time`` / ``ds``, ``node`` / ``unique_id``, ``value`` / ``y``). A
    DataFrame's graph is ``like``'s for the nodes it knows (none otherwise)."""
    if isinstance(data, City):
        return data
    if isinstance(data, pd.DataFrame):
        wide = _wide(data)
        ids = [str(c) for c in wide.columns]
        adj = np.zeros((len(ids), len(ids)), dtype=np.float32)
        kind, units, name = "flow", None, "city"
        if like is not None:
            pos = like._index
            known = [(a, pos[i]) for a, i in enumerate(ids) if i in pos]
            for a, i in known:
                for b, j in known:
                    adj[a, b] = like.adjacency[i, j]
            kind, units, name = like.meta["kind"], like.meta["units"], like.meta["city"]
        return City.from_pandas(wide, adjacency=adj, kind=kind, units=units, name=name,
                                interval_minutes=like.meta["interval_minutes"] if like is not None else None)
    return load_city(data, **options)


def _wide(df: pd.DataFrame) -> pd.DataFrame:
    cols = {str(c).lower(): c for c in df.columns}
    time_col = next((cols[c] for c in ("timestamp", "time", "ds") if c in cols), None)
    node_col = next((cols[c] for c in ("node", "unique_id") if c in cols), None)
    value_col = next((cols[c] for c in ("value", "y", "forecast") if c in cols), None)
    if time_col is None or node_col is None or value_col is None:
        return df  # wide already
    dup = df.duplicated([time_col, node_col])
    if dup.any():
        row = df[dup].iloc[0]
        raise GpdiffError(f"the long table lists node {row[node_col]} at {row[time_col]} twice; keep one row per "
                          "time and node.")
    wide = df.pivot(index=time_col, columns=node_col, values=value_col)
    wide.columns = [str(c) for c in wide.columns]
    return wide


def _pretrained_for(config: ForecasterConfig, pretrained: GPD | str | Path | None) -> GPD | None:
    if not config.needs_pretrained:
        return pretrained if isinstance(pretrained, GPD) else (GPD.from_pretrained(pretrained) if pretrained else None)
    return pretrained if isinstance(pretrained, GPD) else GPD.from_pretrained(pretrained)


def require_parts(method: str, gpd: GPD) -> None:
    """One-line :class:`GpdiffError` when ``gpd`` lacks what ``method`` reads: the zoo part (the zoo
    methods) or a source fit (``pooled_linear``'s ridge, ``knn_residual``'s and ``reptile``'s), with the
    command that builds a pretrained folder that has it."""
    sources = f"this pretrained GPD (sources {', '.join(gpd.source_names) or '?'})"
    if method in NEEDS_ZOO and gpd.zoo is None:
        raise GpdiffError(f"method {method!r} needs the sources' model zoo, which {sources} does not carry; build one "
                          f"that does: {gpd.pretrain_hint(with_zoo=True)}, then pass --pretrained my-gpd.")
    if method in SOURCE_FITS and method not in gpd.source_fits():
        raise GpdiffError(f"method {method!r} needs its fit on the sources, which {sources} does not carry (made by an "
                          f"older gpdiff?); build it again: {gpd.pretrain_hint(with_zoo=method in NEEDS_ZOO)}, then "
                          "pass --pretrained my-gpd.")


def _run_zoo_method(config: ForecasterConfig, gpd: GPD, data: CityData, progress: bool, log: Log
                    ) -> tuple[torch.Tensor, PromptSet]:
    """Parameters ``[N, P]`` of zoo method ``config.method`` on ``data`` (its training days: fine-tuning
    and the nodes' prompts; its validation day: early stopping), by :func:`gpdiff.methods.run_method`
    with the pretrained zoo, its prompts and source fits (no source data), and the prompts they came from."""
    assert gpd.zoo is not None
    prompts = gpd.prompts(data.city, data.split.train)
    for note in prompts.meta.get("notes", []):
        log(f"[fit] prompts: {note}")
    log(f"[fit] {config.method}: starting {data.n_nodes} nodes from the zoo of {len(gpd.zoo.params)} source nodes")
    with tempfile.TemporaryDirectory(prefix="gpdiff-fit-") as work:
        ctx = MethodInputs(model=gpd.build_model(), sources=[], target=data, zoo=gpd.zoo.params,
                      source_prompts=gpd.zoo.prompts, target_prompts=prompts, finetune=config.finetune,
                      seed=config.seed, workdir=Path(work), anchor=gpd.anchor, progress=progress,
                      fits=gpd.source_fits())
        result = run_method(config.method, ctx)
    assert result.params is not None
    return result.params, prompts


def _start(config: ForecasterConfig, gpd: GPD, data: CityData, progress: bool, log: Log
           ) -> tuple[torch.Tensor, PromptSet | None, list[str]]:
    """The parameters ``[N, P]`` a method starts from (:func:`~gpdiff.methods.adapt.target_start`), the
    prompts they were generated from, and notes for the model card. ``gpd`` with ``config.gpd.shrinkages``
    starts each node from its generated parameters shrunk toward the anchor, ``s`` chosen on its training
    days (:func:`gpdiff.methods.gpd.shrunk_start`, as in ``gpdiff run``)."""
    params, prompts = _learned(config, gpd, data.city, data.split.train, progress, log)
    model = gpd.build_model()
    if config.method != "gpd" or not config.gpd.active:
        return target_start(model, params), prompts, []
    start, s, _ = shrunk_start(model, params.float(), gpd.anchor.float(), data, config.gpd.shrinkages,
                               config.gpd.windows)
    note = ("gpd starts from its generated parameters shrunk toward the anchor, s chosen per node on the training "
            "days; nodes per s: " + ", ".join(f"{v:g}: {int((s == v).sum())}" for v in config.gpd.shrinkages))
    log(f"[fit] {note}")
    return start, prompts, [note]


def _learned(config: ForecasterConfig, gpd: GPD, city: City, train: Segment, progress: bool, log: Log
             ) -> tuple[torch.Tensor, PromptSet | None]:
    """The parameters ``[N, P]`` of ``config.method``'s start as the sources give them, and their prompts."""
    where = STARTS[config.method][0]
    if where == "generated":
        prompts = gpd.prompts(city, train)
        for note in prompts.meta.get("notes", []):
            log(f"[fit] prompts: {note}")
        log(f"[fit] generating parameters for {city.n_nodes} nodes from their prompts")
        return gpd.generate(prompts, seed=config.seed, progress=progress), prompts
    if where == "anchor":
        return expand(gpd.anchor, city.n_nodes), None
    return expand(shared_init(gpd.build_model(), config.seed), city.n_nodes), None


def _city_meta(city: City) -> dict[str, Any]:
    return {"city": city.name, "kind": city.kind, "units": city.units, "interval_minutes": city.interval_minutes,
            "tz": str(city.start.tz) if city.start.tz is not None else None, "channels": list(city.channels),
            "last_timestamp": city.end.isoformat(), "fingerprint": city.fingerprint(), "nodes": city.n_nodes}


def _span(city: City, seg: Segment) -> str:
    ts = city.timestamps
    return f"{ts[seg.start]:%Y-%m-%d %H:%M} .. {ts[seg.stop - 1]:%Y-%m-%d %H:%M}" if len(seg) else "nothing"


def _tail(city: City) -> City:
    keep = HISTORY_DAYS * city.steps_per_day
    return city.subset_time(max(0, city.n_steps - keep), city.n_steps)


def _select(city: City, order: list[int]) -> City:
    """The city with its nodes ``order`` (indices), in that order."""
    idx = np.asarray(order, dtype=np.int64)
    return dataclasses.replace(
        city, values=city.values[:, idx], mask=city.mask[:, idx], adjacency=city.adjacency[np.ix_(idx, idx)],
        node_ids=[city.node_ids[i] for i in idx], coords=None if city.coords is None else city.coords[idx],
        attributes=None if city.attributes is None else city.attributes[idx])


def _padded(city: City, order: list[int], origin: int, horizon: int) -> City:
    """The city up to ``origin`` (nothing after it is read), nodes ``order``, with ``horizon`` unobserved
    steps appended for the forecasts."""
    c = _select(city.subset_time(0, origin), order)
    pad_v = np.zeros((horizon, c.n_nodes, c.n_channels), dtype=np.float32)
    return dataclasses.replace(c, values=np.concatenate([c.values, pad_v]),
                               mask=np.concatenate([c.mask, np.zeros((horizon, c.n_nodes), dtype=bool)]))


def _write_back(data: CityData, t: int, pred: np.ndarray) -> None:
    """Forecasts ``[n, k]`` for steps ``t .. t + k - 1`` written into ``data`` as observed values (original
    and scaled), so the next window of a recursive forecast reads them."""
    k = pred.shape[1]
    data.city.values[t:t + k, :, 0] = pred.T
    data.city.mask[t:t + k] = True
    scaled = (pred.T - data.scaler.mean[:, 0]) / data.scaler.std[:, 0]
    data.values[t:t + k, :, 0] = torch.from_numpy(scaled.astype(np.float32)).to(data.values.device)
    data.mask[t:t + k] = True


def _first(items: list[str], n: int = 5) -> str:
    items = [str(i) for i in items]
    return ", ".join(items[:n]) + (f" and {len(items) - n} more" if len(items) > n else "")


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def _manifest(path: Path) -> dict[str, Any]:
    f = path / "forecaster.yaml"
    if not f.is_file():
        raise GpdiffError(f"{path} is not a forecaster folder (no forecaster.yaml); create one with `gpdiff fit CITY "
                          f"--out {path}`.")
    doc = read_yaml(f)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise GpdiffError(f"{f} is not a gpdiff forecaster manifest.")
    if doc.get("format_version") != FORMAT_VERSION:
        raise GpdiffError(f"{path} is a forecaster of format version {doc.get('format_version')}, written by gpdiff "
                          f"{doc.get('gpdiff_version', '?')}; this gpdiff {__version__} reads version {FORMAT_VERSION}. "
                          "Fit it again with this version (gpdiff fit), or use the gpdiff that wrote it.")
    return doc
