"""`gpdiff data show`: a city's statistics and a plot of a few series and its graph."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from gpdiff.data.city import City
from gpdiff.utils.figures import _figure, save_figure
from gpdiff.utils.plotstyle import legend_outside


def city_stats(city: City) -> list[dict[str, Any]]:
    """Per-city statistics of channel 0 over observed values."""
    obs = city.values[:, :, 0][city.mask]
    return [
        {"stat": "nodes", "value": city.n_nodes},
        {"stat": "steps", "value": city.n_steps},
        {"stat": "interval", "value": f"{city.interval_minutes} min"},
        {"stat": "span", "value": city.summary()["span"]},
        {"stat": "kind / units", "value": f"{city.kind} / {city.units}"},
        {"stat": "channels", "value": ", ".join(city.channels)},
        {"stat": "edges (directed, off-diagonal)", "value": city.n_edges},
        {"stat": "coordinates", "value": city.coord_kind if city.coords is not None else "none"},
        {"stat": "node attributes", "value": ", ".join(city.attribute_names) or "none"},
        {"stat": "missing share", "value": f"{1 - city.mask.mean():.2%}"},
        {"stat": "zeros among observed", "value": f"{(obs == 0).mean():.2%}"},
        {"stat": "mean", "value": f"{obs.mean():.4g}"},
        {"stat": "std", "value": f"{obs.std():.4g}"},
        {"stat": "min / max", "value": f"{obs.min():.4g} / {obs.max():.4g}"},
        {"stat": "node means (min / median / max)",
         "value": "{:.3g} / {:.3g} / {:.3g}".format(*np.percentile(_node_means(city), [0, 50, 100]))},
        {"stat": "source", "value": city.source},
    ]


def _node_means(city: City) -> np.ndarray:
    v = np.where(city.mask, city.values[:, :, 0], 0.0)
    return v.sum(0) / np.maximum(city.mask.sum(0), 1)


def plot_city(city: City, path: str | os.PathLike[str], n_series: int = 4, days: float = 7) -> Path:
    """A few nodes' series (the busiest, a median and a quiet one) and the graph."""
    fig, (ax1, ax2) = _figure(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [2.2, 1]})
    means = _node_means(city)
    order = np.argsort(-means)
    picks = list(dict.fromkeys(order[np.linspace(0, city.n_nodes - 1, min(n_series, city.n_nodes)).astype(int)]))
    steps = min(city.n_steps, int(days * city.steps_per_day))
    ts = city.timestamps[:steps]
    target = city.target()
    for i in picks:
        ax1.plot(ts, target[:steps, i], lw=0.9, label=f"node {city.node_ids[i]}")
    shown = means[picks][np.isfinite(means[picks])]
    log = shown.size > 1 and shown.max() > 20 * max(shown.min(), 1e-9)  # a busy node would flatten the quiet ones
    if log:
        ax1.set_yscale("symlog", linthresh=max(float(shown.max()) / 1000, 1e-6))  # linear below 0.1% of the top
    ax1.set_title(f"{city.name}: first {steps / city.steps_per_day:.3g} days ({city.units}{', log scale' if log else ''})")
    legend_outside(ax1)
    ax1.tick_params(axis="x", labelrotation=30, labelsize=8)
    if city.coords is not None:
        xy = city.coords[:, ::-1] if city.coord_kind == "latlon" else city.coords
        label = "lon / lat" if city.coord_kind == "latlon" else "x / y"
    elif city.n_nodes < 3:  # a spectral layout needs two non-trivial eigenvectors: nodes in a row
        xy, label = np.c_[np.arange(city.n_nodes, dtype=float), np.zeros(city.n_nodes)], "nodes in a row"
    else:  # spectral layout from the graph
        a = np.maximum(city.adjacency, city.adjacency.T)
        lap = np.diag(a.sum(1)) - a
        _, vec = np.linalg.eigh(lap)
        xy, label = vec[:, 1:3], "spectral layout (no coordinates)"
    rows, cols = np.nonzero(np.triu(np.maximum(city.adjacency, city.adjacency.T), 1))
    for r, c in zip(rows[:5000], cols[:5000]):
        ax2.plot(xy[[r, c], 0], xy[[r, c], 1], color="0.75", lw=0.4, zorder=1)
    sc = ax2.scatter(xy[:, 0], xy[:, 1], c=means, s=12, cmap="viridis", zorder=2)
    fig.colorbar(sc, ax=ax2, label="mean value")
    ax2.set_title(f"graph: {city.n_nodes} nodes, {len(rows)} undirected edges")
    ax2.set_xlabel(label)
    return save_figure(fig, path)
