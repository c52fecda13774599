"""What a user would pick instead of gpdiff: exponential smoothing per node, from statsforecast.

``auto_ets`` is statsforecast's ``AutoETS`` (Hyndman et al., "A state space framework for automatic
forecasting using exponential smoothing methods", IJF 2002: the ETS model chosen by AICc) with a daily
season (``season_length`` = the city's steps per day), fitted on each node's own series, with
statsforecast's own split conformal intervals (``ConformalIntervals``: the residuals of
``n_windows`` rolling refits on the fitted series; Angelopoulos & Bates 2021). The windows of the day
to score are forecast from their true history without refitting (``cross_validation(refit=False)``,
which applies the fitted model to the series up to each origin), and each gets the conformal half-widths
per horizon step that statsforecast calibrated on the fitted days (``forecast(level=...)``).

**Daily seasons of at most** :data:`MAX_SEASON` **steps** (hourly data or coarser). R's ``forecast::ets``,
from which ETS's automatic selection comes, refuses longer seasons (Hyndman & Athanasopoulos,
*Forecasting: Principles and Practice*, 2nd ed., "Weekly, daily and sub-daily data": ``ets()`` allows
hourly data's season and no longer one; use STL decomposition or dynamic harmonic regression there). statsforecast fits them, but at a price no
user would pay: on la-loop (5-minute steps, a season of 288) one day of one node's windows took
minutes, and its ``MSTL`` (STL + ETS, FPP's alternative) refits the decomposition at every window
(145 s for 5 nodes' windows of one day). So at finer steps ``auto_ets`` is left out of a backtest,
with a note (:func:`supports`).

statsforecast is an optional dependency (``pip install gpdiff[baselines]``), imported only here and
only when asked for: :func:`available` says whether it is installed.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pandas as pd

from gpdiff.data.city import City, feasible
from gpdiff.evaluation.intervals import level_name

NAME = "auto_ets"
INSTALL = "pip install 'gpdiff[baselines]' (statsforecast)"
CONFORMAL_WINDOWS = 2  # statsforecast's default number of conformal calibration refits
MAX_SEASON = 24  # the longest season R's forecast::ets accepts (hourly data's daily season)


def available() -> bool:
    """Whether statsforecast can be imported (without importing it)."""
    return importlib.util.find_spec("statsforecast") is not None


def supports(city: City) -> str | None:
    """``None`` when ``auto_ets`` can forecast ``city``, else why not (a daily season longer than
    :data:`MAX_SEASON` steps), to be shown as a note."""
    if city.steps_per_day <= MAX_SEASON:
        return None
    return (f"its daily season is {city.steps_per_day} steps ({city.interval_minutes:g}-minute data); ETS takes seasons of "
            f"at most {MAX_SEASON} steps, as R's forecast::ets does")


def _series(city: City, stop: int) -> pd.DataFrame:
    """Long frame ``unique_id, ds, y`` of every node's target up to step ``stop``. statsforecast takes no
    missing values: an unobserved step carries the last observed value forward (0 before the first);
    such steps are never scored."""
    vals = np.where(city.mask[:stop], city.values[:stop, :, 0], np.nan)
    wide = pd.DataFrame(vals, columns=[str(i) for i in range(city.n_nodes)]).ffill().fillna(0.0)
    ts = city.timestamps[:stop].tz_localize(None) if city.timestamps.tz is not None else city.timestamps[:stop]
    n = city.n_nodes
    return pd.DataFrame({"unique_id": np.repeat(np.arange(n), stop), "ds": np.tile(ts, n),
                         "y": wide.to_numpy(np.float64).T.reshape(-1)})


def forecast_windows(city: City, train_stop: int, origins: np.ndarray, horizon: int, levels: list[float]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """AutoETS fitted per node on steps ``[0, train_stop)`` of ``city``, forecasting the windows at
    ``origins [B]`` (each ``>= train_stop``, targets inside ``city``) from their true history.

    Returns the point forecasts ``[N, B, H]`` and the conformal interval bounds ``[L, 2, N, B, H]``
    (lower, upper; NaN where statsforecast gave none), original units, clipped at 0 for a ``flow`` city.
    Raises ``ImportError`` when statsforecast is not installed."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS
    from statsforecast.utils import ConformalIntervals

    origins = np.asarray(origins, dtype=np.int64)
    n, b = city.n_nodes, origins.size
    point = np.full((n, b, horizon), np.nan)
    bnds = np.full((len(levels), 2, n, b, horizon), np.nan)
    if b == 0:
        return point, bnds
    stop = int(origins.max()) + horizon  # the last window's targets end here
    n_windows = stop - horizon - train_stop + 1  # cutoffs train_stop - 1 .. stop - horizon - 1
    freq = pd.Timedelta(minutes=city.interval_minutes)
    pct = [int(p) if float(p).is_integer() else p for p in (float(f"{v * 100:g}") for v in levels)]
    series = _series(city, stop)
    alias = pd.tseries.frequencies.to_offset(freq).freqstr  # "h", "10min": statsforecast's pandas frequency
    point_model = StatsForecast(models=[AutoETS(season_length=city.steps_per_day)], freq=alias, n_jobs=1)
    cv = point_model.cross_validation(df=series, h=horizon, step_size=1, n_windows=n_windows, refit=False)
    start = city.timestamps[0].tz_localize(None) if city.timestamps.tz is not None else city.timestamps[0]
    node = cv["unique_id"].to_numpy(np.int64)
    origin = ((pd.to_datetime(cv["cutoff"]) - start) / freq).to_numpy().astype(np.int64) + 1
    step = ((pd.to_datetime(cv["ds"]) - start) / freq).to_numpy().astype(np.int64) - origin
    pos = {int(o): i for i, o in enumerate(origins)}
    keep = np.array([int(o) in pos for o in origin])
    rows = np.array([pos.get(int(o), -1) for o in origin])[keep]
    point[node[keep], rows, step[keep]] = cv["AutoETS"].to_numpy(np.float64)[keep]
    # statsforecast's conformal half-widths per horizon step, calibrated once on the fitted days (its
    # cross_validation recalibrates them at every window, CONFORMAL_WINDOWS refits each: a day's cost per window)
    conformal = AutoETS(season_length=city.steps_per_day,
                        prediction_intervals=ConformalIntervals(h=horizon, n_windows=CONFORMAL_WINDOWS))
    fc = StatsForecast(models=[conformal], freq=alias, n_jobs=1).forecast(
        df=series[series["ds"] < series["ds"].iloc[0] + train_stop * freq], h=horizon, level=pct)
    fc_node = fc["unique_id"].to_numpy(np.int64)
    fc_step = ((pd.to_datetime(fc["ds"]) - start) / freq).to_numpy().astype(np.int64) - train_stop
    for i, level in enumerate(levels):
        for j, side in enumerate(("lo", "hi")):
            col = f"AutoETS-{side}-{level_name(level)}"
            if col in fc:
                half = np.full((n, horizon), np.nan)
                half[fc_node, fc_step] = (fc[col] - fc["AutoETS"]).to_numpy(np.float64)
                bnds[i, j] = point + half[:, None, :]
    return feasible(point, city.kind), feasible(bnds, city.kind)
