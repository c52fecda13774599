"""Masked forecasting metrics on the original scale, per horizon step and averaged.

Arrays have the horizon on the last axis: ``pred``, ``true``, ``mask`` of shape ``[..., H]``.
Missing targets (``mask`` False, or NaN in ``true``) are ignored. MAPE also ignores targets whose
absolute value is at most ``mape_floor`` (default 0: exact zeros, which would make it infinite).
The average row pools every observed entry of every step (not a mean of per-step values), so
``rmse_avg = sqrt(mean squared error over all entries)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NAMES = ("mae", "rmse", "mape")


@dataclass
class Metrics:
    """Per-step (``[H]``) and pooled metrics, plus the number of observed targets per step."""

    mae: np.ndarray
    rmse: np.ndarray
    mape: np.ndarray
    count: np.ndarray
    mae_avg: float
    rmse_avg: float
    mape_avg: float

    @property
    def horizon(self) -> int:
        return int(self.mae.shape[0])

    def rows(self, method: str) -> list[dict[str, object]]:
        """Rows for ``results.csv``: method, horizon (1-based step or ``avg``), mae, rmse, mape."""
        out: list[dict[str, object]] = [
            {"method": method, "horizon": str(h + 1), "mae": float(self.mae[h]), "rmse": float(self.rmse[h]),
             "mape": float(self.mape[h])}
            for h in range(self.horizon)
        ]
        out.append({"method": method, "horizon": "avg", "mae": self.mae_avg, "rmse": self.rmse_avg,
                    "mape": self.mape_avg})
        return out


def _nanratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


def masked_metrics(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None,
                   mape_floor: float = 0.0) -> Metrics:
    """MAE, RMSE and MAPE (as a fraction, not percent) over all but the last axis."""
    pred = np.asarray(pred, dtype=np.float64)
    true = np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape:
        raise ValueError(f"pred shape {pred.shape} != true shape {true.shape}")
    m = np.isfinite(true) if mask is None else (np.asarray(mask, dtype=bool) & np.isfinite(true))
    h = pred.shape[-1]
    m2 = m.reshape(-1, h)
    err = np.where(m, pred - np.nan_to_num(true), 0.0).reshape(-1, h)
    abs_true = np.abs(np.nan_to_num(true)).reshape(-1, h)
    mp = m2 & (abs_true > mape_floor)
    ape = np.where(mp, np.abs(err) / np.where(mp, abs_true, 1.0), 0.0)
    cnt, cnt_p = m2.sum(0), mp.sum(0)
    sae, sse, sape = np.abs(err).sum(0), (err**2).sum(0), ape.sum(0)
    return Metrics(
        mae=_nanratio(sae, cnt), rmse=np.sqrt(_nanratio(sse, cnt)), mape=_nanratio(sape, cnt_p), count=cnt,
        mae_avg=float(_nanratio(sae.sum(), cnt.sum())), rmse_avg=float(np.sqrt(_nanratio(sse.sum(), cnt.sum()))),
        mape_avg=float(_nanratio(sape.sum(), cnt_p.sum())),
    )


def node_mae(pred: np.ndarray, true: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Masked MAE of every node ``[N]`` over its windows and horizon steps (arrays ``[N, B, H]``);
    NaN for a node without an observed target. The unit of the paired tests in :mod:`gpdiff.experiment.scoreboard`."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    if pred.shape != true.shape or pred.ndim != 3:
        raise ValueError(f"node_mae needs [N, B, H] arrays of one shape, got {pred.shape} and {true.shape}")
    m = np.isfinite(true) if mask is None else (np.asarray(mask, dtype=bool) & np.isfinite(true))
    err = np.where(m, np.abs(pred - np.nan_to_num(true)), 0.0).sum((1, 2))
    return _nanratio(err, m.sum((1, 2)))


def masked_mae_torch(pred, true, mask):  # type: ignore[no-untyped-def]
    """Differentiable masked MAE for training (torch tensors, any shape)."""
    w = mask.to(pred.dtype)
    return ((pred - true).abs() * w).sum() / w.sum().clamp_min(1.0)
