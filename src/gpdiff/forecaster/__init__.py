"""Forecasting a city: the forecaster (:mod:`.forecaster`: fit, predict, update, save/load) built
from a pretrained GPD (:mod:`gpdiff.diffusion.pretrained`; one ships in ``bundled/``)."""

from gpdiff.diffusion.pretrained import GPD, bundled_path
from gpdiff.forecaster.forecaster import Forecaster, ForecasterConfig, as_city

__all__ = ["GPD", "Forecaster", "ForecasterConfig", "as_city", "bundled_path"]
