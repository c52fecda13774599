"""Seasonal naive, weekly naive and historical average as comparison methods (the forecasts: :mod:`gpdiff.evaluation.naive`).

Where a forecast falls back (the historical average for a missing lagged value; a node's mean, or 0,
where the few-shot days have no observation), the result's ``fallback`` note says where
(:mod:`gpdiff.evaluation.fallbacks`); the run writes it to the log and to report.md.
"""

from __future__ import annotations

from gpdiff.evaluation.fallbacks import LAG_DAYS, historical_average_notes, lag_fallback_note
from gpdiff.evaluation.naive import historical_average, seasonal_naive, weekly_naive
from gpdiff.methods import MethodInputs, MethodResult


def _notes(*notes: str | None) -> dict[str, str]:
    kept = [n for n in notes if n]
    return {"fallback": "; ".join(kept)} if kept else {}


def run_seasonal_naive(ctx: MethodInputs) -> MethodResult:
    origins = ctx.target.origins("test")
    return MethodResult(pred=seasonal_naive(ctx.target, origins), notes=_notes(lag_fallback_note(ctx.target, origins, LAG_DAYS["seasonal_naive"])))


def run_weekly_naive(ctx: MethodInputs) -> MethodResult:
    origins = ctx.target.origins("test")
    return MethodResult(pred=weekly_naive(ctx.target, origins), notes=_notes(lag_fallback_note(ctx.target, origins, LAG_DAYS["weekly_naive"])))


def run_historical_average(ctx: MethodInputs) -> MethodResult:
    return MethodResult(pred=historical_average(ctx.target, ctx.target.origins("test")),
                        notes=_notes(*historical_average_notes(ctx.target)))
