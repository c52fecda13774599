"""The scoreboard of a suite: every run's results in one table, summaries people read at a glance.

Written into the suite's output folder by :func:`write_scoreboard`:

- ``scoreboard.csv``: experiment, target, variant, seed, method, horizon, mae, rmse, mape (every run);
- ``node_mae.csv``: experiment, seed, method, node, mae (every target node's test MAE);
- ``timings.csv``: experiment, seed, stage, wall_s, folder (every run's stages; a stage shared by
  several runs has one folder and was computed once);
- ``intervals.csv``: experiment, seed, method, level, coverage, width, interval_score, crps (every
  run's prediction intervals, averaged over the horizon; runs from before intervals have none; with
  ``ensemble.size`` > 1 also ``name:ensemble`` rows and the members' ``crps_ensemble``);
- ``node_crps.csv``: experiment, seed, method, node, crps (every target node's test CRPS);
- ``scoreboard.md``: per experiment, mean +- std over seeds of the average-horizon MAE of every
  method, its rank, the best baseline and GPD's ratio to it; the paired test of GPD against the
  best baseline; an overall table of mean ranks and GPD's wins / ties / losses against each
  baseline; the intervals' coverage and CRPS per method;
- ``mae_ratio_heatmap.png`` (MAE / seasonal-naive MAE, method x experiment) and
  ``mae_per_horizon.png`` (one panel per experiment).

A *baseline* is every method whose name does not start with ``gpd``. The paired test is the
Wilcoxon signed-rank test (scipy) over the target's nodes: each node's test MAE, averaged over the
seeds, under GPD and under the best baseline; two-sided, nodes without observed targets dropped.
A tie is a mean MAE within ``TIE`` (1%) of the other's. The CRPS of the intervals is compared the
same way: GPD's mean CRPS over seeds against the baseline with the lowest, and the same Wilcoxon test
over nodes of each node's CRPS averaged over the seeds (:func:`crps_tests`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from gpdiff.experiment.report import table
from gpdiff.utils.figures import save_figure
from gpdiff.utils.io import atomic_write_text, read_yaml
from gpdiff.utils.plotstyle import figure_legend_outside, method_style

if TYPE_CHECKING:
    from gpdiff.experiment.runconfig import RunConfig

GPD = "gpd"
TIE = 0.01
ALPHA = 0.05


@dataclass
class Experiment:
    """One run of a suite."""

    label: str  # target, then the grid values that differ ("nyc-taxi" or "nyc-taxi window.horizon=12")
    target: str
    variant: str  # the grid combination ("" without a grid)
    seed: int
    config: RunConfig

    @property
    def folder(self) -> str:
        return f"{self.label.replace(' ', '_').replace('/', '-')}/seed{self.seed}"


@dataclass
class PairedTest:
    """Wilcoxon signed-rank test of ``a`` against ``b`` over nodes."""

    a: str
    b: str
    n: int  # nodes with a finite MAE under both
    median_diff: float  # median of a - b (negative: a is better)
    pvalue: float
    lower: int = 0  # nodes where a's MAE is lower than b's

    def verdict(self, alpha: float = ALPHA) -> str:
        """The test's reading. It is about the typical node: a few large nodes can make the mean MAE
        disagree, which is why the scoreboard prints both."""
        if not np.isfinite(self.pvalue):
            return "too few nodes to test"
        if self.pvalue >= alpha:
            return f"no significant difference (p = {self.pvalue:.3g})"
        way = "better" if self.median_diff < 0 else "worse"
        return (f"{self.a} {way} than {self.b} on the typical node ({self.lower} of {self.n} nodes lower; "
                f"p = {self.pvalue:.3g})")


def paired_test(a: np.ndarray, b: np.ndarray, name_a: str = "a", name_b: str = "b") -> PairedTest:
    """Two-sided Wilcoxon signed-rank test of per-node errors ``a`` vs ``b`` (``[N]``, NaN dropped)."""
    from scipy.stats import wilcoxon

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    lower = int((d < 0).sum())
    if d.size < 2 or not np.any(d != 0):
        return PairedTest(name_a, name_b, int(d.size), float(np.median(d)) if d.size else math.nan, math.nan, lower)
    p = float(wilcoxon(a[ok], b[ok], alternative="two-sided").pvalue)
    return PairedTest(name_a, name_b, int(d.size), float(np.median(d)), p, lower)


# --------------------------------------------------------------------------- collect
def collect_intervals(experiments: Sequence[Experiment]) -> pd.DataFrame:
    """The horizon-averaged rows of every finished run's ``intervals.csv`` (runs made before intervals
    existed have none and are skipped), with experiment, seed and the run's ``intervals.calibration``."""
    frames = []
    for e in experiments:
        f = Path(e.config.out) / "intervals.csv"
        if f.is_file():
            df = pd.read_csv(f, dtype={"horizon": str})
            frames.append(df[df["horizon"] == "avg"].assign(experiment=e.label, seed=e.seed,
                                                            calibration=e.config.intervals.calibration))
    cols = ["experiment", "seed", "method", "level", "coverage", "width", "interval_score", "crps"]
    if any("crps_ensemble" in f for f in frames):  # runs with ensembles (gpdiff.evaluation.ensemble)
        cols.append("crps_ensemble")
    cols.append("calibration")
    return pd.concat(frames).reindex(columns=cols).reset_index(drop=True) if frames else pd.DataFrame(columns=cols)


