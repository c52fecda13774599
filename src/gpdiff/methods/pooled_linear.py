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

**A lag that cannot be read is never filled in.** A window's inputs come in five parts: the history,
and the history and forecast steps a day earlier and a week earlier. A part is available only when
every one of its values is observed, inside the series, and not before what the origin may read
(:meth:`gpdiff.data.windows.CityData.readable_from`: at a target's training and validation origins
nothing before the few-shot days; at test origins the whole past). A window is forecast by the model
of exactly the parts it has (:func:`lag_model`), each model fitted on the sources' windows that have
its parts:

- forecast steps a week earlier there: base the value a week earlier, with each of the three inputs
  above whose parts are there (all three: the recipe);
- else forecast steps a day earlier there: base the value a day earlier, input ``history - daily[:L]``
  when both are there;
- else the history there: base its last value, input ``history[:-1] - history[-1]``;
- nothing: the historical average of the few-shot days (:func:`gpdiff.evaluation.naive.historical_average`).

(A metro closed at night loses the history of its first hours after opening: those windows use the
weekly base with ``daily-weekly`` only.) A model that no source window can fit (sources shorter than a
week and a window) is left out, and a window that would need it takes the fitted model with the most
inputs among those whose parts it has (:func:`choose`). The notes give each model's share of the test and validation
windows.

**Not blended by default.** With three few-shot days the value one week earlier never exists on the
target's validation day, so the validation forecasts come from the daily model while the test period
is forecast by the full one; blend weights fitted on the first do not carry over to the second (on the
loco targets, measured in ``benchmarks/pooled_linear.py``, blending made nyc-taxi 32% and
montevideo-bus 13% worse, melbourne-ped and la-loop 2-3% better), so ``blend: false`` by default. The validation forecasts still calibrate
its prediction intervals (conservative where the daily model is the weaker one). A per-node
fine-tuned variant is left out for the same reason: the few-shot training windows never hold the
weekly parts, so fine-tuning could only move a fallback model, not the one that forecasts the test.

