"""A backtest's outputs: the per-day CSV, a markdown table and a plot against days of data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gpdiff.evaluation.intervals import level_name
from gpdiff.forecaster.backtest import REFERENCES, BacktestResult, beats_naive_from
from gpdiff.utils.io import atomic_write_bytes, atomic_write_text


def by_days(scores: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric`` per days of data (rows) and method (columns, in run order), the mean over start days."""
    order = list(dict.fromkeys(scores["method"]))
    return scores.pivot_table(index="days_of_data", columns="method", values=metric, aggfunc="mean")[order]


def markdown(result: BacktestResult, city: str) -> str:
    """The report: MAE, CRPS and coverage per days of data and method (mean over start days), the day
    from which each method beats both naive baselines, and the notes."""
    s = result.scores
    starts = ", ".join(f"{d} ({w})" for d, w in s[["start_day", "weekday"]].drop_duplicates().itertuples(index=False))
    intro = (f"Start days {starts}; each row is the day forecast after that many days of data (mean over the start "
             "days). Original units; coverage is the share of observed values inside the conformal interval.")
    lines = [f"# Backtest: {city}", "", intro, ""]
    metrics = [("mae", "MAE"), ("crps", "CRPS")] + [(f"coverage_{level_name(v)}", f"Coverage of the {level_name(v)}% interval")
                                                     for v in result.levels]
    for col, title in metrics:
        t = by_days(s, col)
        lines += [f"## {title}", "", "| days of data | " + " | ".join(t.columns) + " |",
                  "|---" * (len(t.columns) + 1) + "|"]
        for d, row in t.iterrows():
            lines.append(f"| {d} | " + " | ".join(_fmt(v, col) for v in row) + " |")
        lines.append("")
    b = beats_naive_from(s)
    rule = ("The fewest days of data from which its MAE is below both on that day and every later day of the "
            "backtest (never: not by the last day).")
    lines += [f"## From which day each method beats both {' and '.join(REFERENCES)}", "", rule, "",
              "| method | " + " | ".join(f"start day {d}" for d in sorted(b["start_day"].unique())) + " |",
              "|---" * (b["start_day"].nunique() + 1) + "|"]
    for method, g in b.groupby("method", sort=False):
        vals = g.set_index("start_day")["beats_both_from"]
        lines.append(f"| {method} | " + " | ".join("never" if pd.isna(v) else f"{int(v)} days"
                                                  for v in vals.sort_index()) + " |")
    if result.notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in result.notes]
    return "\n".join(lines) + "\n"


def _fmt(v: float, col: str) -> str:
    if pd.isna(v):
        return "-"
    return f"{v:.1%}" if col.startswith("coverage") else f"{v:.4g}"


def plot(result: BacktestResult, out: str | Path, city: str) -> Path:
    """PNG of MAE, CRPS and coverage against days of data, one line per method (mean over start days),
    the legend outside the panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    s = result.scores
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    for ax, col, title in ((axes[0], "mae", "MAE"), (axes[1], "crps", "CRPS")):
        t = by_days(s, col)
        for m in t.columns:
            ax.plot(t.index, t[m], marker="o", ms=3, label=m)
        ax.set(title=title, xlabel="days of data")
    ax = axes[2]
    for i, level in enumerate(result.levels):
        t = by_days(s, f"coverage_{level_name(level)}")
        for j, m in enumerate(t.columns):
            ax.plot(t.index, t[m], marker="o", ms=3, color=f"C{j}", ls=("-", "--", ":")[i % 3])
        ax.axhline(level, color="k", lw=0.8, ls=("-", "--", ":")[i % 3])
    ax.set(title="coverage (" + ", ".join(f"{level_name(v)}%: {('solid', 'dashed', 'dotted')[i % 3]}"
                                          for i, v in enumerate(result.levels)) + ")", xlabel="days of data")
    for a in axes:
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper")
    fig.suptitle(f"Backtest: {city}")
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def write(result: BacktestResult, out_dir: str | Path, city: str) -> dict[str, Path]:
    """``backtest.csv`` (one row per start day, day and method), ``backtest.md`` and ``backtest.png`` in
    ``out_dir`` (created), each written atomically."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / "backtest.csv", "md": out_dir / "backtest.md", "png": out_dir / "backtest.png"}
    atomic_write_bytes(paths["csv"], result.scores.to_csv(index=False, float_format="%.6g").encode())
    atomic_write_text(paths["md"], markdown(result, city))
    tmp = out_dir / ".backtest.tmp.png"
    plot(result, tmp, city)
    tmp.replace(paths["png"])
    return paths

