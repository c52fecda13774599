"""Pooled linear: one city-balanced ridge regression of the next steps on seasonal lag differences,
fitted on the source cities and applied zero-shot to the target. The bar a neural model must clear.

Every node is standardised on its own training data (the run's scaler: a source on its training
segment, the target on its few-shot days). For a window with forecast origin ``t``, history ``L``
and horizon ``H`` (in steps of the city's own interval; a day is ``D`` steps, a week ``W = 7 D``),
the full model reads three groups of values

- ``history``: ``x[t-L .. t-1]``;
- ``daily``: the same ``L + H`` steps one day earlier, ``x[t-L-D .. t+H-1-D]``;
- ``weekly``: the same ``L + H`` steps one week earlier, ``x[t-L-W .. t+H-1-W]``,

and forecasts each step ``h`` as the value one week earlier plus a linear function of
``history - weekly[:L]`` (the last ``L`` steps against a week earlier), ``daily[L:] - weekly[L:]``
(the forecast steps a day earlier against a week earlier) and ``history - daily[:L]`` (the last
``L`` steps against a day earlier), with an intercept: the target of the regression is the next
``H`` steps minus their values one week earlier (issue 28's recipe). One ridge per horizon step,
fitted in closed form (``numpy.linalg.lstsq`` on the normal equations) on windows drawn from every
source city's training segment, each city weighted equally (city-balanced, as the anchor samples).

**A lag group that cannot be read is never filled in.** A group is available for a window only when
every one of its values is observed, inside the series, and not before what the origin may read
(:meth:`gpdiff.data.windows.CityData.readable_from`: at a target's training and validation origins
nothing before the few-shot days; at test origins the whole past). A window is then forecast by the
model of exactly the groups it has, each fitted on the sources' windows that have those groups:

- with ``weekly``: base the value a week earlier, inputs the differences above among those available;
- without ``weekly``, with ``daily``: base the value a day earlier, input ``history - daily[:L]``;
- ``history`` only: base the last observed value, input ``history[:-1] - history[-1]``;
- nothing: the historical average of the few-shot days (:func:`gpdiff.naive.historical_average`).

With three few-shot days the value one week earlier never exists on the target's validation day, so
validation forecasts (the blend's weights, the intervals' calibration) come from the daily model;
:class:`gpdiff.methods.MethodResult` ``notes`` give each model's share of the test and validation
windows. A per-node fine-tuned variant is left out on purpose: the target's few-shot training windows
never hold the weekly group, so fine-tuning could only move the fallback model, not the one that
forecasts the test period.

Sources of the method: a linear model on lagged values is the classic baseline that deep forecasters
must beat (Zeng, Chen, Zhang, Xu, "Are Transformers Effective for Time Series Forecasting?", AAAI
2023: DLinear, one linear layer over the input window); learning how yesterday, last week and the
last hours combine is forecast combination with estimated weights (Bates & Granger, "The Combination
of Forecasts", Operational Research Quarterly 20(4), 1969; Granger & Ramanathan, "Improved methods of
combining forecasting", Journal of Forecasting 3(2), 1984, combining by regression with an intercept);
ridge: Hoerl & Kennard, Technometrics 12(1), 1970.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from gpdiff.config import require_at_least_one
from gpdiff.data.windows import CityData
from gpdiff.errors import GpdiffError
from gpdiff.methods import Context, MethodResult
from gpdiff.naive import historical_average

GROUPS = ("history", "daily", "weekly")
# every non-empty set of groups a window may have, as availability bits (history, daily, weekly)
PATTERNS = tuple((h, d, w) for h in (True, False) for d in (True, False) for w in (True, False) if h or d or w)


@dataclass
class PooledLinearConfig:
    """Settings of ``pooled_linear`` (run config ``methods.pooled_linear``)."""

    alpha: float = 1e-3  # ridge penalty on the city-balanced mean squared error (standardised units); intercept free
    windows_per_city: int = 20000  # training windows drawn from every source city (all of them when fewer)

    def __post_init__(self) -> None:
        require_at_least_one(self, ("windows_per_city",), "methods.pooled_linear.")
        if not (isinstance(self.alpha, (int, float)) and math.isfinite(self.alpha) and self.alpha >= 0):
            raise GpdiffError(f"methods.pooled_linear.alpha must be a finite number >= 0, got {self.alpha!r}.")


def pattern_name(pattern: tuple[bool, bool, bool]) -> str:
    """``(True, True, False)`` -> ``"history+daily"``."""
    return "+".join(g for g, on in zip(GROUPS, pattern) if on) or "none"


@dataclass
class LagWindows:
    """The values of windows ``(node, origin)`` one model reads, scaled (0 where not available).

    ``hist [M, L]``, ``day`` and ``week [M, L+H]`` (the history and forecast steps one day / one week
    earlier), ``y`` and ``y_mask [M, H]`` (targets), ``has [M, 3]`` (availability of history, daily,
    weekly: every value observed and readable)."""

    hist: np.ndarray
    day: np.ndarray
    week: np.ndarray
    y: np.ndarray
    y_mask: np.ndarray
    has: np.ndarray


def check_horizon(data: CityData) -> None:
    """:class:`GpdiffError` when the horizon is longer than a day of ``data``'s city: the value a day
    before a forecast step would then lie after the origin."""
    if data.horizon > data.city.steps_per_day:
        raise GpdiffError(f"{data.city.name}: pooled_linear reads the value one day before every forecast step, "
                          f"so the horizon must be at most a day ({data.city.steps_per_day} steps at "
                          f"{data.city.interval_minutes} min), got {data.horizon}; use a shorter horizon.")


def lag_windows(data: CityData, nodes: np.ndarray, origins: np.ndarray) -> LagWindows:
    """:class:`LagWindows` of the windows ``(nodes[m], origins[m])`` (``[M]`` each) of ``data``.

    A value before the series start, unobserved, or before :meth:`CityData.readable_from` its origin
    is never read: its group is unavailable for that window (and its slot 0)."""
    L, H, spd = data.history, data.horizon, data.city.steps_per_day
    nodes, origins = np.asarray(nodes, dtype=np.int64), np.asarray(origins, dtype=np.int64)
    floor = data.readable_from(origins)[:, None]
    values = data.values[..., 0].detach().cpu().numpy()  # [T, N] scaled
    mask = data.city.mask

    def gather(steps: np.ndarray, check_floor: bool = True) -> tuple[np.ndarray, np.ndarray]:
        ok = (steps >= 0) & (steps < data.city.n_steps)
        if check_floor:
            ok &= steps >= floor
        idx = np.where(ok, steps, 0)
        obs = mask[idx, nodes[:, None]] & ok
        return np.where(obs, values[idx, nodes[:, None]], 0.0).astype(np.float64), obs

    steps = origins[:, None] + np.arange(-L, H)  # [M, L+H]
    hist, h_ok = gather(steps[:, :L])
    day, d_ok = gather(steps - spd)
    week, w_ok = gather(steps - 7 * spd)
    y, y_mask = gather(steps[:, L:], check_floor=False)  # targets: scored, never read as inputs
    has = np.stack([h_ok.all(1), d_ok.all(1), w_ok.all(1)], axis=1)
    return LagWindows(hist, day, week, y, y_mask, has)


def design(w: LagWindows, pattern: tuple[bool, bool, bool]) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``[M, F+1]`` (the last column the intercept's 1) and base ``[M, H]`` of the model of
    ``pattern`` (availability of history, daily, weekly; not all False), for every window of ``w``
    (meaningful where the window has the pattern's groups)."""
    history, daily, weekly = pattern
    L, H = w.hist.shape[1], w.y.shape[1]
    dh, df, wh, wf = w.day[:, :L], w.day[:, L:], w.week[:, :L], w.week[:, L:]
    parts: list[np.ndarray] = []
    if weekly:
        base = wf
        parts += [w.hist - wh] if history else []
        parts += [df - wf] if daily else []
        parts += [w.hist - dh] if history and daily else []
    elif daily:
        base = df
        parts += [w.hist - dh] if history else []
    else:
        base = np.repeat(w.hist[:, -1:], H, axis=1)
        parts += [w.hist[:, :-1] - w.hist[:, -1:]]
    x = np.concatenate(parts + [np.ones((len(w.hist), 1))], axis=1)
    return x, base


