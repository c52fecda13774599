"""Seasonal blend: a learned method's forecast combined with naive forecasts, with weights fitted on
the target's validation windows.

For every horizon step ``h`` the blended forecast is

    (1 - sum_k w[h, k]) * model[..., h] + sum_k w[h, k] * naive_k[..., h]

with non-negative weights summing to at most 1, taken from a simplex grid of spacing ``step`` and
chosen by the pooled MAE (original scale, masked) of the method's *validation* forecasts, the slice
early stopping already uses; nothing reads the test period. All-zero weights are the method alone,
so on the validation windows a blend is never worse than its method. The naive forecasts are those
of :mod:`gpdiff.evaluation.naive` (the value one day / one week earlier, the few-shot days' profile). On a
target's validation windows they read nothing before the few-shot days
(:func:`gpdiff.data.windows.first_readable`): with three few-shot days the value one week earlier
does not exist there and ``weekly_naive`` is the few-shot days' profile, as it would be for a new
city; :func:`lag_share` says how often that happened.

Why: with three few-shot days a model cannot learn the weekly rhythm of a city (a training window
would need a week of lookback), while the value one week earlier carries it; a few-day model and
the seasonal values make different errors, and a convex combination fitted out of sample beats both
(forecast combination: Bates & Granger, "The combination of forecasts", 1969; the fitted weights
are stacking on a hold-out slice, Wolpert 1992).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gpdiff.data.windows import CityData
from gpdiff.evaluation.metrics import masked_metrics
from gpdiff.evaluation.naive import historical_average, lag_available, seasonal_naive, weekly_naive
from gpdiff.utils.config import name_list
from gpdiff.utils.errors import GpdiffError, unknown_name
from gpdiff.utils.io import load_tensors, save_tensors

# name -> naive forecast ``(data, origins) -> [N, B, H]``; the names are the comparison methods'
NAIVE = {"seasonal_naive": seasonal_naive, "weekly_naive": weekly_naive, "historical_average": historical_average}
LAG_DAYS = {"seasonal_naive": 1, "weekly_naive": 7}  # the lagged ones: how many days back they read
FIT_FORMAT = "gpdiff.blend"


@dataclass
class BlendConfig:
    """Which naive forecasts every learned method is blended with (``[]``: no blend), and the grid.

    The default, the values one week and one day earlier, won on every target of the ``loco``
    scoreboard (``gpdiff bench loco_blend``, BENCHMARKS.md)."""

    naive: list[str] = field(default_factory=lambda: ["weekly_naive", "seasonal_naive"])
    step: float = 0.05  # spacing of the weight grid (1 / step must be a whole number)

    def __post_init__(self) -> None:
        flag = isinstance(self.naive, str)  # "weekly_naive,seasonal_naive" from a flag; "none": no blend
        self.naive = [n for n in name_list(self.naive) if not (flag and n == "none")]
        for name in self.naive:
            if name not in NAIVE:
                raise unknown_name("naive forecast to blend with (blend.naive)", name, NAIVE)
        if len(set(self.naive)) != len(self.naive):
            raise GpdiffError(f"blend.naive names a forecast twice: {self.naive}.")
        if not 0 < self.step <= 1 or abs(1 / self.step - round(1 / self.step)) > 1e-6:
            raise GpdiffError(f"blend.step must divide 1 into whole parts (0.05, 0.1, 0.25, ...), got {self.step}.")

    @property
    def active(self) -> bool:
        return bool(self.naive)


def simplex_grid(k: int, step: float) -> np.ndarray:
    """Every weight vector ``[C, k]`` with entries on multiples of ``step`` and sum at most 1
    (the all-zero vector first)."""
    n = int(round(1 / step))
    grid = [c for c in itertools.product(range(n + 1), repeat=k) if sum(c) <= n]
    return np.asarray(grid, dtype=np.float64) / n


def naive_forecasts(data: CityData, origins: np.ndarray, names: list[str]) -> np.ndarray:
    """The named naive forecasts stacked, ``[K, N, B, H]`` (original scale)."""
    return np.stack([NAIVE[n](data, origins) for n in names]).astype(np.float64)


def lag_share(data: CityData, origins: np.ndarray, names: list[str]) -> dict[str, float]:
    """For each lagged naive forecast of ``names``, the share of its ``[N, B, H]`` values at ``origins``
    that are the lagged value itself (the rest fell back to the historical average: missing, or before
    what the origin may read)."""
    return {n: float(lag_available(data, origins, LAG_DAYS[n]).mean()) for n in names if n in LAG_DAYS}


def fit_weights(pred: np.ndarray, naive: np.ndarray, truth: np.ndarray, mask: np.ndarray, step: float,
                chunk: int = 64) -> np.ndarray:
    """Blend weights ``[H, K]`` minimising the pooled masked MAE of each horizon step.

    ``pred [N, B, H]`` the method's forecasts, ``naive [K, N, B, H]``, ``truth`` and ``mask [N, B, H]``
    (validation windows, original scale). A step with no observed value keeps weight zero; ties go
    to the earlier grid point, so to the method alone when nothing helps. Raises
    :class:`GpdiffError` on mismatched shapes."""
    if naive.shape[1:] != pred.shape or truth.shape != pred.shape or mask.shape != pred.shape:
        raise GpdiffError(f"blend: forecasts {pred.shape}, naive {naive.shape[1:]}, truth {truth.shape} and mask "
                          f"{mask.shape} must have the same [nodes, windows, horizon] shape.")
    grid = simplex_grid(naive.shape[0], step)  # [C, K]
    weights = np.zeros((pred.shape[-1], naive.shape[0]))
    for h in range(pred.shape[-1]):
        m = mask[..., h].astype(bool) & np.isfinite(truth[..., h])
        if not m.any():
            continue
        p = pred[..., h][m].astype(np.float64)  # [M]
        gap = naive[..., h][:, m] - p  # [K, M]
        err = p - truth[..., h][m]
        losses = np.concatenate([np.abs(err + grid[i:i + chunk] @ gap).sum(1) for i in range(0, len(grid), chunk)])
        weights[h] = grid[int(np.argmin(losses))]
    return weights


@dataclass
class BlendFit:
    """Blend weights fitted on a city's validation windows, with what they did there."""

    names: list[str]  # the naive forecasts, in weight-column order
    weights: np.ndarray  # [H, K]
    val_mae: tuple[float, float]  # pooled validation MAE of the method alone and blended
    val_lagged: dict[str, float]  # lag_share on the validation windows

    def apply(self, pred: np.ndarray, data: CityData, origins: np.ndarray) -> np.ndarray:
        """The blended forecasts ``[N, B, H]`` (float32) of a method's forecasts ``pred [N, B, H]`` of the
        windows at ``origins`` of ``data``, with these weights and the naive forecasts there."""
        return apply_weights(pred, naive_forecasts(data, origins, self.names), self.weights)

    def save(self, path: str | Path) -> Path:
        """Write the weights and the record to one safetensors file ``path`` (atomically)."""
        return save_tensors(path, {"weights": torch.from_numpy(np.asarray(self.weights, dtype=np.float64))},
                            {"format": FIT_FORMAT, "naive": self.names, "val_mae": list(self.val_mae),
                             "val_lagged": self.val_lagged})

    @classmethod
    def load(cls, path: str | Path) -> BlendFit:
        """The fit :meth:`save` wrote to ``path``."""
        tensors, meta = load_tensors(path)
        if meta.get("format") != FIT_FORMAT:
            raise GpdiffError(f"{path} is not a gpdiff blend (written by BlendFit.save).")
        return cls(list(meta["naive"]), tensors["weights"].double().numpy(),
                   tuple(float(v) for v in meta["val_mae"]), dict(meta.get("val_lagged") or {}))  # type: ignore[arg-type]


