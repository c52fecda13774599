"""What a run worked around on the target, as one-line notes that name the nodes.

A few days of a new city leave gaps that the run fills in quietly so that every node can still be
forecast and scored; the README's "guards" paragraph promises that ``report.md`` says where. Each
function here turns one such fallback into a note (or none, when nothing fell back), naming the
nodes: all of them when few, a count and the first :data:`SHOWN` when many. The pipeline writes the
notes to its log and to the Notes section of ``report.md``:

- the target scaler (:meth:`gpdiff.data.scaler.NodeScaler.fit`): nodes unobserved in their few-shot
  days (pooled mean and std; a method that fine-tunes has no target for them there, so their
  parameters stay where they started), constant or observed once (the pooled std), or with a std
  raised to ``target_scale_floor`` times the pooled one;
- the temporal prompts (:func:`gpdiff.prompts.temporal.fill_sparse`, ``window_notes``) note their own;
- the naive forecasts (:mod:`gpdiff.evaluation.naive`), as methods and inside every blend: the historical
  average where the value one day or one week earlier is missing, and the historical average itself
  where a time of day, or a whole node, has no observation in the few-shot days;
- nodes with no observed value in the test period, which no method is scored on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gpdiff.data.city import City
from gpdiff.data.scaler import NodeScaler
from gpdiff.data.windows import CityData

SHOWN = 5  # node ids named in a note; the rest are counted
LAG_DAYS = {"seasonal_naive": 1, "weekly_naive": 7}  # the naive forecasts that read a lagged value (gpdiff.evaluation.naive)


def node_list(ids: Sequence[str], shown: int = SHOWN) -> str:
    """``["a", "b"]`` -> ``"2 node(s) (a, b)"``; more than ``shown`` ids -> ``"40 node(s) (a, b, c, d, e and
    35 more)"``."""
    more = f" and {len(ids) - shown} more" if len(ids) > shown else ""
    return f"{len(ids)} node(s) ({', '.join(str(i) for i in ids[:shown])}{more})"


def _ids(city: City, rows: np.ndarray) -> list[str]:
    return [city.node_ids[i] for i in np.flatnonzero(rows)]


def scaler_notes(city: City, scaler: NodeScaler, floor: float, days: str = "few-shot days",
                 floor_name: str = "target_scale_floor") -> list[str]:
    """Notes on the target nodes the scaler could not scale by their ``days`` alone (``floor``: the
    run's ``target_scale_floor``, named ``floor_name``). Empty for a scaler not fitted by
    :meth:`NodeScaler.fit`."""
    if scaler.unobserved is None or scaler.pooled_std is None or scaler.floored is None:
        return []
    notes = []
    if scaler.unobserved.any():
        notes.append(f"target scaler: {node_list(_ids(city, scaler.unobserved))} have no observed value in their "
                     f"{days} and are scaled with the city's pooled mean and std; a method that fine-tunes has "
                     "no training target for them, so their parameters stay where they started")
    constant = scaler.pooled_std & ~scaler.unobserved
    if constant.any():
        notes.append(f"target scaler: {node_list(_ids(city, constant))} are constant (or observed once) in their "
                     f"{days} and are scaled with the city's pooled std around their own mean")
    if scaler.floored.any():
        notes.append(f"target scaler: {node_list(_ids(city, scaler.floored))} vary less than {floor_name} "
                     f"({floor:g}) times the city's pooled std in their {days}; their std is raised to that")
    return notes


def lag_fallback_note(data: CityData, origins: np.ndarray, days: int) -> str | None:
    """Where the naive forecast ``days`` days back (:func:`gpdiff.evaluation.naive.lagged_naive`) used the historical
    average at ``origins`` instead: the share of forecasts and the nodes; None when nowhere."""
    from gpdiff.evaluation.naive import lag_available

    missing = ~lag_available(data, origins, days)  # [N, B, H]
    if not missing.any():
        return None
    what = "one day" if days == 1 else "one week" if days == 7 else f"{days} days"
    return (f"the historical average (the few-shot days' profile) stands in where the value {what} earlier is "
            f"missing or before what the origin may read: {missing.mean():.1%} of the forecasts, at "
            f"{node_list(_ids(data.city, missing.any(axis=(1, 2))))}")


def blend_fallback_notes(data: CityData, origins: np.ndarray, names: Sequence[str]) -> list[str]:
    """:func:`lag_fallback_note` of every lagged naive forecast in ``names`` (``blend.naive``) at the test
    ``origins``: the same values enter the blend of every learned method."""
    notes = [(n, lag_fallback_note(data, origins, LAG_DAYS[n])) for n in names if n in LAG_DAYS]
    return [f"blend: in every blend's {n}, {note}" for n, note in notes if note]


def historical_average_notes(data: CityData) -> list[str]:
    """Where :func:`gpdiff.evaluation.naive.historical_average` has no few-shot observation to average: a time of day
    (the node's few-shot mean stands in) or a whole node (its forecast is 0)."""
    city, seg, spd = data.city, data.split.train, data.city.steps_per_day
    obs = city.mask[seg.as_slice()]  # [t, N]
    slot = np.arange(seg.start, seg.stop) % spd
    seen = np.zeros((spd, city.n_nodes), dtype=bool)
    np.logical_or.at(seen, slot, obs)
    never = ~obs.any(axis=0)
    gaps = ~seen.all(axis=0) & ~never
    notes = []
    if gaps.any():
        notes.append(f"{node_list(_ids(city, gaps))} have times of day without an observation in the few-shot days; "
                     "there the node's few-shot mean stands in")
    if never.any():
        notes.append(f"{node_list(_ids(city, never))} have no observation in the few-shot days; their historical "
                     "average is 0")
    return notes


def unscored_note(city: City, mask: np.ndarray) -> str | None:
    """Nodes with no observed target in ``mask`` ``[N, B, H]`` (the test windows): no method is scored on
    them (their ``node_mae.csv`` entries are empty); None when every node is scored."""
    unscored = ~mask.any(axis=(1, 2))
    if not unscored.any():
        return None
    return (f"{node_list(_ids(city, unscored))} have no observed value in the test windows and are not scored "
            "(empty in node_mae.csv)")