@dataclass
class PooledLinear:
    """The fitted models: ``coef[pattern] [H, F+1]`` (input weights, then the intercept) for every
    pattern of :data:`PATTERNS`, and ``rows[pattern]``: how many source windows fitted it."""

    coef: dict[tuple[bool, bool, bool], np.ndarray] = field(default_factory=dict)
    rows: dict[tuple[bool, bool, bool], int] = field(default_factory=dict)


def ridge(x: np.ndarray, t: np.ndarray, weight: np.ndarray, alpha: float) -> np.ndarray:
    """Coefficients ``[F+1]`` minimising ``sum_i weight_i (t_i - x_i b)^2 + alpha |b[:-1]|^2`` (the
    last column of ``x [M, F+1]`` is the unpenalised intercept); the minimum-norm solution when the
    system is singular."""
    xw = x * weight[:, None]
    gram = x.T @ xw
    gram[np.arange(x.shape[1] - 1), np.arange(x.shape[1] - 1)] += alpha
    return np.linalg.lstsq(gram, xw.T @ t, rcond=None)[0]


def sample_windows(data: CityData, count: int, rng: np.random.Generator) -> LagWindows:
    """:class:`LagWindows` of up to ``count`` ``(node, origin)`` pairs drawn without replacement from
    ``data``'s training windows (all of them when fewer)."""
    origins = data.origins("train")
    total = data.n_nodes * origins.size
    pick = np.sort(rng.choice(total, size=min(count, total), replace=False)) if total else np.zeros(0, np.int64)
    return lag_windows(data, pick // origins.size, origins[pick % origins.size])


def fit(sources: list[CityData], cfg: PooledLinearConfig = PooledLinearConfig(), seed: int = 0) -> PooledLinear:
    """One ridge per horizon step and :data:`PATTERNS` entry on the sources' training windows, every
    city weighted equally (its windows' weights sum to ``1 / len(sources)`` per horizon step).
    Raises :class:`GpdiffError` when no source has a window, or a horizon longer than a day."""
    if not sources:
        raise GpdiffError("pooled_linear needs at least one source city.")
    for data in sources:
        check_horizon(data)
    rng = np.random.default_rng(seed)
    per_city = [sample_windows(d, cfg.windows_per_city, rng) for d in sources]
    model = PooledLinear()
    for pattern in PATTERNS:
        need = np.asarray(pattern)
        xs, ts, ws, n = [], [], [], 0
        for w in per_city:
            rows = (w.has[:, need]).all(1)
            n += int(rows.sum())
            x, base = design(w, pattern)
            xs.append(x[rows])
            ts.append((w.y - base)[rows])
            ws.append(w.y_mask[rows])
        if n == 0:
            raise GpdiffError(f"pooled_linear: no source window has the {pattern_name(pattern)} values; the "
                              "sources need at least a week and a window of observed values.")
        coef = []
        for h in range(sources[0].horizon):
            weight = [m[:, h] / max(m[:, h].sum(), 1) / len(sources) for m in ws]
            coef.append(ridge(np.concatenate(xs), np.concatenate([t[:, h] for t in ts]), np.concatenate(weight),
                              cfg.alpha))
        model.coef[pattern], model.rows[pattern] = np.stack(coef), n
    return model


def predict(model: PooledLinear, data: CityData, origins: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Forecasts ``[N, B, H]`` (original scale) of every node of ``data`` at ``origins [B]``, each window
    by the model of exactly the lag groups it may read, and each model's share of the windows."""
    check_horizon(data)
    n, b = data.n_nodes, origins.size
    nodes = np.repeat(np.arange(n), b)
    w = lag_windows(data, nodes, np.tile(origins, n))
    scaled = np.zeros(w.y.shape)
    share: dict[str, float] = {}
    done = np.zeros(len(nodes), dtype=bool)
    for pattern in PATTERNS:
        rows = (w.has == np.asarray(pattern)).all(1)
        if rows.any():
            x, base = design(w, pattern)
            scaled[rows] = base[rows] + x[rows] @ model.coef[pattern].T
            done |= rows
            share[pattern_name(pattern)] = float(rows.mean())
    pred = data.to_original(scaled.reshape(n, b, -1), np.arange(n))
    if not done.all():  # no group readable: the few-shot days' profile
        share["none (historical average)"] = float((~done).mean())
        pred = np.where(done.reshape(n, b, 1), pred, historical_average(data, origins))
    return pred.astype(np.float32), share


def _describe(share: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1%}" for k, v in sorted(share.items(), key=lambda kv: -kv[1]))


def run(ctx: Context) -> MethodResult:
    cfg = ctx.settings(PooledLinearConfig)
    model = fit(ctx.sources, cfg, ctx.seed)
    pred, test_share = predict(model, ctx.target, ctx.target.origins("test"))
    val_pred, val_share = predict(model, ctx.target, ctx.target.origins("val"))
    notes = {"test_windows_by_lag_model": _describe(test_share), "val_windows_by_lag_model": _describe(val_share),
             "source_windows": model.rows[(True, True, True)]}
    return MethodResult(pred=pred, val_pred=val_pred, notes=notes)
