"""One look for every method in every PNG gpdiff writes: a fixed colour, marker and line style per method.

A run's ``mae_per_horizon.png``, ``forecasts.png``, ``reliability.png`` and ``params_pca.png``, a
bench scoreboard's ``mae_per_horizon.png`` and ``gpdiff forecast --plot`` draw a method the same way,
whatever else is in the plot (matplotlib's colour cycle would give the n-th line the n-th colour, so
with twelve methods ``gpd`` and ``weekly_naive`` came out the same orange). The naive methods are
grey (a reference, not a contender), GPD is red, the other learned methods take the remaining
colours of matplotlib's ``tab10`` (Tableau 10) palette, each with its own marker so that a print in
grey still tells them apart. A name outside :data:`STYLES` (a method added later) gets a colour and
marker from a stable hash of its name: the same in every plot and every process.

Legends go outside the axes (:func:`legend_outside`), so that they never cover a line.
"""

from __future__ import annotations

import hashlib
from typing import Any

# Tableau 10 (matplotlib's tab10) without its red (GPD's) and its grey (the naive methods').
_BLUE, _ORANGE, _GREEN, _PURPLE = "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd"
_BROWN, _PINK, _OLIVE, _CYAN = "#8c564b", "#e377c2", "#bcbd22", "#17becf"
GPD_COLOR = "#d62728"  # tab10 red: GPD and only GPD
GPD_ZERO_SHOT_COLOR = "#f4a09f"  # the same red, lighter: GPD's parameters before fine-tuning
NAIVE_GREYS = ("#4d4d4d", "#808080", "#b3b3b3")  # seasonal, weekly naive, historical average

# method name -> matplotlib line properties (color, marker, linestyle); one entry per method of gpdiff.methods.
STYLES: dict[str, dict[str, Any]] = {
    "seasonal_naive": {"color": NAIVE_GREYS[0], "marker": "s", "linestyle": ":"},
    "weekly_naive": {"color": NAIVE_GREYS[1], "marker": "D", "linestyle": ":"},
    "historical_average": {"color": NAIVE_GREYS[2], "marker": "v", "linestyle": ":"},
    "target_only": {"color": _BROWN, "marker": "x", "linestyle": "-"},
    "transfer_zero_shot": {"color": _BLUE, "marker": "p", "linestyle": "--"},
    "transfer": {"color": _BLUE, "marker": "^", "linestyle": "-"},
    "mean_params": {"color": _OLIVE, "marker": "P", "linestyle": "-"},
    "retrieval": {"color": _CYAN, "marker": "<", "linestyle": "-"},
    "knn_residual": {"color": _GREEN, "marker": ">", "linestyle": "-"},
    "reptile": {"color": _PURPLE, "marker": "h", "linestyle": "-"},
    "pooled_linear": {"color": _ORANGE, "marker": "d", "linestyle": "-."},
    "gpd_zero_shot": {"color": GPD_ZERO_SHOT_COLOR, "marker": "*", "linestyle": "--"},
    "gpd": {"color": GPD_COLOR, "marker": "o", "linestyle": "-"},
}
_SPARE_COLORS = (_ORANGE, _PINK, _PURPLE, _CYAN, _OLIVE, _GREEN, _BROWN, _BLUE)
_SPARE_MARKERS = ("8", "H", "X", "d", "1", "2", "3", "4")
TRUTH_COLOR = "black"  # observed values in forecast plots
NAIVE_NAMES = ("seasonal_naive", "weekly_naive", "historical_average")  # gpdiff.evaluation.blend.NAIVE


def method_style(name: str) -> dict[str, Any]:
    """Line properties of method ``name`` (``color``, ``marker``, ``linestyle``, ``linewidth``), the same
    in every plot: :data:`STYLES` for gpdiff's methods, else a stable hash of the name. GPD's line is
    drawn thicker, the naive methods' thinner."""
    style = STYLES.get(name)
    if style is None:
        h = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big")
        style = {"color": _SPARE_COLORS[h % len(_SPARE_COLORS)],
                 "marker": _SPARE_MARKERS[(h // len(_SPARE_COLORS)) % len(_SPARE_MARKERS)], "linestyle": "-."}
    width = 2.2 if name == "gpd" else 1.0 if name in NAIVE_NAMES else 1.4
    return {**style, "linewidth": width}


def scatter_style(name: str) -> dict[str, Any]:
    """:func:`method_style` as ``Axes.scatter`` keywords (``c`` would be read as data; a scatter has no line)."""
    style = method_style(name)
    return {"color": style["color"], "marker": style["marker"]}


def legend_outside(ax: Any, fontsize: int = 8, **kwargs: Any) -> Any:
    """A legend to the right of ``ax``, outside it (so it covers no line); the figure grows to hold it
    when saved with ``bbox_inches="tight"`` (:func:`gpdiff.experiment.report.save_figure`). Returns the legend."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=fontsize,
                     frameon=False, **kwargs)


def figure_legend_outside(fig: Any, axes: Any, fontsize: int = 8) -> Any:
    """One legend for all ``axes`` of ``fig`` (each label once, in first-seen order), to the right of
    them all: for panels that each show some of the methods (a scoreboard's experiments)."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    if not handles:
        return None
    return fig.legend(list(handles.values()), list(handles), loc="upper left", bbox_to_anchor=(1.0, 1.0),
                      fontsize=fontsize, frameon=False)
