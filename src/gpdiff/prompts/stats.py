"""``stats``: a temporal prompt from hand-made series features (ablation, and a cheap default on tiny data).

From the same window as the ``masked_patch`` encoder (a node's most recent ``days`` days inside the
segment), standardised per window, at the city's own interval:

- observed fraction, zero fraction, log(1 + coefficient of variation), skewness;
- the mean daily profile (24 hourly bins of the standardised series), the share of variance it
  explains, and the peak hour (sin, cos);
- autocorrelation at 1 step, 1 hour, 1 day and 1 week (0 with a flag when the window is too short);
- the dominant period (log2 hours) and the spectral share of the 24 h and 12 h periods.

``fit`` only learns the mean and standard deviation of every feature over the source nodes, so the
prompt columns are comparable in scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gpdiff.data.city import City
from gpdiff.data.splits import Segment
from gpdiff.prompts.base import PromptEncoder
from gpdiff.prompts.temporal import (
    SeriesWindow,
    fill_sparse,
    prompt_windows,
    sparse_nodes,
    window_notes,
)
from gpdiff.utils.config import require_range
from gpdiff.utils.errors import GpdiffError

FEATURES = (["observed", "zeros", "log_cv", "skew"] + [f"profile_h{h:02d}" for h in range(24)]
            + ["profile_share", "peak_sin", "peak_cos", "acf_step", "acf_hour", "acf_day", "acf_week",
               "has_day", "has_week", "log2_period_h", "power_24h", "power_12h"])


@dataclass
class StatsConfig:
    days: float = 3.0  # input: the most recent ``days`` days (the few-shot length)
    min_coverage: float = 0.5  # prompt window: the latest one in which the node is observed this often
    min_pairs: int = 12  # jointly observed pairs needed for an autocorrelation

    def __post_init__(self) -> None:
        require_range(self, ("days",), "prompts.temporal_config.", above=0)
        require_range(self, ("min_coverage",), "prompts.temporal_config.", above=0, at_most=1)
        require_range(self, ("min_pairs",), "prompts.temporal_config.", at_least=2)  # a correlation needs two


class StatsEncoder(PromptEncoder):
    """Hand-made series features, standardised with source-node statistics."""

    kind = "temporal"
    name = "stats"
    config_class = StatsConfig

    def __init__(self, config: StatsConfig | None = None) -> None:
        super().__init__(config)
        self.mean = np.zeros(len(FEATURES), dtype=np.float64)
        self.std = np.ones(len(FEATURES), dtype=np.float64)

    @property
    def dim(self) -> int:
        return len(FEATURES)

    def features(self, city: City, segment: Segment) -> tuple[SeriesWindow, np.ndarray, list[str]]:
        """The prompt window, unstandardised features ``[N, dim]`` from its last ``days`` days, notes.

        Nodes with less than an hour observed get the mean features of the other nodes.
        """
        win = prompt_windows(city, segment, self.config.days, self.config.min_coverage)
        minimum = max(2, 60 // city.interval_minutes)
        sparse = sparse_nodes(city, win, minimum, "one hour")
        with np.errstate(invalid="ignore", divide="ignore"):  # sparse nodes' rows are replaced below
            feats = series_features(win, self.config.min_pairs)
        return win, feats, fill_sparse(city, sparse, feats, minimum, "one hour")

    def raw_features(self, city: City, segment: Segment) -> np.ndarray:
        """Unstandardised features ``[N, dim]`` from the last ``days`` days of ``segment``."""
        return self.features(city, segment)[1]

    def _fit(self, cities: Sequence[City], segments: Sequence[Segment], progress: bool) -> None:
        feats = np.concatenate([self.raw_features(c, s) for c, s in zip(cities, segments)])
        self.mean = feats.mean(axis=0)
        std = feats.std(axis=0)
        self.std = np.where(std < 1e-8, 1.0, std)
        self.info = {"cities": [c.name for c in cities],
                     "segments": {c.name: [s.start, s.stop] for c, s in zip(cities, segments)},
                     "nodes": int(feats.shape[0]), "features": list(FEATURES)}

    def encode(self, city: City, segment: Segment) -> tuple[np.ndarray, list[str]]:
        self._require_fitted()
        win, feats, notes = self.features(city, segment)
        z = (feats - self.mean) / self.std
        notes += window_notes(city, win)
        if win.length < city.steps_per_day:
            notes.append(f"stats prompt for {city.name} from {win.length / city.steps_per_day:.2f} day(s): "
                         "daily features are partial")
        return z.astype(np.float32), notes

    def state(self) -> dict[str, torch.Tensor]:
        return {"mean": torch.from_numpy(self.mean.copy()), "std": torch.from_numpy(self.std.copy())}

    def load_state(self, tensors: dict[str, torch.Tensor]) -> None:
        mean, std = tensors["mean"].double().numpy(), tensors["std"].double().numpy()
        if mean.shape != (len(FEATURES),):
            raise GpdiffError(f"the stats encoder holds {mean.shape[0]} features, this gpdiff computes "
                              f"{len(FEATURES)}; refit it.")
        self.mean, self.std = mean, std


def series_features(win: SeriesWindow, min_pairs: int = 12) -> np.ndarray:
    """The :data:`FEATURES` of every node of a window, ``[N, len(FEATURES)]`` float64."""
    x, m = win.values, win.mask
    n, length = x.shape
    iv = win.interval_minutes
    cnt = m.sum(axis=1)
    xm = np.where(m, x, 0.0)
    mean = xm.sum(axis=1) / cnt
    std = np.sqrt((np.where(m, x - mean[:, None], 0.0) ** 2).sum(axis=1) / cnt)
    safe = np.where(std < 1e-8, 1.0, std)
    z = np.where(m, (x - mean[:, None]) / safe[:, None], 0.0)
    out: dict[str, np.ndarray] = {
        "observed": cnt / length,
        "zeros": (m & (x == 0)).sum(axis=1) / cnt,
        "log_cv": np.log1p(std / np.maximum(np.abs(mean), 1e-8)).clip(max=10.0),
        "skew": ((z**3).sum(axis=1) / cnt).clip(-10.0, 10.0),
    }
    minute = win.start_minute[:, None] + np.arange(length)[None, :] * iv
    hour = (minute % 1440) // 60  # [N, L]
    onehot = hour[:, :, None] == np.arange(24)  # [N, L, 24]
    hcount = np.einsum("nl,nlh->nh", m.astype(np.float64), onehot)
    profile = np.divide(np.einsum("nl,nlh->nh", z, onehot), hcount, out=np.zeros((n, 24)), where=hcount > 0)
    for h in range(24):
        out[f"profile_h{h:02d}"] = profile[:, h]
    out["profile_share"] = (profile**2 * hcount).sum(axis=1) / cnt
    peak = profile.argmax(axis=1) * 2 * np.pi / 24
    out["peak_sin"], out["peak_cos"] = np.sin(peak), np.cos(peak)
    spd = 1440 // iv
    lags = {"acf_step": 1, "acf_hour": max(1, 60 // iv), "acf_day": spd, "acf_week": 7 * spd}
    for key, lag in lags.items():
        acf, ok = _acf(z, m, lag, min_pairs)
        out[key] = acf
        if key in ("acf_day", "acf_week"):
            out["has_" + key[4:]] = ok.astype(np.float64)
    out.update(_spectrum(z, m, iv))
    return np.stack([out[f] for f in FEATURES], axis=1)


def _acf(z: np.ndarray, m: np.ndarray, lag: int, min_pairs: int) -> tuple[np.ndarray, np.ndarray]:
    """Autocorrelation of standardised series at ``lag`` over jointly observed pairs (0 where too few)."""
    n, length = z.shape
    if lag >= length:
        return np.zeros(n), np.zeros(n, dtype=bool)
    both = m[:, :-lag] & m[:, lag:]
    k = both.sum(axis=1)
    acf = np.divide((z[:, :-lag] * z[:, lag:] * both).sum(axis=1), k, out=np.zeros(n), where=k > 0)
    ok = k >= min_pairs
    return np.where(ok, np.clip(acf, -1.0, 1.0), 0.0), ok


def _spectrum(z: np.ndarray, m: np.ndarray, iv: int) -> dict[str, np.ndarray]:
    """Dominant period and the power shares of 24 h and 12 h, from hourly means of the series."""
    n, length = z.shape
    if iv > 60 and iv % 60 == 0:  # coarser than hourly: hold each value over its hours
        hourly = np.repeat(z, iv // 60, axis=1)
    else:
        hour_idx = np.arange(length) * iv // 60
        n_h = int(hour_idx[-1]) + 1
        onehot = (hour_idx[None, :] == np.arange(n_h)[:, None]).astype(np.float64)
        c = m.astype(np.float64) @ onehot.T
        hourly = np.divide(z @ onehot.T, c, out=np.zeros((n, n_h)), where=c > 0)
    h = hourly.shape[1]
    zeros = np.zeros(n)
    if h < 4:
        return {"log2_period_h": zeros, "power_24h": zeros, "power_12h": zeros}
    hourly = hourly - hourly.mean(axis=1, keepdims=True)
    power = np.abs(np.fft.rfft(hourly, axis=1)) ** 2
    power[:, 0] = 0.0
    total = power.sum(axis=1)
    total = np.where(total > 0, total, 1.0)
    k = power.argmax(axis=1)
    period = np.where(k > 0, h / np.maximum(k, 1), h)

    def share(p_hours: float) -> np.ndarray:
        kk = round(h / p_hours)
        return power[:, kk] / total if 1 <= kk < power.shape[1] and h >= p_hours else zeros

    return {"log2_period_h": np.log2(period), "power_24h": share(24.0), "power_12h": share(12.0)}
