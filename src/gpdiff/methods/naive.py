"""Seasonal naive, weekly naive and historical average as comparison methods (the forecasts: :mod:`gpdiff.evaluation.naive`)."""

from __future__ import annotations

from gpdiff.evaluation.naive import historical_average, seasonal_naive, weekly_naive
from gpdiff.methods import Context, MethodResult


def run_seasonal_naive(ctx: Context) -> MethodResult:
    return MethodResult(pred=seasonal_naive(ctx.target, ctx.target.origins("test")))


def run_weekly_naive(ctx: Context) -> MethodResult:
    return MethodResult(pred=weekly_naive(ctx.target, ctx.target.origins("test")))


def run_historical_average(ctx: Context) -> MethodResult:
    return MethodResult(pred=historical_average(ctx.target, ctx.target.origins("test")))