def collect_node_crps(experiments: Sequence[Experiment]) -> pd.DataFrame:
    """Every finished run's per-node test CRPS (its ``node_crps.csv``; runs from before it have none):
    experiment, seed, method, node, crps."""
    frames = []
    for e in experiments:
        f = Path(e.config.out) / "node_crps.csv"
        if f.is_file():
            per = pd.read_csv(f, dtype={"node": str}).melt(id_vars="node", var_name="method", value_name="crps")
            frames.append(per.assign(experiment=e.label, seed=e.seed))
    cols = ["experiment", "seed", "method", "node", "crps"]
    return pd.concat(frames)[cols].reset_index(drop=True) if frames else pd.DataFrame(columns=cols)


def crps_tests(iv: pd.DataFrame, node_crps: pd.DataFrame) -> dict[str, list[tuple[PairedTest, float]]]:
    """Per experiment, for ``gpd`` (and ``gpd:ensemble`` where the runs had ensembles): the paired test
    of its per-node CRPS (mean over seeds) against the baseline with the lowest mean CRPS (every method
    not starting with ``gpd``, its conformalised ensemble included), and its mean-CRPS ratio to it."""
    out: dict[str, list[tuple[PairedTest, float]]] = {}
    for exp in iv["experiment"].unique():
        e = iv[(iv["experiment"] == exp) & (iv["level"] == iv["level"].min())]
        crps = e.groupby("method", sort=False)["crps"].mean()
        others = crps[~crps.index.str.startswith("gpd")].dropna()
        per = node_crps[node_crps["experiment"] == exp].groupby(["method", "node"])["crps"].mean()
        if others.empty or per.empty:
            continue
        base = str(others.idxmin())
        for g in (GPD, GPD + ":ensemble"):
            if g in crps.index and g in per.index and base in per.index:
                a = per.loc[g]
                out.setdefault(exp, []).append((paired_test(a.to_numpy(), per.loc[base].reindex(a.index).to_numpy(),
                                                            g, base), float(crps[g] / others[base])))
    return out


