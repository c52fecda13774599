"""Issue 28's targets with the paired test: each method *alone* (before the blend) against the naive
baselines and the anchor zero-shot, per node, pooled over seeds.

    python benchmarks/alone_paired.py runs/bench/loco_lags_s0,runs/bench/loco_lags_s12 [--method gpd]
    python benchmarks/alone_paired.py runs/bench/loco_lags --per-horizon melbourne-ped,hangzhou-metro

The bench scoreboard's paired tests (:func:`gpdiff.experiment.scoreboard.paired_test`) are on the
blended forecasts; the issue asks whether GPD fine-tuned *alone* beats both naive baselines and the
lag-aware anchor zero-shot (``transfer_zero_shot``) on at least 4 of 5 targets. For every run of the
bench folders (comma-separated, e.g. a suite run seed by seed) this reads the methods' stages of the
run (``stages.yaml``: their parameters, or the naive forecasts), recomputes the test forecasts as the
run scored them (original units, a flow city's clipped at 0), and takes each node's masked test MAE
(:func:`gpdiff.evaluation.metrics.node_mae`). Per target, each node's MAE is averaged over the seeds
both methods have, then compared with the two-sided Wilcoxon signed-rank test over nodes (scipy).

"beats": p < 0.05 and both the mean over nodes and the typical node (the median difference) are
lower; "loses": p < 0.05 and both are higher; "mixed": p < 0.05 but the mean and the typical node
disagree (a few large nodes decide the mean); "ties": p >= 0.05. The MAE columns are means over nodes
of each node's MAE, which weigh nodes equally (the run's MAE pools every value, so it differs a little). A few seconds per run (one forecast pass over the test windows per method).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gpdiff.data.city import feasible
from gpdiff.data.windows import CityData
from gpdiff.evaluation.metrics import masked_metrics, node_mae
from gpdiff.experiment import pipeline
from gpdiff.experiment.runconfig import RunConfig
from gpdiff.experiment.scoreboard import paired_test
from gpdiff.methods import MethodResult
from gpdiff.models.base import BaseModel
from gpdiff.utils.io import read_yaml

REFERENCES = ("seasonal_naive", "weekly_naive", "transfer_zero_shot")


def node_errors(run: Path, methods: list[str]) -> dict[str, np.ndarray]:
    """Per-node test MAE ``[N]`` of each of ``methods`` alone in the run folder ``run``."""
    return {name: node_mae(pred, truth, mask) for name, (pred, truth, mask) in forecasts(run, methods).items()}


def horizon_errors(run: Path, methods: list[str]) -> dict[str, np.ndarray]:
    """Test MAE per horizon step ``[H]`` (every observed value of the step pooled) of each of ``methods`` alone."""
    return {name: masked_metrics(pred, truth, mask).mae for name, (pred, truth, mask) in forecasts(run, methods).items()}


@dataclass
class SavedRun:
    """A finished run folder read back on the CPU: its config, base model and stages (``stages.yaml``), the
    target's data under the run's split (loaded on first use) and each method's saved result."""

    folder: Path
    cfg: RunConfig
    model: BaseModel
    stages: dict[str, str]

    @classmethod
    def open(cls, folder: Path) -> SavedRun:
        cfg = RunConfig.from_yaml(folder / "config.yaml", {"device": "cpu"})
        return cls(folder, cfg, cfg.model.build(cfg.window), read_yaml(folder / "stages.yaml"))

    @cached_property
    def data(self) -> CityData:
        return pipeline.target_data(self.cfg, pipeline.load_cities(self.cfg), torch.device("cpu"))

    def method(self, name: str) -> MethodResult:
        """Method ``name``'s stage output, its test forecasts recomputed from its parameters as the run did."""
        return MethodResult.load(Path(self.stages[f"methods/{name}"]) / "output.safetensors",
                                 lambda params: pipeline.recompute_forecasts(name, params, self.model, self.data))


def forecasts(run: Path, methods: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(forecast, truth, mask)``, each ``[N, B, H]``, of each of ``methods`` alone on the run's test windows."""
    saved = SavedRun.open(run)
    truth, mask = saved.data.truth(saved.data.origins("test"))
    return {name: (feasible(saved.method(name).pred, saved.data.city.kind), truth, mask) for name in methods}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folders", help="bench folders, comma-separated")
    ap.add_argument("--method", default="gpd")
    ap.add_argument("--per-horizon", default="", help="comma-separated targets: print each one's MAE alone per "
                    "horizon step for the method, the references, transfer and pooled_linear (seeds averaged)")
    args = ap.parse_args()
    methods = [args.method, *REFERENCES]
    if args.per_horizon:
        print_horizons(args.folders.split(","), args.per_horizon.split(","),
                       list(dict.fromkeys([*methods, "transfer", "pooled_linear"])))
        return
    per: dict[str, dict[str, list[np.ndarray]]] = {}
    for folder in args.folders.split(","):
        for run in sorted(Path(folder).glob("runs/*/seed*")):
            if not complete(run, methods):  # a run still going
                continue
            errors = node_errors(run, methods)
            for name, e in errors.items():
                per.setdefault(run.parent.name, {}).setdefault(name, []).append(e)
            print(f"[alone] {run}: " + ", ".join(f"{m} {np.nanmean(e):.4g}" for m, e in errors.items()), flush=True)
    rows = []
    for target, by in sorted(per.items()):
        mine = np.mean(by[args.method], axis=0)
        for ref in REFERENCES:
            other = np.mean(by[ref], axis=0)
            t = paired_test(mine, other, args.method, ref)
            ratio = np.nanmean(mine) / np.nanmean(other)
            verdict = ("ties" if not t.pvalue < 0.05 else "beats" if ratio < 1 and t.median_diff < 0
                       else "loses" if ratio > 1 and t.median_diff > 0 else "mixed")
            rows.append({"target": target, "seeds": len(by[args.method]), "vs": ref,
                         f"{args.method} alone": f"{np.nanmean(mine):.4g}", "other alone": f"{np.nanmean(other):.4g}",
                         "ratio": f"{ratio:.3f}", "nodes lower": f"{t.lower} of {t.n}", "p": f"{t.pvalue:.2g}",
                         "verdict": verdict})
    print(pd.DataFrame(rows).to_markdown(index=False))


def complete(run: Path, methods: list[str]) -> bool:
    """Whether ``run`` has finished the stages of every one of ``methods``."""
    path = run / "stages.yaml"
    stages = (read_yaml(path) or {}) if path.is_file() else {}
    return all(f"methods/{m}" in stages for m in methods)


def print_horizons(folders: list[str], targets: list[str], methods: list[str]) -> None:
    for target in targets:
        runs = [r for f in folders for r in sorted(Path(f).glob(f"runs/{target}/seed*")) if complete(r, methods)]
        per = [horizon_errors(r, methods) for r in runs]
        table = pd.DataFrame({m: np.mean([p[m] for p in per], axis=0) for m in methods})
        table.index = [f"step {h + 1}" for h in range(len(table))]
        print(f"\n{target} ({len(runs)} seed(s)), MAE alone per horizon step:\n")
        print(table.T.to_markdown(floatfmt=".4g"))


if __name__ == "__main__":
    main()
