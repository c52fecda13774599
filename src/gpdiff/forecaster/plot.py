"""A forecast at a glance: the last days of a few nodes and their forecast (``gpdiff forecast --plot``)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from gpdiff.data.city import City
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import atomic_write_bytes
from gpdiff.utils.plotstyle import legend_outside, method_style


def plot_forecast(city: City, forecasts: pd.DataFrame, out: str | Path, nodes: list[str] | None = None,
                  days: int = 3, method: str = "gpd") -> Path:
    """PNG of the last ``days`` of ``city`` and the ``forecasts`` (a :meth:`Forecaster.predict` table) for
    ``nodes`` (default: the four forecast nodes with the highest mean), one panel each; the forecast in
    ``method``'s colour (:func:`gpdiff.utils.plotstyle.method_style`, as in a run's plots), the legend outside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    have = list(dict.fromkeys(forecasts["node"].astype(str)))
    if nodes is None:
        means = {n: np.nanmean(city.target()[:, city.node_ids.index(n)]) if n in city.node_ids else -np.inf for n in have}
        nodes = sorted(have, key=lambda n: -means[n])[:4]
    unknown = [n for n in nodes if n not in have]
    if unknown:
        raise GpdiffError(f"--nodes {', '.join(unknown)}: not among the forecast nodes ({', '.join(have[:5])}, ...).")
    fig, axes = plt.subplots(len(nodes), 1, figsize=(9, 2.2 * len(nodes)), squeeze=False, sharex=True)
    color = method_style(method)["color"]
    past = city.to_pandas().iloc[-days * city.steps_per_day:]
    for ax, node in zip(axes[:, 0], nodes):
        if node in past.columns:
            ax.plot(past.index, past[node], color="0.3", lw=1, label="observed")
        f = forecasts[forecasts["node"].astype(str) == node]
        ax.plot(f["timestamp"], f["forecast"], color=color, lw=1.5, label=f"forecast ({method})")
        if {"lower_80", "upper_80"} <= set(f.columns):
            ax.fill_between(f["timestamp"], f["lower_80"], f["upper_80"], color=color, alpha=0.2, label="80%")
        ax.set_ylabel(f"{node}\n({city.units})", fontsize=8)
    legend_outside(axes[0, 0])
    axes[0, 0].set_title(f"{city.name}: last {days} days and the forecast")
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # "tight": room for the legend outside the axes
    plt.close(fig)
    return atomic_write_bytes(out, buf.getvalue())  # a full disk: one line naming the file