def intervals_markdown(iv: pd.DataFrame, node_crps: pd.DataFrame | None = None) -> str:
    """Per experiment and method: coverage of each interval level and CRPS, mean ± std over seeds, and
    GPD's CRPS ratio to the best other method's, with the paired test over nodes when ``node_crps``
    (:func:`collect_node_crps`) has the runs' per-node CRPS."""
    if iv.empty:
        return ""
    levels = sorted(iv["level"].unique())
    when = {"validation": "calibrated on the target's validation day",
            "daily": "calibrated on the target's validation day for the first test day and on the day before for "
                     "every later one (`intervals.calibration: daily`)"}
    said = [when.get(c, c) for c in iv.get("calibration", pd.Series(["validation"])).fillna("validation").unique()]
    lines = ["## Prediction intervals", "", f"Split conformal intervals {'; or '.join(said)} "
             "(`gpdiff.evaluation.intervals`): observed coverage on the test period and the CRPS of the median and the interval "
             "bounds, averaged over the horizon steps, mean ± std over seeds.", ""]
    for exp in iv["experiment"].unique():
        e = iv[iv["experiment"] == exp]
        crps = e[e["level"] == levels[0]].groupby("method", sort=False)["crps"].agg(["mean", "std"])
        rows = []
        for m in crps.index:
            row: dict[str, Any] = {"method": m}
            for v in levels:
                c = e[(e["method"] == m) & (e["level"] == v)]["coverage"]
                row[f"coverage {v:.0%}"] = f"{c.mean():.1%} ± {0 if len(c) < 2 else c.std():.1%}"
            row["CRPS"] = f"{_fmt(crps.loc[m, 'mean'])} ± {_fmt(0 if np.isnan(crps.loc[m, 'std']) else crps.loc[m, 'std'])}"
            rows.append(row)
        lines += [f"### {exp}", "", table(rows, fmt="github"), ""]
        others = crps[~crps.index.str.startswith("gpd")]
        tests = crps_tests(iv, node_crps).get(exp, []) if node_crps is not None and not node_crps.empty else []
        for t, ratio in tests:
            lines += [f"`{t.a}`'s CRPS / the best baseline's (`{t.b}`): {ratio:.3f}. Paired test over {t.n} nodes "
                      f"(Wilcoxon signed-rank, node CRPS averaged over seeds; median difference {_fmt(t.median_diff)}): "
                      f"{t.verdict()}.", ""]
        if not tests and GPD in crps.index and not others.empty:
            best = others["mean"].idxmin()
            lines += [f"GPD's CRPS / the best other method's (`{best}`): {crps.loc[GPD, 'mean'] / others.loc[best, 'mean']:.3f}.",
                      ""]
    return "\n".join(lines)