def fit_blend(val_pred: np.ndarray, data: CityData, config: BlendConfig | None = None) -> BlendFit:
    """The blend stage: :func:`fit_weights` for a method's forecasts ``val_pred [N, B, H]`` (original
    scale) of every validation window of ``data`` (``data.origins("val")``), against the naive forecasts
    ``config.naive`` there. Raises :class:`GpdiffError` for ``config`` without naive forecasts."""
    config = config or BlendConfig()
    if not config.active:
        raise GpdiffError("blend.naive is empty, so there is nothing to blend with; name naive forecasts "
                          "(e.g. weekly_naive, seasonal_naive).")
    names = list(config.naive)
    origins = data.origins("val")
    truth, mask = data.truth(origins)
    naive = naive_forecasts(data, origins, names)
    weights = fit_weights(val_pred, naive, truth, mask, config.step)
    alone, blended = (masked_metrics(p, truth, mask).mae_avg for p in (val_pred, apply_weights(val_pred, naive, weights)))
    return BlendFit(names, weights, (float(alone), float(blended)), lag_share(data, origins, names))


def apply_weights(pred: np.ndarray, naive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The blended forecasts ``[N, B, H]`` (float32) of ``pred [N, B, H]`` and ``naive [K, N, B, H]``
    with ``weights [H, K]``."""
    pred = pred.astype(np.float64)
    return (pred + np.einsum("hk,knbh->nbh", weights, naive - pred[None])).astype(np.float32)


def weights_note(names: list[str], weights: np.ndarray) -> str:
    """One line: each naive forecast's weight per horizon step."""
    return "; ".join(f"{n} {'/'.join(f'{w:.2f}' for w in weights[:, k])}" for k, n in enumerate(names))
