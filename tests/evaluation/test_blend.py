"""The seasonal blend: the weight grid, the fit on validation forecasts, the config errors, and the
blend stage of a run."""

import numpy as np
import pytest

from gpdiff.evaluation.blend import BlendConfig, apply_weights, fit_weights, simplex_grid, weights_note
from gpdiff.utils.errors import GpdiffError


def test_simplex_grid_holds_every_point_with_sum_at_most_one():
    g = simplex_grid(2, 0.25)
    assert g.shape == (15, 2)  # (n + 1)(n + 2) / 2 points for n = 4
    assert (g >= 0).all() and (g.sum(1) <= 1 + 1e-12).all()
    assert (g[0] == 0).all()  # the method alone comes first, so it wins ties
    assert len(simplex_grid(3, 0.05)) == 1771 and len(simplex_grid(1, 0.1)) == 11


def _series(seed: int = 0, shape=(5, 40, 3)):
    rng = np.random.default_rng(seed)
    return rng.normal(10, 3, shape), rng.normal(10, 3, shape), rng.normal(10, 3, shape)


def test_fit_recovers_the_mixture_that_made_the_truth():
    pred, a, b = _series()
    naive = np.stack([a, b])
    true_w = np.array([[0.3, 0.5], [0.0, 0.75], [0.6, 0.0]])  # per horizon step
    truth = apply_weights(pred, naive, true_w).astype(np.float64)
    mask = np.ones(pred.shape, dtype=bool)
    w = fit_weights(pred, naive, truth, mask, 0.05)
    np.testing.assert_allclose(w, true_w, atol=1e-12)
    np.testing.assert_allclose(apply_weights(pred, naive, w), truth, atol=1e-4)


def test_fit_keeps_the_method_when_the_naive_forecast_only_hurts():
    pred, noise, _ = _series(1)
    truth = pred.copy()
    w = fit_weights(pred, (truth + 50 * (noise - 10))[None], truth, np.ones(pred.shape, bool), 0.1)
    assert (w == 0).all()


def test_fit_ignores_masked_and_missing_values():
    pred, a, _ = _series(2)
    truth = a.copy()  # the naive forecast is exact where observed
    mask = np.ones(pred.shape, dtype=bool)
    mask[:, :, 1] = False  # nothing observed at step 2: its weight stays zero
    truth[0, 0, 0] = np.nan
    w = fit_weights(pred, a[None], truth, mask, 0.1)
    assert w[0, 0] == 1.0 and w[2, 0] == 1.0 and w[1, 0] == 0.0


def test_fit_and_config_errors_name_the_problem():
    pred, a, _ = _series()
    with pytest.raises(GpdiffError, match="same \\[nodes, windows, horizon\\] shape"):
        fit_weights(pred, a[None, :, :-1], pred, np.ones(pred.shape, bool), 0.1)
    with pytest.raises(GpdiffError, match="monthly_naive.*weekly_naive"):
        BlendConfig(naive=["monthly_naive"])
    with pytest.raises(GpdiffError, match="twice"):
        BlendConfig(naive=["weekly_naive", "weekly_naive"])
    with pytest.raises(GpdiffError, match="whole parts"):
        BlendConfig(naive=["weekly_naive"], step=0.3)
    assert BlendConfig().naive == ["weekly_naive", "seasonal_naive"] and not BlendConfig(naive="none").active
    assert BlendConfig(naive="weekly_naive, seasonal_naive").naive == ["weekly_naive", "seasonal_naive"]


def test_weights_note_lists_every_step_weight():
    line = weights_note(["weekly_naive", "seasonal_naive"], np.array([[0.5, 0.25], [0.6, 0.0]]))
    assert line == "weekly_naive 0.50/0.60; seasonal_naive 0.25/0.00"
