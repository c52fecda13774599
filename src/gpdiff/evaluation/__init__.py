"""Scoring and the forecasts every method is compared with: masked metrics, naive forecasts, the blend, intervals."""
