"""One fixed look per method across every plot (gpdiff.utils.plotstyle), and legends outside the axes."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")
import matplotlib.colors as mcolors
import matplotlib.pyplot as plt
import numpy as np
import pytest

from gpdiff.evaluation.blend import NAIVE
from gpdiff.experiment.report import plot_mae_per_horizon, plot_reliability
from gpdiff.methods import METHODS
from gpdiff.utils.plotstyle import NAIVE_NAMES, STYLES, figure_legend_outside, legend_outside, method_style


def _rgb(name: str) -> tuple[float, float, float]:
    return mcolors.to_rgb(method_style(name)["color"])


def test_every_method_has_its_own_fixed_look():
    assert set(STYLES) == set(METHODS)  # a new method gets a style line too
    looks = [(method_style(m)["color"], method_style(m)["marker"], method_style(m)["linestyle"]) for m in METHODS]
    assert len(set(looks)) == len(looks)
    assert len({method_style(m)["marker"] for m in METHODS}) == len(METHODS)  # apart in a grey print too


def test_gpd_and_weekly_naive_differ_and_naive_methods_are_grey():
    assert _rgb("gpd") != _rgb("weekly_naive") and _rgb("gpd_zero_shot") != _rgb("seasonal_naive")
    assert set(NAIVE_NAMES) == set(NAIVE)
    for name in NAIVE_NAMES:
        r, g, b = _rgb(name)
        assert r == g == b, name  # grey
    for name in set(METHODS) - set(NAIVE_NAMES):
        r, g, b = _rgb(name)
        assert max(r, g, b) - min(r, g, b) > 0.1, name  # a colour
    others = {_rgb(m) for m in METHODS if not m.startswith("gpd")}
    assert _rgb("gpd") not in others and _rgb("gpd_zero_shot") not in others  # GPD's colour is its own


def test_styles_are_stable_across_calls_and_for_unknown_names():
    assert method_style("gpd") == method_style("gpd")
    assert method_style("my_new_method") == method_style("my_new_method")
    assert method_style("my_new_method")["color"] != method_style("gpd")["color"]
    style = method_style("gpd")
    style["color"] = "blue"  # a caller's change does not leak into the next plot
    assert method_style("gpd")["color"] != "blue"


@pytest.mark.parametrize("panels", [1, 3])
def test_legends_lie_outside_the_axes(panels):
    fig, axes = plt.subplots(1, panels, squeeze=False)
    for ax in axes.flat:
        for m in METHODS:
            ax.plot(np.arange(6), np.random.default_rng(0).random(6), label=m, **method_style(m))
    legend = legend_outside(axes[0, 0]) if panels == 1 else figure_legend_outside(fig, axes.flat)
    fig.canvas.draw()
    box = legend.get_window_extent()
    right = max(ax.get_window_extent().x1 for ax in axes.flat)
    assert box.x0 >= right
    assert len(legend.get_texts()) == len(METHODS)  # each method once
    plt.close(fig)


def test_run_plots_with_twelve_methods_write_pngs(tmp_path):
    rows = [{"method": m, "horizon": str(h), "mae": float(i + h), "rmse": 1.0, "mape": 0.1}
            for i, m in enumerate(METHODS) for h in (1, 2, 3)]
    out = plot_mae_per_horizon(rows, tmp_path / "mae.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    scores = SimpleNamespace(levels=[0.8, 0.95], coverage=[np.array([0.7, 0.8]), np.array([0.9, 0.96])])  # as read
    out = plot_reliability({m: scores for m in ("gpd", "weekly_naive")}, tmp_path / "rel.png")  # type: ignore[misc]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
