"""Backtest: replay a city's first weeks the way a user lives them (``gpdiff backtest CITY``).

From day ``start_day`` of the data (the user's first day; nothing before it is ever read), the user
has ``start_days`` days: every method fits a :class:`~gpdiff.forecaster.Forecaster` on them (as
``gpdiff fit``: the last day validates, the days before it train). Then, for each of the next
``days`` days: every forecast issued during that day (one window per step of the day, its first
target at that step) is forecast from its true history (everything observed up to its origin, from
the user's first day on); a window issued late in the evening runs past midnight, and the next day's
first ``horizon - 1`` steps are read then only as the truth it is scored against (at the end of the
data, where there is no next day, those windows are left out and the ``windows`` column says so). Each
day is then scored against what happened (MAE, and CRPS and coverage of the conformal intervals:
:func:`gpdiff.evaluation.intervals.score`, :func:`gpdiff.evaluation.metrics.masked_metrics`), and the forecaster is
updated with the day (:meth:`Forecaster.update`: warm-start fine-tuning, blend and calibration on the
newest day). This is the rolling-origin evaluation of darts' ``historical_forecasts`` and
statsforecast's ``cross_validation`` (Tashman, "Out-of-sample tests of forecasting accuracy", IJF 2000),
with the model refitted once a day.

Methods: every forecaster method (the naive ones, ``gpd`` and ``gpd_zero_shot``, ``transfer`` and
``transfer_zero_shot``, ``target_only``, ``pooled_linear``; each one with parameters blended as
configured), all from the same pretrained GPD, plus ``auto_ets`` (:mod:`gpdiff.forecaster.ets`,
statsforecast, optional), refitted per node each day on the days the user has. The methods that need
the sources' model zoo (:data:`~gpdiff.forecaster.forecaster.NEEDS_ZOO`, e.g. ``knn_residual``) run
when asked for (``--methods``), and the pretrained folder must then hold the zoo (``gpdiff pretrain
--with-zoo``; a one-line error before anything is fitted otherwise); ``pooled_linear`` is left out, with
a note that says how to get it, when the folder lacks its ridge.

Days are calendar days at the city's interval counted from its first step; day ``k`` of a backtest is
the ``k``-th day after the first ``start_days``, and ``days_of_data`` is how many days the forecaster
had when it forecast it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gpdiff.data.city import City
from gpdiff.data.splits import Segment, Split
from gpdiff.data.windows import CityData, WindowConfig
from gpdiff.diffusion.pretrained import GPD
from gpdiff.evaluation.blend import BlendConfig
from gpdiff.evaluation.intervals import Band, IntervalConfig, band, level_name, score
from gpdiff.evaluation.metrics import masked_metrics
from gpdiff.forecaster import ets
from gpdiff.forecaster.backtest_checkpoint import Checkpoint, backtest_key
from gpdiff.forecaster.forecaster import (
    LINEAR,
    NAIVE,
    NEEDS_ZOO,
    Forecaster,
    ForecasterConfig,
    _select,
    require_parts,
)
from gpdiff.methods.adapt import FinetuneConfig
from gpdiff.methods.gpd import GpdConfig
from gpdiff.utils.config import from_mapping
from gpdiff.utils.errors import GpdiffError, unknown_name

Log = Callable[[str], Any]
REFERENCES = ("seasonal_naive", "weekly_naive")  # the two a learned method must beat; always run
METHODS = (*NAIVE, "gpd_zero_shot", "gpd", "transfer_zero_shot", "transfer", "target_only", LINEAR, ets.NAME)
KNOWN = (*METHODS, *NEEDS_ZOO)  # what --methods may name (the zoo methods when asked for: they need the zoo)


@dataclass
class BacktestConfig:
    """A backtest: ``methods`` (default :data:`METHODS`, any of :data:`KNOWN`; the naive references always run), the user's
    first day ``start_day`` (one backtest per entry, 0-based day of the data), ``start_days`` days of data
    before the first forecast day, ``days`` forecast days, and the forecasters' settings
    (:class:`ForecasterConfig` fields: fine-tuning budget, blend, interval levels, gpd's settings, seed)."""

    methods: list[str] = field(default_factory=lambda: list(METHODS))
    start_day: list[int] = field(default_factory=lambda: [0])
    start_days: int = 2
    days: int = 14
    val_days: float = 1.0
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    blend: BlendConfig = field(default_factory=BlendConfig)
    intervals: IntervalConfig = field(default_factory=IntervalConfig)
    gpd: GpdConfig = field(default_factory=GpdConfig)  # method gpd's settings (run config methods.gpd)
    seed: int = 0

    def __post_init__(self) -> None:
        for name, cls in (("finetune", FinetuneConfig), ("blend", BlendConfig), ("intervals", IntervalConfig),
                          ("gpd", GpdConfig)):
            if isinstance(getattr(self, name), dict):  # {"max_epochs": 2}: the fields it overrides
                setattr(self, name, from_mapping(cls, getattr(self, name), f"backtest {name} setting"))
        if isinstance(self.methods, str):
            self.methods = [m.strip() for m in self.methods.split(",") if m.strip()]
        for m in self.methods:
            if m not in KNOWN:
                raise unknown_name("backtest method", m, KNOWN)
        self.methods = [*[r for r in REFERENCES if r not in self.methods], *dict.fromkeys(self.methods)]
        if isinstance(self.start_day, int):
            self.start_day = [self.start_day]
        self.start_day = sorted(dict.fromkeys(int(d) for d in self.start_day))
        if not self.start_day or min(self.start_day) < 0:
            raise GpdiffError(f"--start-day must be 0 (the data's first day) or later, got {self.start_day}.")
        if self.days < 1:
            raise GpdiffError(f"--days must be at least 1, got {self.days}.")

    def forecaster(self, method: str) -> ForecasterConfig:
        """The settings every forecaster of the backtest shares, for ``method``."""
        return ForecasterConfig(method=method, val_days=self.val_days, finetune=self.finetune, blend=self.blend,
                                intervals=self.intervals, gpd=self.gpd if method == "gpd" else GpdConfig(),
                                seed=self.seed)


@dataclass
class BacktestResult:
    """``scores``: one row per start day, forecast day and method (:func:`columns`); ``forecasts``:
    the point forecasts ``[N, B, H]`` per ``(start_day, day, method)``; ``notes``: what was left out."""

    scores: pd.DataFrame
    forecasts: dict[tuple[int, int, str], np.ndarray]
    notes: list[str]
    levels: list[float]


def check(city: City, config: BacktestConfig, window_length: int) -> None:
    """:class:`GpdiffError`, before anything is fitted, for ``start_days`` that leave no training window
    (history + horizon steps before the validation days) or ``start_day + start_days + days`` beyond
    the city's whole days."""
    spd = city.steps_per_day
    n_val = round(config.val_days * spd)
    train = config.start_days * spd - n_val
    if config.start_days < 1 or train < window_length:
        need = -(-(window_length + n_val) // spd)
        raise GpdiffError(f"--start-days {config.start_days}: the last {config.val_days:g} day(s) validate, leaving "
                          f"{max(train, 0)} steps to train, fewer than one window ({window_length} steps of history + "
                          f"horizon); use --start-days {need} or more.")
    have = city.n_steps // spd
    last = max(config.start_day) + config.start_days + config.days
    if last > have:
        room = have - max(config.start_day) - config.start_days
        fix = (f"use --days {room} or fewer" if room >= 1 else
               f"use --start-day {have - config.start_days - config.days} or earlier" if
               have - config.start_days - config.days >= 0 else "use fewer --start-days and --days")
        raise GpdiffError(f"{city.name} has {have} whole day(s) of data; --start-day {max(config.start_day)} + "
                          f"--start-days {config.start_days} + --days {config.days} need {last}; {fix}.")


def backtest(city: City, pretrained: GPD | str | Path | None, config: BacktestConfig, log: Log = lambda m: None,
             progress: bool = False, checkpoint: Path | None = None) -> BacktestResult:
    """Run the backtest of ``city`` (module docstring) for every start day and method of ``config``.
    ``pretrained``: a :class:`GPD` or its folder (``None``: the one that ships), used by the learned
    methods. ``checkpoint``: a folder where every finished run (start day and method) is written at once
    and read back by a rerun (:mod:`gpdiff.forecaster.backtest_checkpoint`), so an interrupted backtest
    resumes with the same result. Raises :class:`GpdiffError` before any fitting for the bad inputs of
    :func:`check`, and for a city that is one of the pretrained model's sources."""
    notes: list[str] = []
    learned = [m for m in config.methods if m not in NAIVE and m != ets.NAME]
    gpd = None
    if learned or pretrained is not None:
        gpd = pretrained if isinstance(pretrained, GPD) else GPD.from_pretrained(pretrained)
        if learned:
            gpd.check_target(city, city.fingerprint())
    window = gpd.window if gpd is not None else WindowConfig()
    window_length = window.length
    check(city, config, window_length)
    methods = _runnable(list(config.methods), gpd, notes)
    if ets.NAME in methods and (why := ets.supports(city)) is not None:
        methods.remove(ets.NAME)
        notes.append(f"left out: {ets.NAME} ({why})")
    if ets.NAME in methods and not ets.available():
        methods.remove(ets.NAME)
        notes.append(f"left out: {ets.NAME} (statsforecast is not installed; {ets.INSTALL})")
    spd = city.steps_per_day
    rows: list[dict[str, Any]] = []
    forecasts: dict[tuple[int, int, str], np.ndarray] = {}
    cities = {d0: _observed_nodes(city, d0 * spd, config.start_days * spd, notes) for d0 in config.start_day}
    saved = None if checkpoint is None else Checkpoint(Path(checkpoint), backtest_key(city.fingerprint(), config, gpd))
    for note in notes:
        log(f"[backtest] note: {note}")
    for d0, city_d in cities.items():
        first = d0 * spd
        weekday = city.timestamps[first].day_name()
        log(f"[backtest] {city.name}: start day {d0} ({city.timestamps[first]:%Y-%m-%d}, a {weekday}), "
            f"{config.start_days} day(s) of data, then {config.days} day(s)")
        for method in methods:
            late: list[str] = []
            done = None if saved is None else saved.load(d0, method, late)
            for note in late:
                log(f"[backtest] note: {note}")
            if done is None:
                run_rows, preds = [], {}
                for k, day_rows, pred in _replay(city_d, first, method, config, gpd, window, log, progress):
                    run_rows.extend({"start_day": d0, "weekday": weekday, **r} for r in day_rows)
                    preds[k] = pred
                if saved is not None:
                    saved.save(d0, method, run_rows, preds)
            else:
                run_rows, preds = done
                log(f"[backtest] start day {d0}, {method}: {len(preds)} day(s) read back from {saved.folder}")
            rows.extend(run_rows)
            forecasts.update({(d0, k, method): pred for k, pred in preds.items()})
    scores = pd.DataFrame(rows, columns=columns(config.intervals.levels))
    scores = scores.sort_values(["start_day", "day"], kind="stable").reset_index(drop=True)  # methods in run order
    return BacktestResult(scores, forecasts, notes, list(config.intervals.levels))


def _runnable(methods: list[str], gpd: GPD | None, notes: list[str]) -> list[str]:
    """``methods`` without pooled_linear when ``gpd`` lacks its ridge (left out with a note that says how to
    get it: it is in the default list); the zoo methods not asked for are named in a note. Raises the
    one-line :class:`GpdiffError` of :func:`require_parts`, before anything is fitted, for a zoo method
    asked for whose parts ``gpd`` lacks."""
    kept = []
    for m in methods:
        try:
            if gpd is not None and m not in NAIVE and m != ets.NAME:
                require_parts(m, gpd)
            kept.append(m)
        except GpdiffError as exc:
            if m in NEEDS_ZOO:
                raise
            notes.append(f"left out: {m} ({exc})")
    unasked = [m for m in NEEDS_ZOO if m not in methods]
    if unasked:
        notes.append(f"not run unless asked for (--methods): {', '.join(unasked)} (they need the sources' model zoo, "
                     "which a pretrained folder holds only when made with gpdiff pretrain --with-zoo)")
    return kept


def _observed_nodes(city: City, first: int, steps: int, notes: list[str]) -> City:
    """``city`` without the nodes that have no observed value in the user's first ``steps`` steps from
    ``first`` (a sensor installed later: the user does not have it yet, and a forecaster cannot fit
    it); a note names them. :class:`GpdiffError` when no node is observed there."""
    seen = city.mask[first:first + steps].any(0)
    if seen.all():
        return city
    day = f"{city.timestamps[first]:%Y-%m-%d}"
    if not seen.any():
        raise GpdiffError(f"{city.name}: no node has an observed value in the {steps // city.steps_per_day} day(s) from "
                          f"{day}; choose another --start-day.")
    gone = [city.node_ids[i] for i in np.flatnonzero(~seen)]
    notes.append(f"start day {day}: {len(gone)} node(s) have no observed value in the first days and are left out "
                 f"(installed later?): {', '.join(gone[:5])}{' ...' if len(gone) > 5 else ''}")
    return _select(city, list(np.flatnonzero(seen)))


def columns(levels: list[float]) -> list[str]:
    """The columns of :attr:`BacktestResult.scores`."""
    lv = [level_name(v) for v in levels]
    return ["start_day", "weekday", "day", "date", "days_of_data", "method", "windows", "mae", "rmse", "crps",
            *[f"coverage_{v}" for v in lv], *[f"width_{v}" for v in lv], "seconds"]


def _replay(city: City, first: int, method: str, config: BacktestConfig, gpd: GPD | None, window: WindowConfig,
            log: Log, progress: bool):
    """Yield ``(day, rows, forecasts [N, B, H])`` for each forecast day of one method from step ``first``."""
    spd = city.steps_per_day
    have = first + config.start_days * spd  # the user's data end here (exclusive)
    levels = list(config.intervals.levels)
    f: Forecaster | None = None
    t0 = time.perf_counter()
    if method != ets.NAME:
        fc = config.forecaster(method)
        f = Forecaster.fit(city.subset_time(first, have), gpd if fc.needs_pretrained else None, fc, progress=progress)
    for k in range(1, config.days + 1):
        # the user's days, the day to forecast, and the next day's first steps its evening windows reach
        day = city.subset_time(first, min(have + spd + window.horizon - 1, city.n_steps))
        n_have = have - first
        data = _day_data(day, n_have, f, window)
        origins = data.origins("val")
        truth, mask = data.truth(origins)
        if f is None:
            pred, bnds = ets.forecast_windows(day, n_have, origins, data.horizon, levels)
        else:
            pred, bnds = _forecast(f, data, origins)
        row = _score(pred, bnds, truth, mask, levels)
        row.update(day=k, date=f"{city.timestamps[have]:%Y-%m-%d}", days_of_data=n_have // spd, method=method,
                   windows=int(origins.size), seconds=round(time.perf_counter() - t0, 3))
        log(f"[backtest] day {k} ({row['date']}, {row['days_of_data']} days of data) {method}: MAE {row['mae']:.4g}, "
            f"CRPS {row['crps']:.4g}")
        yield k, [row], pred
        have += spd
        t0 = time.perf_counter()
        if f is not None and k < config.days:
            f = f.update(city.subset_time(first, have), progress=progress)


def _day_data(day: City, n_have: int, f: Forecaster | None, window: WindowConfig) -> CityData:
    """The user's days and the day to forecast as :class:`CityData`: the days the user has train (the
    historical average's profile), the new day is the segment whose windows are forecast; the scaler is
    the forecaster's (the first fit's)."""
    split = Split(Segment(0, n_have), Segment(n_have, day.n_steps), Segment(day.n_steps, day.n_steps), role="fit")
    w = window if f is None else f.window
    if f is not None and list(f.node_ids) != list(day.node_ids):
        raise GpdiffError("internal: the forecaster's nodes are not the city's.")
    return CityData(day, split, w.history, w.horizon, w.n_neighbors, context=w.context,
                    scaler=None if f is None else f.scaler)


def _forecast(f: Forecaster, data: CityData, origins: np.ndarray) -> tuple[np.ndarray, np.ndarray | Band]:
    """Point forecasts ``[N, B, H]`` of ``f`` at ``origins`` and their conformal intervals (a
    :class:`~gpdiff.evaluation.intervals.Band`; NaN bounds ``[L, 2, N, B, H]`` without a calibration),
    as :meth:`Forecaster.predict` makes them (blended, clipped, intervals from its calibration)."""
    pred = f._clip(np.asarray(f.forecast_at(data, origins), dtype=np.float64), data.city.kind)
    levels = list(f.config.intervals.levels)
    if f.calibration is None:
        return pred, np.full((len(levels), 2, *pred.shape), np.nan)
    return pred, band(pred, f.scaler.std[:, 0].astype(np.float64), f.calibration, data.city.kind)


def _score(pred: np.ndarray, bnds: np.ndarray | Band, truth: np.ndarray, mask: np.ndarray, levels: list[float]
           ) -> dict[str, Any]:
    m = masked_metrics(pred, truth, mask)
    s = score(pred, bnds, truth, mask, levels)
    row: dict[str, Any] = {"mae": m.mae_avg, "rmse": m.rmse_avg, "crps": float(np.nanmean(s.crps))
                           if np.isfinite(s.crps).any() else float("nan")}
    for i, level in enumerate(levels):
        have = np.isfinite(s.coverage[i])
        row[f"coverage_{level_name(level)}"] = float(np.nanmean(s.coverage[i])) if have.any() else float("nan")
        row[f"width_{level_name(level)}"] = float(np.nanmean(s.width[i])) if have.any() else float("nan")
    return row


def beats_naive_from(scores: pd.DataFrame) -> pd.DataFrame:
    """Per start day and method, the fewest days of data from which its MAE is below both
    :data:`REFERENCES` on that day and every later day of the backtest (NaN: never). Columns
    ``start_day, method, beats_both_from``."""
    out = []
    for d0, g in scores.groupby("start_day", sort=True):
        ref = g[g["method"].isin(REFERENCES)].pivot(index="days_of_data", columns="method", values="mae").min(axis=1)
        for method, gm in g.groupby("method", sort=False):
            if method in REFERENCES:
                continue
            mae = gm.set_index("days_of_data")["mae"].reindex(ref.index)
            wins = (mae < ref).to_numpy()
            since = np.nan
            for i in range(len(wins) - 1, -1, -1):
                if not wins[i]:
                    break
                since = ref.index[i]
            out.append({"start_day": d0, "method": method, "beats_both_from": since})
    return pd.DataFrame(out, columns=["start_day", "method", "beats_both_from"])