def collect(experiments: Sequence[Experiment]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(results, per-node MAE, stage timings) of every finished run, read from the run folders."""
    results, nodes, timings = [], [], []
    for e in experiments:
        run = Path(e.config.out)
        keys = {"experiment": e.label, "target": e.target, "variant": e.variant, "seed": e.seed}
        df = pd.read_csv(run / "results.csv", dtype={"horizon": str})
        results.append(df.assign(**keys))
        per_node = pd.read_csv(run / "node_mae.csv", dtype={"node": str}).melt(id_vars="node", var_name="method",
                                                                                value_name="mae")
        nodes.append(per_node.assign(experiment=e.label, seed=e.seed))
        stages = read_yaml(run / "stages.yaml") if (run / "stages.yaml").is_file() else {}
        for stage, folder in (stages or {}).items():
            info = read_yaml(Path(folder) / "stage.yaml") or {}
            timings.append({"experiment": e.label, "seed": e.seed, "stage": stage,
                            "wall_s": float(info.get("wall_s", math.nan)), "folder": str(folder)})
    cols = ["experiment", "target", "variant", "seed", "method", "horizon", "mae", "rmse", "mape"]
    return (pd.concat(results)[cols].reset_index(drop=True),
            pd.concat(nodes)[["experiment", "seed", "method", "node", "mae"]].reset_index(drop=True),
            pd.DataFrame(timings, columns=["experiment", "seed", "stage", "wall_s", "folder"]))


# --------------------------------------------------------------------------- summaries
def summary(results: pd.DataFrame) -> pd.DataFrame:
    """Per experiment and method: mean, std (over seeds; 0 for one seed), seeds, rank of the mean
    average-horizon MAE (1 = best)."""
    avg = results[results["horizon"] == "avg"]
    g = avg.groupby(["experiment", "method"], sort=False)["mae"]
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1).fillna(0.0), "seeds": g.count()}).reset_index()
    out["rank"] = out.groupby("experiment")["mean"].rank(method="min")
    return out


def best_baseline(summ: pd.DataFrame, experiment: str) -> str | None:
    rows = summ[(summ["experiment"] == experiment) & ~summ["method"].str.startswith("gpd")]
    return None if rows.empty else str(rows.loc[rows["mean"].idxmin(), "method"])


def experiment_tests(summ: pd.DataFrame, nodes: pd.DataFrame) -> dict[str, PairedTest]:
    """The paired test of ``gpd`` against each experiment's best baseline (per-node MAE, mean over seeds)."""
    out = {}
    for exp in summ["experiment"].unique():
        base = best_baseline(summ, exp)
        if base is None or GPD not in set(summ[summ["experiment"] == exp]["method"]):
            continue
        per = nodes[nodes["experiment"] == exp].groupby(["method", "node"])["mae"].mean()
        a, b = per.loc[GPD], per.loc[base]
        out[exp] = paired_test(a.to_numpy(), b.reindex(a.index).to_numpy(), GPD, base)
    return out


def wins(summ: pd.DataFrame) -> pd.DataFrame:
    """Mean rank of every method over experiments, and GPD's wins / ties / losses against each."""
    rows = []
    experiments = list(summ["experiment"].unique())
    mean = summ.pivot(index="experiment", columns="method", values="mean")
    for method in dict.fromkeys(summ["method"]):
        row = {"method": method, "mean rank": float(summ[summ["method"] == method]["rank"].mean())}
        if GPD in mean and method != GPD:
            w = t = lo = 0
            for exp in experiments:
                g, m = mean.loc[exp, GPD], mean.loc[exp, method]
                if not (np.isfinite(g) and np.isfinite(m)):
                    continue
                if abs(g - m) <= TIE * m:
                    t += 1
                elif g < m:
                    w += 1
                else:
                    lo += 1
            row["gpd wins / ties / losses"] = f"{w} / {t} / {lo}"
        else:
            row["gpd wins / ties / losses"] = "-"
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(x: float) -> str:
    return f"{x:.4g}" if np.isfinite(x) else "-"


def scoreboard_markdown(results: pd.DataFrame, nodes: pd.DataFrame, timings: pd.DataFrame, title: str) -> str:
    summ = summary(results)
    tests = experiment_tests(summ, nodes)
    seeds = sorted(int(s) for s in results["seed"].unique())
    lines = [f"# {title}", "", f"{results['experiment'].nunique()} experiment(s) x seeds {seeds}; test MAE averaged "
             "over the horizon, mean ± std over seeds (original units of each target); rank 1 = best.", ""]
    lines += ["## Overall", "", table(wins(summ).to_dict("records"), fmt="github", floatfmt=".2f"), "",
              f"Mean rank over experiments (1 = best). `gpd wins / ties / losses`: experiments where `gpd`'s mean "
              f"MAE is lower than / within {TIE:.0%} of / higher than the method's.", ""]
    for exp in summ["experiment"].unique():
        s = summ[summ["experiment"] == exp]
        base = best_baseline(summ, exp)
        base_mae = float(s[s["method"] == base]["mean"].iloc[0]) if base else math.nan
        rows = [{"method": r.method, "MAE": f"{_fmt(r.mean)} ± {_fmt(r.std)}", "seeds": int(r.seeds),
                 "rank": int(r.rank), "ratio to best baseline": _fmt(r.mean / base_mae) if base else "-"}
                for r in s.itertuples()]
        lines += [f"## {exp}", "", table(rows, fmt="github"), ""]
        if base:
            line = f"Best baseline: `{base}`."
            if exp in tests:
                t = tests[exp]
                line += (f" Paired test of `gpd` against it over {t.n} nodes (Wilcoxon signed-rank, node MAE "
                         f"averaged over seeds; median difference {_fmt(t.median_diff)}): {t.verdict()}.")
                g = float(s[s["method"] == GPD]["mean"].iloc[0])
                if np.isfinite(t.pvalue) and t.pvalue < ALPHA and (t.median_diff < 0) != (g < base_mae):
                    line += (" The mean MAE says the opposite: a minority of nodes with large errors outweighs "
                             "the typical node.")
            lines += [line, ""]
    if not timings.empty:
        own = timings.drop_duplicates("folder").groupby(["stage"], sort=False)["wall_s"].agg(["mean", "count"])
        own = own.reset_index()
        lines += ["## Stage wall time", "", "Mean wall seconds of each stage where it was computed (a stage shared "
                  "between runs is computed once):", "",
                  table([{"stage": r.stage, "mean s": _fmt(r.mean), "computed": int(r.count)} for r in own.itertuples()],
                        fmt="github"), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots
def plot_ratio_heatmap(results: pd.DataFrame, path: Path) -> Path | None:
    """MAE / seasonal-naive MAE (mean over seeds) as a method x experiment heatmap."""
    from gpdiff.utils.figures import _figure

    summ = summary(results)
    mean = summ.pivot(index="method", columns="experiment", values="mean")
    if "seasonal_naive" not in mean.index:
        return None
    mean = mean.loc[list(dict.fromkeys(summ["method"])), list(dict.fromkeys(summ["experiment"]))]
    ratio = mean / mean.loc["seasonal_naive"]
    fig, ax = _figure(figsize=(max(5.5, 2.4 + 1.1 * ratio.shape[1]), 1.4 + 0.45 * ratio.shape[0]))
    vals = ratio.to_numpy(dtype=float)
    lim = max(1.05, float(np.nanmax(np.abs(np.log2(vals))))) if np.isfinite(vals).any() else 1.0
    im = ax.imshow(np.log2(vals), cmap="RdYlGn_r", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(ratio.shape[1]), ratio.columns, rotation=30, ha="right")
    ax.set_yticks(range(ratio.shape[0]), ratio.index)
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            ax.text(j, i, _fmt(vals[i, j]), ha="center", va="center", fontsize=8)
    fig.colorbar(im, ax=ax, label="log2(MAE / seasonal naive)")
    ax.set_title("test MAE / seasonal naive (< 1 beats it)", fontsize=10)
    return save_figure(fig, path)


def plot_horizons(results: pd.DataFrame, path: Path) -> Path:
    """MAE per horizon step (mean over seeds), one panel per experiment."""
    from gpdiff.utils.figures import _figure

    steps = results[results["horizon"] != "avg"].assign(step=lambda d: d["horizon"].astype(int))
    exps = list(dict.fromkeys(steps["experiment"]))
    cols = min(3, len(exps))
    rows = math.ceil(len(exps) / cols)
    fig, axes = _figure(rows, cols, figsize=(4.6 * cols, 3.4 * rows), squeeze=False)
    for ax, exp in zip(axes.flat, exps):
        d = steps[steps["experiment"] == exp].groupby(["method", "step"], sort=False)["mae"].mean().reset_index()
        for method in dict.fromkeys(d["method"]):
            m = d[d["method"] == method]
            ax.plot(m["step"], m["mae"], ms=4, label=method, **method_style(str(method)))
        ax.set_title(exp, fontsize=10)
        ax.set_xticks(sorted(d["step"].unique()))
        ax.set_xlabel("horizon step")
        ax.set_ylabel("test MAE")
    for ax in list(axes.flat)[len(exps):]:
        ax.axis("off")
    figure_legend_outside(fig, axes.flat, fontsize=7)  # one legend for every panel, outside them all
    return save_figure(fig, path)


def write_scoreboard(out: Path, experiments: Sequence[Experiment], wall: dict[str, float] | None = None) -> Path:
    """Write every scoreboard file (module docstring) into ``out``; returns ``scoreboard.md``."""
    results, nodes, timings = collect(experiments)
    atomic_write_text(out / "scoreboard.csv", results.to_csv(index=False, float_format="%.6g"))
    atomic_write_text(out / "node_mae.csv", nodes.to_csv(index=False, float_format="%.6g"))
    if wall:
        runs = pd.DataFrame([{"experiment": e.label, "seed": e.seed, "wall_s": round(wall[e.folder], 1)}
                             for e in experiments if e.folder in wall])  # the runs of this call
        atomic_write_text(out / "run_times.csv", runs.to_csv(index=False))
    atomic_write_text(out / "timings.csv", timings.to_csv(index=False, float_format="%.6g"))
    plots = [("MAE ratio to seasonal naive", plot_ratio_heatmap(results, out / "mae_ratio_heatmap.png")),
             ("MAE per horizon", plot_horizons(results, out / "mae_per_horizon.png"))]
    iv = collect_intervals(experiments)
    if not iv.empty:
        atomic_write_text(out / "intervals.csv", iv.to_csv(index=False, float_format="%.6g"))
    node_crps = collect_node_crps(experiments)
    if not node_crps.empty:
        atomic_write_text(out / "node_crps.csv", node_crps.to_csv(index=False, float_format="%.6g"))
    md = scoreboard_markdown(results, nodes, timings, f"gpdiff bench: {out.name}")
    md += ("\n" + intervals_markdown(iv, node_crps)) if not iv.empty else ""
    md += "\n## Plots\n\n" + "\n\n".join(f"![{title}]({p.name})" for title, p in plots if p is not None) + "\n"
    return atomic_write_text(out / "scoreboard.md", md)