Sources of the method: a linear model on lagged values is the classic baseline that deep forecasters
must beat (Zeng, Chen, Zhang, Xu, "Are Transformers Effective for Time Series Forecasting?", AAAI
2023: DLinear, one linear layer over the input window); learning how yesterday, last week and the
last hours combine is forecast combination with estimated weights (Bates & Granger, "The Combination
of Forecasts", Operational Research Quarterly 20(4), 1969; Granger & Ramanathan, "Improved methods of
combining forecasting", Journal of Forecasting 3(2), 1984, combining by regression with an intercept);
ridge: Hoerl & Kennard, Technometrics 12(1), 1970.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
import torch

from gpdiff.data.windows import CityData
from gpdiff.evaluation.naive import historical_average
from gpdiff.methods import MethodInputs, MethodResult, SourceSide
from gpdiff.utils.config import require_at_least_one, to_mapping
from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.sourcefit import SourceFit

# the parts of a window's inputs whose availability decides its model (each: every value observed and readable)
PARTS = ("history", "daily_history", "daily_forecast", "weekly_history", "weekly_forecast")
# the recipe's input groups: name -> the parts it differences
INPUTS = {"history-weekly": ("history", "weekly_history"), "daily-weekly": ("daily_forecast", "weekly_forecast"),
          "history-daily": ("history", "daily_history")}


@dataclass(frozen=True)
class LagModel:
    """Which linear model forecasts a window: its ``base`` (``weekly``: the forecast steps a week
    earlier; ``daily``: a day earlier; ``last``: the last history value, repeated) and its ``inputs``
    (names of :data:`INPUTS`; for ``last`` the history minus its last value)."""

    base: str
    inputs: tuple[str, ...] = ()

    @property
    def parts(self) -> tuple[str, ...]:
        """The parts of :data:`PARTS` a window must have for this model."""
        need = {"weekly": ("weekly_forecast",), "daily": ("daily_forecast",), "last": ("history",)}[self.base]
        return tuple(p for p in PARTS if p in need or any(p in INPUTS[i] for i in self.inputs))

    def __str__(self) -> str:  # "weekly base + history-weekly + daily-weekly + history-daily"
        inputs = ("history-last",) if self.base == "last" else self.inputs
        return " + ".join((f"{self.base} base", *inputs))


FULL = LagModel("weekly", tuple(INPUTS))  # issue 28's recipe


def lag_model(has: tuple[bool, ...]) -> LagModel | None:
    """The model of a window whose parts :data:`PARTS` are available as ``has``: the base a week
    earlier when the forecast steps a week earlier are there, else a day earlier, else the last
    history value, with every recipe input whose parts are there (``None``: no base at all)."""
    ok = dict(zip(PARTS, has))
    if ok["weekly_forecast"]:
        return LagModel("weekly", tuple(i for i, parts in INPUTS.items() if all(ok[p] for p in parts)))
    if ok["daily_forecast"]:
        usable = ok["history"] and ok["daily_history"]
        return LagModel("daily", ("history-daily",) if usable else ())
    return LagModel("last") if ok["history"] else None


# every model a window can get, the full recipe first
MODELS: tuple[LagModel, ...] = tuple(dict.fromkeys(
    m for has in itertools.product((True, False), repeat=len(PARTS)) if (m := lag_model(has)) is not None))


@dataclass
class PooledLinearConfig:
    """Settings of ``pooled_linear`` (run config ``methods.pooled_linear``)."""

    alpha: float = 1e-3  # ridge penalty on the city-balanced mean squared error (standardised units); intercept free
    windows_per_city: int = 20000  # training windows drawn from every source city (all of them when fewer)
    blend: bool = False  # let the run's blend (blend.naive) combine it with naive forecasts; see the module docs

    def __post_init__(self) -> None:
        require_at_least_one(self, ("windows_per_city",), "methods.pooled_linear.")
        if not (math.isfinite(self.alpha) and self.alpha >= 0):  # the types: checked by gpdiff.utils.config
            raise GpdiffError(f"methods.pooled_linear.alpha must be a finite number >= 0, got {self.alpha!r}.")


@dataclass
class LagWindows:
    """The values of windows ``(node, origin)`` the models read, scaled (0 where not available).

    ``hist [M, L]``, ``day`` and ``week [M, L+H]`` (the history and forecast steps one day / one week
    earlier), ``y`` and ``y_mask [M, H]`` (targets), ``has [M, 5]`` (availability of the
    :data:`PARTS`: every value observed and readable)."""

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
    is never read: its part is unavailable for that window (and its slot 0)."""
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
    has = np.stack([h_ok.all(1), d_ok[:, :L].all(1), d_ok[:, L:].all(1), w_ok[:, :L].all(1), w_ok[:, L:].all(1)], 1)
    return LagWindows(hist, day, week, y, y_mask, has)


def design(w: LagWindows, model: LagModel) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``[M, F+1]`` (the last column the intercept's 1) and base ``[M, H]`` of ``model`` for
    every window of ``w`` (meaningful where the window has the model's parts), in the order of
    :data:`INPUTS`."""
    L, H = w.hist.shape[1], w.y.shape[1]
    dh, df, wh, wf = w.day[:, :L], w.day[:, L:], w.week[:, :L], w.week[:, L:]
    base = {"weekly": wf, "daily": df, "last": np.repeat(w.hist[:, -1:], H, axis=1)}[model.base]
    values = {"history-weekly": w.hist - wh, "daily-weekly": df - wf, "history-daily": w.hist - dh}
    parts = [values[i] for i in INPUTS if i in model.inputs]
    if model.base == "last":
        parts.append(w.hist[:, :-1] - w.hist[:, -1:])
    x = np.concatenate(parts + [np.ones((len(w.hist), 1))], axis=1)
    return x, base


def rows_of(w: LagWindows, model: LagModel) -> np.ndarray:
    """``[M]`` bool: the windows of ``w`` that have every part ``model`` reads."""
    return w.has[:, [PARTS.index(p) for p in model.parts]].all(1)


@dataclass
class PooledLinear:
    """The fitted models: ``coef[model] [H, F+1]`` (input weights, then the intercept) for every
    entry of :data:`MODELS`, and ``rows[model]``: how many source windows fitted it."""

    coef: dict[LagModel, np.ndarray] = field(default_factory=dict)
    rows: dict[LagModel, int] = field(default_factory=dict)


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


def fit(sources: list[CityData], cfg: PooledLinearConfig | None = None, seed: int = 0) -> PooledLinear:
    """One ridge per horizon step and :data:`MODELS` entry on the sources' training windows that have
    the model's parts (a model no source window has is left out), every city weighted equally (its
    windows' weights sum to ``1 / len(sources)`` per horizon step). Raises :class:`GpdiffError` when
    no model can be fitted, or for a horizon longer than a day."""
    cfg = cfg or PooledLinearConfig()
    if not sources:
        raise GpdiffError("pooled_linear needs at least one source city.")
    for data in sources:
        check_horizon(data)
    rng = np.random.default_rng(seed)
    per_city = [sample_windows(d, cfg.windows_per_city, rng) for d in sources]
    fitted = PooledLinear()
    for model in MODELS:
        xs, ts, ws, n = [], [], [], 0
        for w in per_city:
            rows = rows_of(w, model)
            n += int(rows.sum())
            x, base = design(w, model)
            xs.append(x[rows])
            ts.append((w.y - base)[rows])
            ws.append(w.y_mask[rows])
        if n == 0:  # e.g. sources of less than a week: windows that need it use a model with fewer parts
            continue
        coef = []
        for h in range(sources[0].horizon):
            weight = [m[:, h] / max(m[:, h].sum(), 1) / len(sources) for m in ws]
            coef.append(ridge(np.concatenate(xs), np.concatenate([t[:, h] for t in ts]), np.concatenate(weight),
                              cfg.alpha))
        fitted.coef[model], fitted.rows[model] = np.stack(coef), n
    if not fitted.coef:
        raise GpdiffError("pooled_linear: no source training window has a fully observed history or a lag; the "
                          "sources need observed values.")
    return fitted


def to_source_fit(fitted: PooledLinear, cfg: PooledLinearConfig, seed: int) -> SourceFit:
    """``fitted`` as a :class:`SourceFit` (what a pretrained folder keeps): tensor ``coef.<i>`` ``[H, F+1]``
    (float64) for the ``i``-th fitted model, described in ``meta["models"]`` (base, inputs, source windows)."""
    models = list(fitted.coef)
    tensors = {f"coef.{i}": torch.from_numpy(np.ascontiguousarray(fitted.coef[m])) for i, m in enumerate(models)}
    meta = {"models": [{"base": m.base, "inputs": list(m.inputs), "rows": int(fitted.rows.get(m, 0))} for m in models],
            "settings": to_mapping(cfg), "seed": seed}
    return SourceFit(tensors, meta)


def from_source_fit(fit: SourceFit) -> PooledLinear:
    """The :class:`PooledLinear` of :func:`to_source_fit`, equal to the one saved. Raises :class:`GpdiffError`
    for a fit that does not describe pooled_linear's models."""
    fitted = PooledLinear()
    try:
        for i, m in enumerate(fit.meta["models"]):
            model = LagModel(str(m["base"]), tuple(str(v) for v in m["inputs"]))
            if model not in MODELS:
                raise KeyError(str(model))
            fitted.coef[model] = fit.tensors[f"coef.{i}"].numpy()
            fitted.rows[model] = int(m["rows"])
    except (KeyError, TypeError) as exc:
        raise GpdiffError(f"the pooled_linear fit lacks or misnames a model ({exc}); build the pretrained folder "
                          "again.") from None
    return fitted


def fit_sources(side: SourceSide) -> SourceFit:
    """:data:`gpdiff.methods.SOURCE_FITS` entry: :func:`fit` on ``side.sources`` with the method's settings and
    seed, as a :class:`SourceFit`."""
    cfg = side.settings(PooledLinearConfig)
    return to_source_fit(fit(side.sources, cfg, side.seed), cfg, side.seed)


def choose(has: tuple[bool, ...], fitted: PooledLinear) -> LagModel | None:
    """The model of a window whose parts are available as ``has``: :func:`lag_model`'s when it was
    fitted, else the fitted model with the most inputs among those whose parts the window has (a
    source window never had those parts, e.g. sources shorter than a week); ``None``: none applies."""
    exact = lag_model(has)
    if exact is None or exact in fitted.coef:
        return exact
    there = {p for p, ok in zip(PARTS, has) if ok}
    usable = [m for m in fitted.coef if set(m.parts) <= there]
    return max(usable, key=lambda m: (m.base == "weekly", m.base == "daily", len(m.inputs)), default=None)


def forecast_windows(fitted: PooledLinear, data: CityData, origins: np.ndarray) -> tuple[np.ndarray, dict[str, float]]:
    """Forecasts ``[N, B, H]`` (original scale) of every node of ``data`` at ``origins [B]``, each window
    by the model of exactly the parts it may read (:func:`choose`), and each model's share of the
    windows."""
    check_horizon(data)
    n, b = data.n_nodes, origins.size
    w = lag_windows(data, np.repeat(np.arange(n), b), np.tile(origins, n))
    scaled = np.zeros(w.y.shape)
    share: dict[str, float] = {}
    done = np.zeros(n * b, dtype=bool)
    code = w.has @ (1 << np.arange(len(PARTS)))  # one integer per availability pattern
    chosen = {c: choose(tuple(bool(c >> i & 1) for i in range(len(PARTS))), fitted) for c in np.unique(code).tolist()}
    for model in fitted.coef:
        rows = np.isin(code, [c for c, m in chosen.items() if m == model])
        if rows.any():
            x, base = design(w, model)
            scaled[rows] = base[rows] + x[rows] @ fitted.coef[model].T
            done |= rows
            share[str(model)] = float(rows.mean())
    pred = data.to_original(scaled.reshape(n, b, -1), np.arange(n))
    if not done.all():  # nothing readable to start from: the few-shot days' profile
        share["none (historical average)"] = float((~done).mean())
        pred = np.where(done.reshape(n, b, 1), pred, historical_average(data, origins))
    return pred.astype(np.float32), share


def _share_note(share: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.1%}" for k, v in sorted(share.items(), key=lambda kv: -kv[1]))


def run(ctx: MethodInputs) -> MethodResult:
    """The method: the ridge fitted on the sources (or the one in ``ctx.fits``, a pretrained folder's),
    forecasting the target's test and validation windows."""
    cfg = ctx.settings(PooledLinearConfig)
    fitted = from_source_fit(ctx.source_fit("pooled_linear"))
    pred, test_share = forecast_windows(fitted, ctx.target, ctx.target.origins("test"))
    val_pred, val_share = forecast_windows(fitted, ctx.target, ctx.target.origins("val"))
    notes = {"test_windows_by_lag_model": _share_note(test_share), "val_windows_by_lag_model": _share_note(val_share),
             "source_windows_full_model": fitted.rows.get(FULL, 0)}
    unfitted = [str(m) for m in MODELS if m not in fitted.coef]
    if unfitted:
        notes["lag_models_without_source_windows"] = "; ".join(unfitted)
    return MethodResult(pred=pred, val_pred=val_pred, notes=notes, blend=cfg.blend)
