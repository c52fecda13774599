"""Prediction intervals by split conformal calibration, and the scores that judge them.

For a method's point forecasts on the calibration windows (a target's validation day), the
nonconformity score of node ``n``, window ``b``, horizon step ``h`` is its absolute error divided
by the node's scale ``s_n`` (the training std of its scaler, so that a busy and a quiet sensor share
one calibration). Per horizon step and level ``1 - a`` the calibrated quantile is the
``ceil((m + 1)(1 - a))``-th smallest of the ``m`` observed scores, and the interval of a new forecast
``y`` is ``y -+ q[h] * s_n``: split conformal prediction (Vovk et al. 2005; Lei et al., "Distribution-
free predictive inference for regression", JASA 2018, section 2.2), which covers a new exchangeable
point with probability at least ``1 - a``. A step with too few observed scores for a level
(``m < (1 - a) / a``) has no finite quantile: no interval, and :attr:`Calibration.notes` says how
many it had and how many it needs.

Scores (per horizon step, pooled over nodes and windows, masked like MAE, original units):
coverage, mean width, the interval (Winkler) score ``width + 2/a (lower - y)+ + 2/a (y - upper)+``
(Gneiting & Raftery, JASA 2007, section 6.2) and the CRPS of the quantile forecast the point and the
bounds make (the 0.5 quantile and ``a/2``, ``1 - a/2`` per level), from ``scoringrules``. The
conformal calibration is a few lines of numpy, written here because it is per horizon step and per
node scale on ``[N, B, H]`` arrays with a mask, which ``mapie``'s regressor interface does not take.

Calibrated once, the intervals of a whole test period rest on one validation day; where the test's
errors grow (another weekday mix, a drift) they under-cover. :func:`daily_quantiles` recalibrates
them once a day on the errors of the day before, as a forecaster updated every day is
(:meth:`gpdiff.forecaster.Forecaster.update`), reading only errors whose values were observed by the
day's first origin: a rolling split conformal calibration, the simplest of the online schemes for
non-exchangeable data (Gibbs & Candes, "Adaptive conformal inference under distribution shift",
NeurIPS 2021, discuss it as the baseline their update improves on).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from gpdiff.utils.errors import GpdiffError

DEFAULT_LEVELS = (0.8, 0.95)
RELIABILITY_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)  # nominal levels of a reliability plot


def check_levels(levels: list[float] | tuple[float, ...]) -> list[float]:
    """``levels`` sorted, each in (0, 1) and none repeated; :class:`GpdiffError` otherwise."""
    out = [float(v) for v in levels]
    bad = [v for v in out if not 0 < v < 1]
    if bad:
        raise GpdiffError(f"interval levels must lie strictly between 0 and 1 (0.8 for an 80% interval), got {bad[0]}.")
    if len(set(out)) != len(out):
        raise GpdiffError(f"interval levels {out} name a level twice; list each once.")
    return sorted(out)


@dataclass
class IntervalConfig:
    """Prediction-interval levels (forecaster and backtest ``intervals``): default 80% and 95%."""

    levels: list[float] = field(default_factory=lambda: list(DEFAULT_LEVELS))

    def __post_init__(self) -> None:
        self.levels = check_levels(self.levels)


CALIBRATIONS = ("validation", "daily")


@dataclass
class RunIntervalConfig(IntervalConfig):
    """A run's ``intervals``: the levels, and when the test period's intervals are calibrated:
    ``validation`` (once, on the target's validation day) or ``daily`` (:func:`daily_quantiles`: the
    validation day for the first test day, then every day on the day before's test errors). A
    forecaster has no such setting: it recalibrates at every :meth:`~gpdiff.forecaster.Forecaster.update`."""

    calibration: str = "validation"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.calibration not in CALIBRATIONS:
            raise GpdiffError(f"intervals.calibration must be one of {', '.join(CALIBRATIONS)}, "
                              f"got {self.calibration!r}.")


def level_name(level: float) -> str:
    """``0.8`` -> ``"80"``, ``0.975`` -> ``"97.5"`` (column suffixes: ``lower_80``)."""
    return f"{level * 100:g}"


@dataclass
class Calibration:
    """Calibrated quantiles of the scaled absolute error: ``quantiles[l, h]`` for ``levels[l]`` and horizon
    step ``h`` (NaN where the calibration set was too small), from ``n_scores[h]`` observed scores."""

    levels: list[float]
    quantiles: np.ndarray  # [L, H]
    n_scores: np.ndarray  # [H]
    notes: list[str] = field(default_factory=list)

    def at_steps(self, steps: int) -> np.ndarray:
        """Quantiles ``[L, steps]``: beyond the calibrated steps the last one's (a recursive forecast's
        later steps get the width of the model's last step)."""
        h = self.quantiles.shape[1]
        idx = np.minimum(np.arange(steps), h - 1)
        return self.quantiles[:, idx]


def calibrate(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray, scale: np.ndarray,
              levels: list[float] | tuple[float, ...] = DEFAULT_LEVELS) -> Calibration:
    """Split conformal quantiles from calibration forecasts ``pred``, ``truth``, ``mask`` ``[N, B, H]`` and
    node scales ``scale [N]`` (> 0). Raises :class:`GpdiffError` on mismatched shapes or bad levels."""
    levels = check_levels(levels)
    if truth.shape != pred.shape or mask.shape != pred.shape or scale.shape != pred.shape[:1]:
        raise GpdiffError(f"calibration: forecasts {pred.shape}, truth {truth.shape}, mask {mask.shape} and node "
                          f"scales {scale.shape} must be [N, B, H], [N, B, H], [N, B, H] and [N].")
    ok = np.isfinite(truth) & np.isfinite(pred)
    return calibrate_scores(np.where(ok, np.abs(truth - pred) / np.maximum(scale, 1e-12)[:, None, None], np.nan),
                            mask, levels)


def calibrate_scores(scores: np.ndarray, mask: np.ndarray, levels: list[float] | tuple[float, ...] = DEFAULT_LEVELS
                     ) -> Calibration:
    """Split conformal quantiles ``[L, H]`` of nonconformity scores ``scores [..., H]`` (NaN, or ``mask`` 0,
    where unobserved): :func:`calibrate`'s step once the scores are made (also the conformalised
    ensemble's and the daily recalibration's, whose scores divide by another scale). Raises
    :class:`GpdiffError` on mismatched shapes or bad levels."""
    levels = check_levels(levels)
    if mask.shape != scores.shape:
        raise GpdiffError(f"calibration: scores {scores.shape} and mask {mask.shape} must have one shape.")
    ok = mask.astype(bool) & np.isfinite(scores)
    h_steps = scores.shape[-1]
    q = np.full((len(levels), h_steps), np.nan)
    counts = ok.reshape(-1, h_steps).sum(0)
    notes: list[str] = []
    for h in range(h_steps):
        s = np.sort(scores[..., h][ok[..., h]])
        for i, level in enumerate(levels):
            k = math.ceil((s.size + 1) * level)
            if k <= s.size:
                q[i, h] = s[k - 1]
    for i, level in enumerate(levels):
        short = np.flatnonzero(np.isnan(q[i]))
        if short.size:
            need = math.ceil(level / (1 - level))
            notes.append(f"{level_name(level)}% interval: horizon step(s) {', '.join(str(h + 1) for h in short)} have "
                         f"{int(counts[short].min())} observed calibration value(s), a conformal {level_name(level)}% "
                         f"interval needs at least {need}; no interval there")
    return Calibration(levels, q, counts, notes)


def bounds(pred: np.ndarray, scale: np.ndarray, cal: Calibration, kind: str = "speed") -> np.ndarray:
    """Interval bounds ``[L, 2, N, ...]`` (lower, upper) of forecasts ``pred [N, ..., S]`` with node scales
    ``scale [N]``; NaN where uncalibrated. A ``flow`` city's lower bounds are at least 0."""
    return band(pred, scale, cal, kind).full()


def band(pred: np.ndarray, scale: np.ndarray, cal: Calibration, kind: str = "speed") -> Band:
    """:func:`bounds` as a :class:`Band`, which :func:`score` reads at the observed values only."""
    q = cal.at_steps(pred.shape[-1])  # [L, S]
    shape = (pred.shape[0],) + (1,) * (pred.ndim - 1)
    half = q.reshape(q.shape[0], *([1] * (pred.ndim - 1)), q.shape[1]) * scale.reshape(shape)[None]
    return Band(pred, half, kind)


def around(pred: np.ndarray, half: np.ndarray, kind: str = "speed") -> np.ndarray:
    """Bounds ``[L, 2, *pred.shape]``: ``pred -+ half`` for half-widths ``half [L, ...]`` broadcasting
    against ``pred``; a ``flow`` city's lower bounds are at least 0."""
    out = np.empty((half.shape[0], 2, *pred.shape), dtype=np.result_type(pred, half))
    np.subtract(pred[None], half, out=out[:, 0])
    np.add(pred[None], half, out=out[:, 1])
    if kind == "flow":
        np.maximum(out[:, 0], 0.0, out=out[:, 0])
    return out


@dataclass(frozen=True)
class Band:
    """Symmetric intervals ``pred -+ half`` (:func:`around`) not yet written out: forecasts ``pred [N, B, H]``,
    half-widths ``half [L, ...]`` broadcasting against them (NaN: no interval), a ``flow`` city's lower
    bounds at least 0. Every conformal interval of gpdiff is one; :func:`score` computes its bounds at
    the observed values only, which spares writing and gathering ``[L, 2, N, B, H]`` (BENCHMARKS.md,
    "The cost of the intervals"), with the same float operations as :meth:`full`."""

    pred: np.ndarray
    half: np.ndarray
    kind: str = "speed"

    def full(self) -> np.ndarray:
        """The bounds ``[L, 2, N, B, H]``."""
        return around(self.pred, self.half, self.kind)

    def at(self, ok: np.ndarray) -> np.ndarray:
        """The bounds ``[L, 2, M]`` at the ``M`` values where the boolean ``ok [N, B, H]`` is set, in C order."""
        half = np.stack([np.broadcast_to(h, self.pred.shape)[ok] for h in self.half]) if len(self.half) else \
            np.empty((0, int(ok.sum())))
        return around(self.pred[ok], half, self.kind)


def daily_quantiles(first: Calibration, scores: np.ndarray, mask: np.ndarray, origins: np.ndarray, start: int,
                    steps_per_day: int) -> tuple[np.ndarray, list[str]]:
    """Quantiles ``[L, B, H]`` for test windows at ``origins [B]`` recalibrated once a day, from their
    nonconformity scores ``scores [N, B, H]`` (the absolute error over the node's scale, or over the
    ensemble's spread; NaN or ``mask`` 0 where unobserved).

    Test day ``d`` holds the origins ``start + d * steps_per_day`` up to the next day's. Day 0 gets
    ``first`` (the validation day's calibration); day ``d >= 1`` gets the split conformal quantiles
    (:func:`calibrate`) of the test windows whose targets all lie in the ``steps_per_day`` steps before
    its first origin: the day before, every value of it observed when the day's first forecast is made,
    as the validation day is for the first. A level and step with too few observed scores on a day
    keeps the day before's quantile, and the returned notes name those days."""
    n_levels, horizon = len(first.levels), scores.shape[-1]
    q = first.at_steps(horizon)
    out = np.empty((n_levels, origins.size, horizon))
    day = (origins - start) // steps_per_day
    kept: list[int] = []
    for d in range(int(day.max()) + 1 if origins.size else 0):
        if d > 0:
            begin = start + d * steps_per_day
            sel = (origins >= begin - steps_per_day) & (origins + horizon <= begin)
            fresh = calibrate_scores(scores[:, sel], mask[:, sel], first.levels).at_steps(horizon)
            if (np.isnan(fresh) & np.isfinite(q)).any():
                kept.append(d + 1)
            q = np.where(np.isnan(fresh), q, fresh)
        out[:, day == d] = q[:, None, :]
    notes = [f"test day(s) {', '.join(map(str, kept))}: the day before had too few observed values to recalibrate "
             "some level or step; those kept the day before's quantiles"] if kept else []
    return out, notes


Daily = Callable[[Calibration, np.ndarray], tuple[np.ndarray, list[str]]]  # daily_quantiles bound to a test period


def daily_band(pred: np.ndarray, unit: np.ndarray, truth: np.ndarray, first: Calibration, daily: Daily,
               kind: str = "speed") -> tuple[Band, list[str]]:
    """Intervals (a :class:`Band`; ``.full()``: ``[L, 2, N, B, H]``) of test forecasts ``pred [N, B, H]``
    recalibrated once a day: the nonconformity score of a value is its absolute error over ``unit`` (a
    node's scale ``[N, 1, 1]`` or an ensemble's floored spread ``[N, B, H]``; at least 1e-12, as
    :func:`calibrate` divides), ``daily`` turns them into per-window quantiles ``q`` starting from
    ``first``, and the interval is ``pred -+ q * unit``. Returns the intervals and ``daily``'s notes."""
    q, notes = daily(first, np.abs(truth - pred) / np.maximum(unit, 1e-12))
    return Band(pred, q[:, None] * unit[None], kind), notes


@dataclass
class IntervalScores:
    """Per level ``[L, H]`` coverage (share), mean width and interval score, and CRPS ``[H]``, all over
    the observed values (original units); ``node_crps [N]``: each node's CRPS over its observed values
    (NaN: none, or a step without an interval), the unit of the scoreboard's paired test."""

    levels: list[float]
    coverage: np.ndarray
    width: np.ndarray
    interval_score: np.ndarray
    crps: np.ndarray
    node_crps: np.ndarray | None = None

    def coverage_avg(self, level: float) -> float:
        """Coverage of ``level``'s interval averaged over the horizon steps."""
        return float(np.nanmean(self.coverage[self.levels.index(level)]))

    def table_cells(self, levels: list[float], interval_score: bool = True) -> list[str]:
        """Markdown cells per level, averaged over the horizon steps: coverage, width (and the interval
        score), the order of report.md's interval and ensemble tables."""
        cells = []
        for v in levels:
            i = self.levels.index(v)
            cells += [f"{np.nanmean(self.coverage[i]):.1%}", f"{np.nanmean(self.width[i]):.4g}"]
            cells += [f"{np.nanmean(self.interval_score[i]):.4g}"] if interval_score else []
        return cells

    def rows(self, method: str, levels: list[float] | None = None) -> list[dict[str, object]]:
        """Rows ``method, horizon, level, coverage, width, interval_score, crps`` (``avg`` pools the steps)
        for ``levels`` (default all)."""
        out = []
        steps = [str(h + 1) for h in range(self.crps.shape[0])] + ["avg"]
        for i, level in enumerate(self.levels):
            if levels is not None and level not in levels:
                continue
            for j, name in enumerate(steps):
                pick = (lambda a: float(np.nanmean(a))) if name == "avg" else (lambda a, j=j: float(a[j]))
                out.append({"method": method, "horizon": name, "level": level, "coverage": pick(self.coverage[i]),
                            "width": pick(self.width[i]), "interval_score": pick(self.interval_score[i]),
                            "crps": pick(self.crps)})
        return out


def score(pred: np.ndarray, bnds: np.ndarray | Band, truth: np.ndarray, mask: np.ndarray, levels: list[float],
          widths: list[float] | None = None) -> IntervalScores:
    """Scores of point forecasts ``pred [N, B, H]`` with intervals ``bnds``: bounds ``[L, 2, N, B, H]``
    (:func:`bounds`, or a model's own) or a :class:`Band` (then only its observed values are computed),
    against ``truth`` / ``mask`` ``[N, B, H]``, over the observed values only (masked like MAE: the
    others are never scored). A step where some observed value has no interval scores NaN.
    ``widths``: the levels whose width and interval score are computed (default all); the others get
    their coverage only (a reliability plot's levels) and NaN width and interval score. The CRPS uses
    every level's bounds either way.

    The interval score and the CRPS are scoringrules' (``interval_score``, ``crps_quantile`` of the
    median and every bound), computed with its torch backend on the observed values gathered into one
    vector: the same float64 formulas as its numpy one (within 1e-12), about three times faster, and
    nothing spent on the values a mask hides, which keeps the intervals a small share of a run
    (BENCHMARKS.md, "The cost of the intervals")."""
    import scoringrules as sr
    import torch

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))

    n_steps = pred.shape[-1]
    ok = mask.astype(bool) & np.isfinite(truth)
    node_of, _, step_of = np.nonzero(ok.reshape(ok.shape[0], -1, n_steps))  # the observed values, in order
    y = truth[ok].astype(np.float64)
    n = np.maximum(np.bincount(step_of, minlength=n_steps), 1)
    observed = bnds.at(ok) if isinstance(bnds, Band) else bnds[:, :, ok]  # [L, 2, M]

    def avg(v: np.ndarray) -> np.ndarray:  # observed values [M] -> mean per step [H]
        return np.bincount(step_of, weights=v, minlength=n_steps) / n

    def complete(bad: np.ndarray) -> np.ndarray:  # observed values [M] -> [H]: no bad value at the step
        return np.bincount(step_of, weights=bad, minlength=n_steps) == 0

    cov, width, iscore = (np.full((len(levels), n_steps), np.nan) for _ in range(3))
    alphas = [0.5] + [a for level in levels for a in ((1 - level) / 2, 1 - (1 - level) / 2)]
    order = np.argsort(alphas)
    slot = np.empty(len(alphas), dtype=np.int64)
    slot[order] = np.arange(len(alphas))  # where each quantile goes in the sorted forecast
    fct = np.empty((len(alphas), y.size))  # quantiles first: each one written in one contiguous block
    fct[slot[0]] = pred[ok]
    for i, level in enumerate(levels):
        lo, hi = observed[i, 0].astype(np.float64, copy=False), observed[i, 1].astype(np.float64, copy=False)
        fct[slot[1 + 2 * i]], fct[slot[2 + 2 * i]] = lo, hi
        have = complete(~(np.isfinite(lo) & np.isfinite(hi)))
        cov[i] = np.where(have, avg(((y >= lo) & (y <= hi)).astype(np.float64)), np.nan)
        if widths is not None and level not in widths:
            continue
        width[i] = np.where(have, avg(hi - lo), np.nan)
        interval = sr.interval_score(tensor(y), tensor(np.nan_to_num(lo)), tensor(np.nan_to_num(hi)), 1 - level,
                                     backend="torch")
        iscore[i] = np.where(have, avg(interval.numpy()), np.nan)
    whole = np.isfinite(fct).all(0)
    quantiles = torch.from_numpy(fct).nan_to_num_()
    crps = sr.crps_quantile(tensor(y), quantiles, tensor(np.asarray(alphas)[order]), m_axis=0, backend="torch").numpy()
    crps_h = np.where(complete(~whole), avg(crps), np.nan)
    n_node = np.bincount(node_of, minlength=ok.shape[0])
    node = np.bincount(node_of, weights=crps, minlength=ok.shape[0]) / np.maximum(n_node, 1)
    node = np.where((n_node > 0) & bool(np.isfinite(crps_h).all()), node, np.nan)
    return IntervalScores(list(levels), cov, width, iscore, crps_h, node)
