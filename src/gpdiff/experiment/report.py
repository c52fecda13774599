"""Tables and plots that people read: terminal/Markdown tables and PNG figures.

Matplotlib runs headless (Agg). Every plotting function writes one PNG atomically and returns its path.
A method looks the same in every plot (:mod:`gpdiff.utils.plotstyle`), and legends sit outside the axes.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tabulate import tabulate

from gpdiff.evaluation.ensemble import ENSEMBLE_SUFFIX, EnsembleOutcome
from gpdiff.evaluation.ensemble import interval_rows as ensemble_interval_rows
from gpdiff.evaluation.ensemble import report_lines as ensemble_report_lines
from gpdiff.evaluation.intervals import IntervalScores, level_name
from gpdiff.utils.figures import _figure, save_figure
from gpdiff.utils.io import atomic_write_text
from gpdiff.utils.plotstyle import TRUTH_COLOR, legend_outside, method_style, scatter_style

if TYPE_CHECKING:  # types of the run report only; plotting a city must not import the whole pipeline
    from gpdiff.data.windows import CityData
    from gpdiff.evaluation.metrics import Metrics
    from gpdiff.experiment.runconfig import RunConfig
    from gpdiff.methods import MethodResult
    from gpdiff.zoo.params import ParamCollection


def table(rows: Sequence[dict[str, Any]], fmt: str = "simple", floatfmt: str = ".4g") -> str:
    """Rows of dicts (same keys) as a table: ``simple`` for terminals, ``github`` for Markdown."""
    if not rows:
        return "(no rows)"
    return tabulate([list(r.values()) for r in rows], headers=list(rows[0].keys()), tablefmt=fmt,
                    floatfmt=floatfmt)


# ------------------------------------------------------------------ run results
def results_frame(rows: Sequence[dict[str, Any]]):  # type: ignore[no-untyped-def]
    """``results.csv`` rows (method, horizon, mae, rmse, mape) as a DataFrame in row order."""
    import pandas as pd

    return pd.DataFrame(list(rows), columns=["method", "horizon", "mae", "rmse", "mape"])


def results_table(rows: Sequence[dict[str, Any]], markdown: bool = False, horizons: Sequence[str] | None = None) -> str:
    """Methods x (MAE, RMSE, MAPE) at each horizon step and averaged; the best value per column in bold
    (Markdown) or marked with ``*`` (terminal)."""
    df = results_frame(rows)
    steps = list(dict.fromkeys(df["horizon"]))
    if horizons is not None:
        steps = [h for h in steps if h in horizons]
    methods = list(dict.fromkeys(df["method"]))
    cols: list[tuple[str, str]] = [(h, m) for h in steps for m in ("mae", "rmse", "mape")]
    val = {(r.method, r.horizon, m): getattr(r, m) for r in df.itertuples() for m in ("mae", "rmse", "mape")}
    best = {c: np.nanmin([val.get((meth, *c), np.nan) for meth in methods]) for c in cols}
    out = []
    for meth in methods:
        row: dict[str, Any] = {"method": meth}
        for h, m in cols:
            v = val.get((meth, h, m), np.nan)
            s = "-" if not np.isfinite(v) else (f"{v:.2%}" if m == "mape" else f"{v:.4g}")
            if np.isfinite(v) and v == best[(h, m)]:
                s = f"**{s}**" if markdown else f"{s}*"
            row[f"{m.upper()} @{h}" if h != "avg" else f"{m.upper()} avg"] = s
        out.append(row)
    return table(out, fmt="github" if markdown else "simple")


def plot_mae_per_horizon(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str], title: str = "") -> Path:
    df = results_frame(rows)
    df = df[df["horizon"] != "avg"]
    fig, ax = _figure(figsize=(7, 4.5))
    for meth, g in df.groupby("method", sort=False):
        ax.plot(g["horizon"].astype(int), g["mae"], ms=5, label=meth, **method_style(str(meth)))
    ax.set_xlabel("horizon step")
    ax.set_ylabel("MAE (original units)")
    ax.set_title(title or "test MAE per horizon step")
    legend_outside(ax)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_forecasts(times: Any, truth: np.ndarray, preds: dict[str, np.ndarray], node_names: Sequence[str],
                   path: str | os.PathLike[str], units: str = "", step: int = 0) -> Path:
    """Forecast vs truth at horizon ``step`` for a few nodes. ``truth``/``preds[m]``: ``[n_nodes, T]``
    (NaN where missing)."""
    n = len(node_names)
    fig, axes = _figure(n, 1, figsize=(11, 2.3 * n), sharex=True, squeeze=False)
    for i, ax in enumerate(axes[:, 0]):
        ax.plot(times, truth[i], color=TRUTH_COLOR, lw=1.0, label="truth")
        for m, p in preds.items():
            style = {**method_style(m), "marker": None, "linewidth": 1.2}  # a marker per step would hide the line
            ax.plot(times, p[i], alpha=0.9, label=m, **style)
        ax.set_ylabel(units, fontsize=8)
        ax.set_title(f"node {node_names[i]} (horizon step {step + 1})", fontsize=9)
    legend_outside(axes[0, 0])
    axes[-1, 0].tick_params(axis="x", labelrotation=20, labelsize=8)
    return save_figure(fig, path)


def plot_param_projection(groups: dict[str, np.ndarray], path: str | os.PathLike[str], title: str = "",
                          methods: dict[str, str] | None = None) -> Path:
    """2-D PCA (fitted on all points) of parameter vectors, one colour per group: the method's
    (:func:`gpdiff.utils.plotstyle.method_style`) for a group named in ``methods`` (group -> method), light grey
    for the source zoo and any other group."""
    methods = methods or {}
    allv = np.concatenate([g for g in groups.values() if len(g)], axis=0).astype(np.float64)
    mu = allv.mean(0)
    _, _, vt = np.linalg.svd(allv - mu, full_matrices=False)
    fig, ax = _figure(figsize=(6.5, 5.5))
    for name, g in groups.items():
        if len(g):
            xy = (g - mu) @ vt[:2].T
            style = scatter_style(methods[name]) if name in methods else {"color": "#c7c7c7", "marker": "."}
            ax.scatter(xy[:, 0], xy[:, 1], s=10, alpha=0.6, label=f"{name} ({len(g)})", **style)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title or "parameters, PCA")
    legend_outside(ax, markerscale=2)
    return save_figure(fig, path)


def plot_stage_times(timings: dict[str, float], path: str | os.PathLike[str]) -> Path:
    names = list(timings)
    fig, ax = _figure(figsize=(7, 0.4 * len(names) + 1.5))
    ax.barh(names[::-1], [timings[n] for n in names][::-1], color="tab:blue")
    for i, n in enumerate(names[::-1]):
        ax.text(timings[n], i, f" {timings[n]:.1f} s", va="center", fontsize=8)
    ax.set_xlabel("wall time (s)")
    ax.set_title(f"wall time per stage (total {sum(timings.values()):.0f} s)")
    return save_figure(fig, path)


# ---------------------------------------------------------------- run report
def _note_value(value: Any) -> str:
    """A method's note for report.md: mappings as ``key value, ...``, lists comma-separated."""
    if isinstance(value, dict):
        return ", ".join(f"{k} {_note_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_note_value(v) for v in value)
    return f"{value:.5g}" if isinstance(value, float) else str(value)


@dataclass
class Outcome:
    """A method's result with its test metrics."""

    result: MethodResult
    metrics: Metrics
    node_mae: np.ndarray  # [N] test MAE of every target node (NaN: no observed target)
    intervals: IntervalScores | None = None  # scores of its conformal prediction intervals on the test windows
    ensemble: EnsembleOutcome | None = None  # its ensemble's scores, with ensemble.size > 1 (gpdiff.evaluation.ensemble)


@dataclass
class RunRecord:
    """Everything the run report shows: the config, the target and its test windows, every method's
    outcome, the zoo, the generated parameters and the stage timings."""

    root: Path
    config: RunConfig
    target: CityData  # the target city under its split
    origins: np.ndarray  # [B] test window origins
    truth: np.ndarray  # [N, B, H] original-scale test targets
    outcomes: dict[str, Outcome]  # method name -> outcome, in run order
    zoo: ParamCollection | None  # None when no method needed it (gpdiff.methods.NO_ZOO)
    generated: ParamCollection | None
    timings: dict[str, float]  # stage name -> wall seconds, plus "total"
    sources: list[str]
    data_notes: list[str] = field(default_factory=list)  # what the data stages worked around on the target

    def rows(self) -> list[dict[str, Any]]:
        """``results.csv`` rows of every method: per horizon step and averaged."""
        return [row for name, o in self.outcomes.items() for row in o.metrics.rows(name)]

    def interval_rows(self) -> list[dict[str, Any]]:
        """``intervals.csv`` rows: every method's interval scores at the configured levels."""
        levels = list(self.config.intervals.levels)
        rows = [row for name, o in self.outcomes.items() if o.intervals is not None
                for row in o.intervals.rows(name, levels)]
        return rows + [row for name, o in self.outcomes.items() if o.ensemble is not None
                       for row in ensemble_interval_rows(name, o.ensemble, levels)]

    def node_crps(self) -> dict[str, np.ndarray]:
        """``node_crps.csv`` columns: every method's per-node interval-implied CRPS, and ``name:ensemble``
        for its conformalised ensemble."""
        out = {m: o.intervals.node_crps for m, o in self.outcomes.items()
               if o.intervals is not None and o.intervals.node_crps is not None}
        out.update({m + ENSEMBLE_SUFFIX: o.ensemble.scores.node_crps for m, o in self.outcomes.items()
                    if o.ensemble is not None and o.ensemble.scores.node_crps is not None})
        return out

    def params(self, method: str) -> np.ndarray | None:
        o = self.outcomes.get(method)
        return None if o is None or o.result.params is None else o.result.params.numpy()


def _interval_table(scored: dict[str, IntervalScores], levels: list[float], mae: Any, calibration: str) -> list[str]:
    """report.md's prediction-interval section: coverage, width and interval score per level, CRPS, MAE."""
    head = "| method | " + " | ".join(f"coverage {level_name(v)}% | width {level_name(v)}% | interval score "
                                      f"{level_name(v)}%" for v in levels) + " | CRPS | MAE |"
    when = ("the absolute validation-day errors" if calibration == "validation" else
            "recalibrated every test day (`intervals.calibration: daily`), the absolute errors of the day before "
            "(the validation day's for the first)")
    lines = ["## Prediction intervals (test period)", "",
             f"Split conformal, per method and horizon step: {when} divided by each "
             "node's scale give the quantile; an interval is the forecast plus or minus it times the node's scale "
             "(`gpdiff.evaluation.intervals`). Averages over the horizon steps; CRPS from the median and the interval bounds "
             "(`scoringrules.crps_quantile`; for a point forecast it is the MAE).", "",
             head, "|---" * (3 * len(levels) + 3) + "|"]
    for m, sc in scored.items():
        cells = sc.table_cells(levels)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {np.nanmean(sc.crps):.4g} | {mae[m]:.4g} |")
    return lines + [""]


def plot_reliability(scored: dict[str, IntervalScores], path: str | os.PathLike[str], title: str = "") -> Path:
    """Nominal against observed coverage per method (a calibrated method lies on the diagonal)."""
    fig, ax = _figure(figsize=(5.5, 5))
    ax.plot([0.45, 1], [0.45, 1], color="0.6", lw=1, ls="--", label="calibrated")
    for m, sc in scored.items():
        ax.plot(sc.levels, [np.nanmean(c) for c in sc.coverage], ms=5, label=m, **method_style(m))
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("observed coverage (test)")
    ax.set_title(title or "interval reliability", fontsize=10)
    legend_outside(ax, fontsize=7)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def write_run_report(rec: RunRecord, log: Callable[[str], Any] = print) -> Path:
    """results.csv / results.md / node_mae.csv, the plots, the interval files and report.md in
    ``rec.root``; the results table (a few horizons) goes to ``log``. Returns report.md's path."""
    root = Path(rec.root)
    rows = rec.rows()
    df, md_table = _write_tables(rec, rows, root)
    log("\n" + results_table(rows, horizons=["1", str(rec.target.horizon // 2), str(rec.target.horizon), "avg"])
        + "\n(* = best in column; full table in results.md)")
    avg = df[df["horizon"] == "avg"].set_index("method")["mae"]
    plots = _write_plots(rec, rows, avg, root)
    interval_lines = _write_intervals(rec, avg, root, plots)
    lines = _header_lines(rec, md_table) + _blend_lines(rec, avg) + interval_lines + ["## Plots", ""]
    for name, path in plots.items():
        lines += [f"### {name.replace('_', ' ')}", "", f"![{name}]({Path(path).name})", ""]
    lines += _notes_lines(rec) + _files_lines(root)
    return atomic_write_text(root / "report.md", "\n".join(lines))


def _write_tables(rec: RunRecord, rows: list[dict[str, Any]], root: Path) -> tuple[Any, str]:
    """results.csv, results.md and node_mae.csv; returns the results frame and the markdown table."""
    import pandas as pd

    df = results_frame(rows)
    atomic_write_text(root / "results.csv", df.to_csv(index=False, float_format="%.6g"))
    md_table = results_table(rows, markdown=True)
    atomic_write_text(root / "results.md", md_table + "\n")
    per_node = pd.DataFrame({m: o.node_mae for m, o in rec.outcomes.items()},
                            index=pd.Index(rec.target.city.node_ids, name="node"))
    atomic_write_text(root / "node_mae.csv", per_node.to_csv(float_format="%.6g"))
    return df, md_table


def _write_plots(rec: RunRecord, rows: list[dict[str, Any]], avg: Any, root: Path) -> dict[str, Path]:
    """MAE per horizon, forecasts of the three busiest nodes (GPD and the best other method), the
    parameters' PCA and the stage times; returns name -> file."""
    cfg, tdata, origins, truth = rec.config, rec.target, rec.origins, rec.truth
    target, split = tdata.city, tdata.split
    plots = {"mae_per_horizon": plot_mae_per_horizon(
        rows, root / "mae_per_horizon.png", f"{target.name}: test MAE per horizon ({cfg.target_days:g} days)")}
    gpd_name = "gpd" if "gpd" in rec.outcomes else next((m for m in rec.outcomes if m.startswith("gpd")), None)
    others = [m for m in avg.index if not m.startswith("gpd")]
    best_base = min(others, key=lambda m: avg[m]) if others else None
    shown = [m for m in (gpd_name, best_base) if m]
    if shown:
        seen = target.mask[split.train.as_slice()]  # the busiest nodes of the few-shot days
        totals = np.where(seen, target.values[split.train.as_slice(), :, 0], 0.0).sum(0)
        nodes = np.argsort(-(totals / np.maximum(seen.sum(0), 1)))[:3]
        span = min(origins.size, 3 * target.steps_per_day)
        t = target.timestamps[origins[:span]]
        tr = np.where(tdata.truth(origins[:span])[1], truth[:, :span], np.nan)[nodes, :, 0]
        preds = {m: rec.outcomes[m].result.pred[nodes, :span, 0] for m in shown}
        plots["forecasts"] = plot_forecasts(t, tr, preds, [target.node_ids[i] for i in nodes],
                                            root / "forecasts.png", target.units)
    groups = {"source zoo": rec.zoo.params.numpy()} if rec.zoo is not None else {}
    group_methods = {"generated (target)": "gpd_zero_shot", "GPD fine-tuned (target)": "gpd",
                     "target-only (target)": "target_only"}  # drawn in these methods' colours
    if rec.generated is not None:
        groups["generated (target)"] = rec.generated.params.numpy()
    for method, label in (("gpd", "GPD fine-tuned (target)"), ("target_only", "target-only (target)")):
        params = rec.params(method)
        if params is not None:
            groups[label] = params
    if groups:
        plots["params_pca"] = plot_param_projection(groups, root / "params_pca.png",
                                                    f"{cfg.model.name} parameters, PCA", group_methods)
    plots["stage_times"] = plot_stage_times({k: v for k, v in rec.timings.items() if k != "total"},
                                            root / "stage_times.png")
    return plots


def _write_intervals(rec: RunRecord, avg: Any, root: Path, plots: dict[str, Path]) -> list[str]:
    """intervals.csv, node_crps.csv and the reliability plot (added to ``plots``); returns report.md's
    interval and ensemble sections (none when no method has intervals)."""
    import pandas as pd

    scored = {m: o.intervals for m, o in rec.outcomes.items() if o.intervals is not None}
    if not scored:
        return []
    target, levels = rec.target.city, list(rec.config.intervals.levels)
    atomic_write_text(root / "intervals.csv", pd.DataFrame(rec.interval_rows()).to_csv(index=False, float_format="%.6g"))
    plots["reliability"] = plot_reliability(scored, root / "reliability.png",
                                            f"{target.name}: interval coverage on the test period")
    lines = _interval_table(scored, levels, avg, rec.config.intervals.calibration)
    crps_nodes = rec.node_crps()
    if crps_nodes:
        atomic_write_text(root / "node_crps.csv", pd.DataFrame(crps_nodes, index=pd.Index(
            target.node_ids, name="node")).to_csv(float_format="%.6g"))
    return lines + ensemble_report_lines(scored, {m: o.ensemble for m, o in rec.outcomes.items()
                                                  if o.ensemble is not None}, levels)


def _header_lines(rec: RunRecord, md_table: str) -> list[str]:
    """report.md's title, the run's settings and versions, and the results table."""
    from gpdiff.experiment.stages import versions

    cfg, target, split, origins = rec.config, rec.target.city, rec.target.split, rec.origins
    v = versions()
    g, w = cfg.generate, cfg.window
    zoo_nodes = f"{len(rec.zoo)} zoo nodes" if rec.zoo is not None else "no zoo: no method needed one"
    return [
        f"# gpdiff run: {target.name}", "",
        f"- target: **{target.name}** ({target.kind}, {target.n_nodes} nodes, {target.interval_minutes} min); "
        f"few-shot days: **{cfg.target_days:g}** (steps {split.train.start}-{split.train.stop}), validation "
        f"steps {split.val.start}-{split.val.stop}, test steps {split.test.start}-{split.test.stop} "
        f"({target.timestamps[split.test.start]:%Y-%m-%d} .. {target.end:%Y-%m-%d}), {origins.size} test windows",
        f"- sources: {', '.join(rec.sources)} ({zoo_nodes})",
        f"- base model: `{cfg.model.name}` / `{cfg.model.preset}` "
        f"({f'{rec.zoo.params.shape[1]} parameters per node' if rec.zoo is not None else 'not trained'}); "
        f"history {w.history}, horizon {w.horizon}, seasonal context `{w.context}` (residual `{cfg.model.residual}`); "
        f"zoo init `{cfg.zoo.init}`; anchor `{cfg.anchor.balance}`-balanced; denoiser reference "
        f"`{cfg.diffusion.reference}`, batches `{cfg.diffusion.balance}`-balanced; "
        f"conditioning `{cfg.diffusion.denoiser.condition}`; sampler "
        f"`{g.sampler}` ({g.num_inference_steps} steps); seed {cfg.seed}",
        "- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- wall time: {rec.timings.get('total', 0):.0f} s for this invocation; the stages' own times add up to "
        f"{sum(t for k, t in rec.timings.items() if k != 'total'):.0f} s, a reused stage counted at the time it first "
        "took (`stage_times.png`)",
        "", "## Test results (original scale; best in bold)", "", md_table, "",
        "MAPE skips zero targets. Every method sees the same windows, scaler and metrics; methods that fine-tune "
        "share one budget and stop early on the validation slice only.", "",
    ]


def _blend_lines(rec: RunRecord, avg: Any) -> list[str]:
    """report.md's table of every blended method alone and blended (none without a blend)."""
    cfg, lines = rec.config, []
    blended = {m: o.result.notes["mae_without_blend"] for m, o in rec.outcomes.items()
               if "mae_without_blend" in o.result.notes}
    if blended:
        lines += [f"Every learned method is blended with {', '.join(f'`{n}`' for n in cfg.blend.naive)} "
                  "(`blend.naive`): per horizon step, the convex weights with the lowest MAE on the validation "
                  "slice (weights in the notes). The same methods alone, average-horizon test MAE:", "",
                  "| method | MAE alone | MAE blended |", "|---|---|---|"]
        lines += [f"| {m} | {alone:.4g} | {avg[m]:.4g} |" for m, alone in blended.items()] + [""]
    return lines


def _notes_lines(rec: RunRecord) -> list[str]:
    """report.md's notes: what the run worked around in the data, and every method's notes."""
    lines: list[str] = []
    notes = {m: o.result.notes for m, o in rec.outcomes.items() if o.result.notes}
    if notes or rec.data_notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in rec.data_notes]
        lines += [f"- `{m}`: " + "; ".join(f"{k}: {_note_value(v)}" for k, v in sorted(n.items()))
                  for m, n in notes.items()]  # sorted: a reused stage reads its notes back in key order
        lines += [""]
    return lines


def _files_lines(root: Path) -> list[str]:
    """report.md's list of the run's files."""
    where = ("in the shared stage cache (`--cache`; `stages.yaml` lists each stage's folder)"
             if (root / "stages.yaml").is_file() else "in this folder")
    return ["## Files", "", "- `config.yaml`: the effective run config", "- `results.csv`, `results.md`",
              "- `intervals.csv`: every method's interval coverage, width, interval score and CRPS per horizon step",
              "- `node_mae.csv`: every target node's test MAE per method (the unit of paired tests)",
              "- `node_crps.csv`: every target node's test CRPS per method (`name:ensemble`: its conformalised "
              "ensemble, with `ensemble.size` > 1)",
              "- `anchor/`, `zoo/`, `prompts/`, `target_prompts/`, `diffusion/`, `generate/`, `methods/<name>/`, "
              f"`blend/<name>/` (with `blend.naive`), {where}: "
              "stage outputs, each with `stage.yaml` (key, config, inputs, code fingerprint, seed, versions, "
              "wall time)", ""]

