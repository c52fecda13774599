"""Forecasts that need no training: seasonal (one day) and weekly naive, and the historical average
(``[N, B, H]`` arrays, original scale).

They sit below every trainer (the zoo reports each node's seasonal-naive error beside its own) and
are wrapped as comparison methods in :mod:`gpdiff.methods.naive`.

Both work on the original scale and only look at data a real forecaster would have: the seasonal
naive forecast of step ``t + h`` is the value one day earlier (known at the forecast origin as long
as the horizon is shorter than a day); the historical average is the mean of the *training*
segment's values at the same time of day (for a target city: its few-shot days only). A lagged value
before what the origin may read (:func:`gpdiff.data.windows.first_readable`: for a target's
training and validation windows, anything before its few-shot days) counts as missing.
"""

from __future__ import annotations

import numpy as np

from gpdiff.data.windows import CityData
from gpdiff.utils.errors import GpdiffError


def _targets(data: CityData, origins: np.ndarray) -> np.ndarray:
    return origins[:, None] + np.arange(data.horizon)  # [B, H]


def historical_average(data: CityData, origins: np.ndarray) -> np.ndarray:
    """Mean of the training segment at the same time of day, ``[N, B, H]``."""
    city, spd = data.city, data.city.steps_per_day
    seg = data.split.train
    vals = city.values[seg.as_slice(), :, 0].astype(np.float64)
    obs = city.mask[seg.as_slice()]
    slot = np.arange(seg.start, seg.stop) % spd
    sums = np.zeros((spd, city.n_nodes))
    cnts = np.zeros((spd, city.n_nodes))
    np.add.at(sums, slot, np.where(obs, vals, 0.0))
    np.add.at(cnts, slot, obs)
    overall = np.where(obs, vals, 0.0).sum(0) / np.maximum(obs.sum(0), 1)
    profile = np.where(cnts > 0, sums / np.maximum(cnts, 1), overall)  # [spd, N]
    return profile[_targets(data, origins) % spd].transpose(2, 0, 1).astype(np.float32)


def lagged_naive(data: CityData, origins: np.ndarray, days: int = 1) -> np.ndarray:
    """The observed value ``days`` days earlier, ``[N, B, H]``; the historical average where that
    is missing, before the series starts, or before what the origin may read
    (:meth:`CityData.readable_from`: a target's validation day never reads a week before its
    few-shot days). Known at the forecast origin while the horizon is at most ``days`` days.
    :func:`lag_available` tells where the lagged value was used."""
    city, spd = data.city, data.city.steps_per_day
    if data.horizon > days * spd:
        raise GpdiffError(f"{city.name}: a {days}-day naive forecast needs a horizon of at most {days * spd} steps "
                          f"({days} day(s) at {city.interval_minutes} min), got {data.horizon}; use a shorter horizon.")
    pidx, obs = _lagged(data, origins, days)
    vals = city.values[pidx][:, :, :, 0]  # [B, H, N]
    fallback = historical_average(data, origins).transpose(1, 2, 0)
    return np.where(obs, vals, fallback).transpose(2, 0, 1).astype(np.float32)


def _lagged(data: CityData, origins: np.ndarray, days: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps ``[B, H]`` ``days`` days before each target, and ``[B, H, N]`` where they may be used."""
    past = _targets(data, origins) - days * data.city.steps_per_day
    ok = past >= data.readable_from(origins)[:, None]
    pidx = np.where(ok, past, 0)
    return pidx, data.city.mask[pidx] & ok[:, :, None]


def lag_available(data: CityData, origins: np.ndarray, days: int) -> np.ndarray:
    """``[N, B, H]`` bool: where :func:`lagged_naive` used the value ``days`` days earlier (not the
    historical average)."""
    return _lagged(data, origins, days)[1].transpose(2, 0, 1)


def seasonal_naive(data: CityData, origins: np.ndarray) -> np.ndarray:
    """The observed value one day earlier, ``[N, B, H]``; the historical average where that is missing."""
    return lagged_naive(data, origins, 1)


def weekly_naive(data: CityData, origins: np.ndarray) -> np.ndarray:
    """The observed value one week earlier, ``[N, B, H]``; the historical average where that is missing
    (for a target, the few-shot days' profile)."""
    return lagged_naive(data, origins, 7)
