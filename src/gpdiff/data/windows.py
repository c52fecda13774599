"""Sliding windows over ego-subgraphs: what every model trains and is evaluated on.

A window with forecast origin ``t`` has inputs at steps ``[t - history, t)`` and targets at
``[t, t + horizon)``. A window belongs to a segment when all its *targets* lie inside it; training
windows also keep their inputs inside the segment (a target city's few days are all it has), while
validation and test windows may look back into earlier steps (the past is known at forecast time).

What a window may read is one rule, :func:`first_readable`: a new city has no past, so at a target's
training and validation origins nothing before its few-shot days is read (history, the seasonal
context's lagged values, and the naive forecasts of :mod:`gpdiff.evaluation.naive` alike); at test origins
everything observed up to the origin is.

:class:`CityData` holds one city scaled with statistics from its training segment, its ego-graphs,
and builds batches for any set of nodes at once: inputs ``[n, B, K+1, history, C]``, targets
``[n, B, horizon]`` for the centre node, with masks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch

from gpdiff.data.city import City
from gpdiff.data.graph import EgoGraphs, ego_graphs
from gpdiff.data.scaler import NodeScaler
from gpdiff.data.splits import Segment, Split
from gpdiff.utils.errors import GpdiffError

CONTEXTS = {"none": 0, "daily": 1, "weekly": 7, "lags": 0}  # seasonal context -> the lag its windows require, in days
# Contexts whose lags are optional inputs: each lag is read where the data and the protocol allow and
# marked missing (a mask channel) elsewhere, so a window requires none of them (CONTEXTS says 0).
LAG_SETS = {"lags": (1, 7)}  # context -> its lags in days (one day and one week)
# The share of source training windows whose each lag is masked on purpose (independently per lag),
# so that the models learn to forecast without it, as on a target's few-shot days and a city's first week.
LAG_DROPOUT = 0.25


def lag_steps(context: str, steps_per_day: int) -> int:
    """The lag a window of a seasonal ``context`` requires, in steps of a city with ``steps_per_day``
    (0 for ``none`` and for ``lags``, whose lags are optional and masked where missing)."""
    if context not in CONTEXTS:
        from gpdiff.utils.errors import unknown_name

        raise unknown_name("seasonal context", context, CONTEXTS)
    return CONTEXTS[context] * steps_per_day


def lag_set(context: str, steps_per_day: int) -> tuple[int, ...]:
    """The optional lags of ``context`` in steps (empty for the contexts without them)."""
    lag_steps(context, steps_per_day)  # unknown names fail here
    return tuple(d * steps_per_day for d in LAG_SETS.get(context, ()))


def lag_dropped(nodes: torch.Tensor, origins: torch.Tensor, k: int, rate: float = LAG_DROPOUT) -> torch.Tensor:
    """``[n, B]`` bool: whether lag ``k`` of the window of node ``nodes[i]`` at ``origins[i, b]`` is
    masked on purpose (a fixed hash of node, origin and lag, so a window is masked the same way in
    every epoch, run and process, and about ``rate`` of the windows are)."""
    h = (origins.long() * 2654435761 + nodes.long()[:, None] * 40503 + (k + 1) * 97531) % (2**31 - 1)
    h = (h * 48271) % (2**31 - 1)
    return (h % 10000) < int(round(rate * 10000))


@dataclass
class WindowConfig:
    """The shape of every window: ``history`` input steps, ``horizon`` forecast steps, the
    ``n_neighbors`` graph neighbours of the centre node in its ego-graph (GPD paper: 12 -> 6), and
    the seasonal ``context``: ``none`` (the paper's inputs), ``daily`` or ``weekly`` (the target
    channel one day / one week earlier, over the history and the forecast steps; see
    :class:`WindowBatch`), or ``lags`` (both, each marked missing where a window may not read it, and
    the lag-aware head of :class:`gpdiff.models.base.BaseModel`: the forecast starts from a learned
    combination of the lagged values and the recent level)."""

    history: int = 12
    horizon: int = 6
    n_neighbors: int = 7
    context: str = "none"

    def __post_init__(self) -> None:
        if self.history < 1 or self.horizon < 1 or self.n_neighbors < 0:
            raise GpdiffError(f"window: history ({self.history}) and horizon ({self.horizon}) must be at least 1 "
                              f"and n_neighbors ({self.n_neighbors}) at least 0.")
        lag_steps(self.context, 1)  # unknown contexts fail here

    @property
    def length(self) -> int:
        """Steps one window spans without its seasonal lag (history + horizon)."""
        return self.history + self.horizon


@dataclass
class WindowBatch:
    x: torch.Tensor  # [n, B, K+1, history, C] scaled inputs; 0 at missing values and padded slots
    y: torch.Tensor  # [n, B, horizon] scaled targets of the centre node (0 where missing)
    y_mask: torch.Tensor  # [n, B, horizon] bool, True where the target was observed
    tod: torch.Tensor  # [n, B] time of day of the last input step, in [0, 1)
    dow: torch.Tensor  # [n, B] day of week of the last input step (Monday = 0)
    adj: torch.Tensor  # [n, K+1, K+1] ego-graph adjacency (zero diagonal)
    valid: torch.Tensor  # [n, K+1] bool, real (not padded) ego slots
    # seasonal context (None without): the scaled target channel ``lag`` steps earlier, 0 where missing
    lag_x: torch.Tensor | None = None  # [n, B, K+1, history] at the input steps, every ego slot
    lag_y: torch.Tensor | None = None  # [n, B, horizon] at the forecast steps, centre node
    # optional lags (context ``lags``; None without): the scaled target channel each lag of LAG_SETS
    # earlier, exactly 0 where missing, with masks True where the lag may be read (observed, inside
    # the series, after first_readable, a real ego slot, and not masked on purpose in source training)
    lags_x: torch.Tensor | None = None  # [n, B, K+1, history, L]
    lags_y: torch.Tensor | None = None  # [n, B, horizon, L], centre node
    lags_ok_x: torch.Tensor | None = None  # [n, B, K+1, history, L] bool
    lags_ok_y: torch.Tensor | None = None  # [n, B, horizon, L] bool

    def to(self, device: torch.device | str) -> WindowBatch:
        moved = {f.name: getattr(self, f.name) for f in fields(self)}
        return WindowBatch(**{k: None if v is None else v.to(device) for k, v in moved.items()})


def window_origins(segment: Segment, history: int, horizon: int, lookback: bool, lag: int = 0) -> np.ndarray:
    """Forecast origins of all windows whose targets lie in ``segment``; their inputs (``history``
    steps, and as many steps ``lag`` earlier) lie inside it too unless ``lookback``, and inside the
    series always."""
    first = segment.start if lookback else segment.start + history + lag
    first = max(first, history + lag)
    last = segment.stop - horizon  # inclusive
    if last < first:
        return np.zeros(0, dtype=np.int64)
    return np.arange(first, last + 1, dtype=np.int64)


def first_readable(split: Split, origins: np.ndarray) -> np.ndarray:
    """The first step that an input of a window with forecast origin ``origins[...]`` may read
    (same shape, int64): the protocol's one rule of what a forecast may see (docs/DESIGN.md, section 3).

    For a target city (``split.role == "target"``) every origin before the test period (its training
    and validation windows) reads only from the first few-shot day on: the data of a new city start
    there, so a weight, early stop or score fitted on those windows must not depend on anything
    earlier. Test origins, and every origin of a source city, may read the whole past (0)."""
    origins = np.asarray(origins)
    if split.role != "target":
        return np.zeros(origins.shape, dtype=np.int64)
    return np.where(origins < split.test.start, split.train.start, 0).astype(np.int64)


def observed_origins(city: City, segment: Segment, name: str, history: int, horizon: int, lag: int = 0
                     ) -> np.ndarray:
    """Origins ``[W]`` of the windows of ``segment`` (``name``: train, val or test; only training
    windows keep their inputs inside it) whose targets hold at least one observed value."""
    o = window_origins(segment, history, horizon, lookback=name != "train", lag=lag)
    if o.size:
        o = o[city.mask[o[:, None] + np.arange(horizon)].any(axis=(1, 2))]
    return o


def require_windows(city: City, segment: Segment, name: str, history: int, horizon: int, context: str = "none",
                    minimum: int = 1) -> np.ndarray:
    """:func:`observed_origins`, or :class:`GpdiffError` when fewer than ``minimum``: that the period
    has no observed value at all (the data do not cover it), or that it is too short for a window."""
    lag = lag_steps(context, city.steps_per_day)
    o = observed_origins(city, segment, name, history, horizon, lag)
    if o.size >= minimum:
        return o
    ts = city.timestamps
    span = (f"steps {segment.start}-{segment.stop}, {ts[segment.start]:%Y-%m-%d %H:%M} .. "
            f"{ts[segment.stop - 1]:%Y-%m-%d %H:%M}") if len(segment) else "empty"
    if len(segment) and not city.mask[segment.start:segment.stop].any():
        raise GpdiffError(
            f"{city.name}: the {name} period ({span}) has no observed values at all, so nothing can be "
            f"{'trained' if name == 'train' else 'scored'} there; the data must cover it: drop the unobserved "
            "steps from the file (or fill them), or use another city."
        )
    lag_note = (f" + the {context} context's lag of {lag} steps (its inputs one "
                f"{'day' if context == 'daily' else 'week'} earlier)") if lag else ""
    fix = " or window.context none" if lag else ""
    raise GpdiffError(
        f"{city.name}: the {name} period ({span}, {len(segment)} steps) holds {o.size} complete window(s) with "
        f"observed targets of history {history} + horizon {horizon}{lag_note}; need {minimum}. "
        f"Use a longer period, a shorter history/horizon{fix}."
    )


class CityData:
    """A city prepared for training and evaluation under one split."""

    def __init__(self, city: City, split: Split, history: int = 12, horizon: int = 6, n_neighbors: int = 7,
                 device: torch.device | str = "cpu", min_rel_std: float = 0.0, context: str = "none",
                 scaler: NodeScaler | None = None) -> None:
        if history < 1 or horizon < 1:
            raise GpdiffError(f"history ({history}) and horizon ({horizon}) must be at least 1.")
        self.city, self.split = city, split
        self.history, self.horizon, self.device = history, horizon, torch.device(device)
        self.context, self.lag = context, lag_steps(context, city.steps_per_day)
        self.lags = lag_set(context, city.steps_per_day)
        # fitted on the training segment (see NodeScaler.fit), or given: a saved forecaster keeps the scale it was fitted with
        self.scaler = scaler if scaler is not None else NodeScaler.fit(city, split.train, min_rel_std)
        self.ego: EgoGraphs = ego_graphs(city.adjacency, n_neighbors)
        scaled = self.scaler.transform(city.values, city.mask)
        self.values = torch.from_numpy(scaled).to(self.device)  # [T, N, C]
        self.mask = torch.from_numpy(city.mask).to(self.device)  # [T, N]
        self.tod = torch.from_numpy(city.time_of_day()).to(self.device)
        self.dow = torch.from_numpy(city.day_of_week()).to(self.device)
        self.ego_index = torch.from_numpy(self.ego.index).to(self.device)
        self.ego_valid = torch.from_numpy(self.ego.valid).to(self.device)
        self.ego_adj = torch.from_numpy(self.ego.adjacency).to(self.device)
        self._offsets_in = torch.arange(-history, 0, device=self.device)
        self._offsets_out = torch.arange(0, horizon, device=self.device)

    @property
    def n_nodes(self) -> int:
        return self.city.n_nodes

    def segment(self, name: str) -> Segment:
        return getattr(self.split, name)

    def origins(self, name: str) -> np.ndarray:
        """Window origins for ``train``, ``val`` or ``test``; windows with no observed target dropped."""
        return observed_origins(self.city, self.segment(name), name, self.history, self.horizon, self.lag)

    def require_windows(self, name: str, minimum: int = 1) -> np.ndarray:
        """:func:`require_windows` for this city's segment ``name``."""
        return require_windows(self.city, self.segment(name), name, self.history, self.horizon, self.context,
                               minimum)

    def readable_from(self, origins: np.ndarray) -> np.ndarray:
        """:func:`first_readable` under this city's split."""
        return first_readable(self.split, origins)

    def batch(self, nodes: torch.Tensor, origins: torch.Tensor) -> WindowBatch:
        """Windows for ``nodes`` ``[n]`` at ``origins`` ``[n, B]`` (one row of origins per node).
        Inputs before :meth:`readable_from` an origin are missing (0), as unobserved values are."""
        nodes = nodes.to(self.device)
        origins = origins.to(self.device)
        ego = self.ego_index[nodes]  # [n, K+1]
        valid = self.ego_valid[nodes]
        t_in = origins[:, :, None] + self._offsets_in  # [n, B, h]
        x = self.values[t_in[:, :, :, None], ego[:, None, None, :]]  # [n, B, h, K+1, C]
        floor = None
        if self.split.role == "target":  # the protocol's rule: nothing before the few-shot days at train/val origins
            floor = torch.from_numpy(self.readable_from(origins.cpu().numpy())).to(self.device)[:, :, None]
            x = x * (t_in >= floor)[:, :, :, None, None]
        x = x.permute(0, 1, 3, 2, 4) * valid[:, None, :, None, None]
        t_out = origins[:, :, None] + self._offsets_out  # [n, B, H]
        centre = nodes[:, None, None]
        y = self.values[t_out, centre, 0]
        y_mask = self.mask[t_out, centre]
        last = origins - 1
        lag_x = lag_y = None
        if self.lag:  # the target channel one day / week earlier; 0 (the node's mean) where missing
            lag_x = self.values[t_in[:, :, :, None] - self.lag, ego[:, None, None, :], 0]  # [n, B, h, K+1]
            lag_y = self.values[t_out - self.lag, centre, 0]
            if floor is not None:
                lag_x = lag_x * (t_in - self.lag >= floor)[:, :, :, None]
                lag_y = lag_y * (t_out - self.lag >= floor)
            lag_x = (lag_x.permute(0, 1, 3, 2) * valid[:, None, :, None]).contiguous()
        optional = self._optional_lags(nodes, origins, ego, valid, t_in, t_out, floor) if self.lags else {}
        return WindowBatch(x=x.contiguous(), y=y, y_mask=y_mask, tod=self.tod[last], dow=self.dow[last],
                           adj=self.ego_adj[nodes], valid=valid, lag_x=lag_x, lag_y=lag_y, **optional)

    def _optional_lags(self, nodes: torch.Tensor, origins: torch.Tensor, ego: torch.Tensor, valid: torch.Tensor,
                       t_in: torch.Tensor, t_out: torch.Tensor, floor: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The ``lags_*`` fields of :class:`WindowBatch`: a lag is read only where it is inside the
        series, observed, not before :func:`first_readable` (``floor``), on a real ego slot, and not
        masked on purpose (:func:`lag_dropped`, source training windows only); elsewhere its value is
        exactly 0 and its mask False, so no forbidden value reaches a model."""
        training = self.split.role != "target" and origins.lt(self.split.train.stop)
        xs, oks_x, ys, oks_y = [], [], [], []
        for k, lag in enumerate(self.lags):
            drop = lag_dropped(nodes, origins, k) & training  # [n, B]
            ti, to = t_in - lag, t_out - lag  # [n, B, h], [n, B, H]
            ok_i, ok_o = ti >= 0, to >= 0
            if floor is not None:
                ok_i, ok_o = ok_i & (ti >= floor), ok_o & (to >= floor)
            ok_i, ok_o = ok_i & ~drop[:, :, None], ok_o & ~drop[:, :, None]
            ti, to = ti.clamp_min(0), to.clamp_min(0)
            okx = ok_i[:, :, :, None] & self.mask[ti[:, :, :, None], ego[:, None, None, :]] & valid[:, None, None, :]
            oky = ok_o & self.mask[to, nodes[:, None, None]]
            vx = self.values[ti[:, :, :, None], ego[:, None, None, :], 0]  # [n, B, h, K+1]
            vy = self.values[to, nodes[:, None, None], 0]
            xs.append(torch.where(okx, vx, torch.zeros_like(vx)).permute(0, 1, 3, 2))
            oks_x.append(okx.permute(0, 1, 3, 2))
            ys.append(torch.where(oky, vy, torch.zeros_like(vy)))
            oks_y.append(oky)
        return {"lags_x": torch.stack(xs, -1).contiguous(), "lags_ok_x": torch.stack(oks_x, -1).contiguous(),
                "lags_y": torch.stack(ys, -1), "lags_ok_y": torch.stack(oks_y, -1)}

    def all_nodes(self) -> torch.Tensor:
        return torch.arange(self.n_nodes, device=self.device)

    def iter_eval(self, name: str, nodes: torch.Tensor | None = None, batch_size: int = 256):
        """Yield ``(origins_chunk, batch)`` covering every window of a segment, for all ``nodes``."""
        nodes = self.all_nodes() if nodes is None else nodes.to(self.device)
        o = torch.from_numpy(self.origins(name)).to(self.device)
        for i in range(0, o.numel(), batch_size):
            chunk = o[i : i + batch_size]
            yield chunk, self.batch(nodes, chunk.expand(nodes.numel(), -1))

    def to_original(self, scaled: torch.Tensor | np.ndarray, nodes: torch.Tensor | np.ndarray) -> np.ndarray:
        """Map scaled centre-node predictions ``[n, ...]`` back to the original scale."""
        s = scaled.detach().cpu().numpy() if isinstance(scaled, torch.Tensor) else np.asarray(scaled)
        idx = nodes.detach().cpu().numpy() if isinstance(nodes, torch.Tensor) else np.asarray(nodes)
        return self.scaler.inverse_transform(s, idx)

    def truth(self, origins: np.ndarray, nodes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Original-scale targets and masks ``[n, B, horizon]`` straight from the city data."""
        idx = np.arange(self.n_nodes) if nodes is None else np.asarray(nodes)
        t = origins[:, None] + np.arange(self.horizon)  # [B, H]
        vals = self.city.values[t][:, :, idx, 0]  # [B, H, n]
        msk = self.city.mask[t][:, :, idx]
        return vals.transpose(2, 0, 1), msk.transpose(2, 0, 1)
