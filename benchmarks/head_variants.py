"""What the lag head's parts do on the test windows (issue 28): each run's fine-tuned and zero-shot heads,
changed one part at a time, forecasts recomputed, each node's MAE alone.

    python benchmarks/head_variants.py runs/bench/loco_lags [--methods transfer,gpd]

For every finished run of the bench folder (``runs/*/seed*``) with the lag-aware model:

- **fine-tuning's shared row** (``lags.head``'s last row, :meth:`gpdiff.models.base.BaseModel.pattern_weights`):
  how many nodes' shared level weights fine-tuning moved at all (the others stopped early at their start),
  their median per horizon step, and each method's test MAE with the row as fine-tuned ("as tuned") and
  with it taken out of the rows of the patterns with the week ("week rows as started": what the test
  windows, which have the week, would read had fine-tuning changed only the patterns its days showed);
- **the anchor's level weights** (``transfer_zero_shot``'s closed start): its test MAE as trained, with
  every pattern's weight on the recent level halved, and with it at 0;
- **the network's gates as transferred** (every method's target start closes them,
  :func:`gpdiff.methods.adapt.target_start`): the anchor and the generated parameters as the anchor and
  generate stages saved them, gates open, and GPD fine-tuned where the test step lacks the week but the
  generated parameters, gates open, at every step that has it (what fine-tuning could not learn stays
  as generated; the week's availability per step as weekly naive reads it,
  :func:`gpdiff.evaluation.naive.lag_available`).

Each line: the mean over nodes of each node's test MAE (original units, a flow city's forecasts clipped at
0, as the run scored them), its ratio to weekly naive and to the anchor zero-shot, and the two-sided
Wilcoxon test over nodes (:func:`gpdiff.experiment.scoreboard.paired_test`): nodes lower, p. A few seconds
per run. Reads only what the runs saved; trains nothing.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from alone_paired import SavedRun, complete

from gpdiff.data.city import feasible
from gpdiff.evaluation.metrics import node_mae
from gpdiff.evaluation.naive import lag_available
from gpdiff.experiment.scoreboard import paired_test
from gpdiff.methods.adapt import forecast
from gpdiff.models.base import HEAD, BaseModel
from gpdiff.zoo.anchor import Anchor
from gpdiff.zoo.params import ParamCollection, flatten, unflatten

LEVEL = 0  # the head's column of the recent level
WEEK = 1  # the week lag's bit in a pattern index (lags: one day = bit 0, one week = bit 1)


def with_head(model: BaseModel, flat: torch.Tensor, change: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``flat [N, P]`` with ``lags.head`` replaced by ``change(head)``."""
    p = unflatten(flat.float().clone(), model.spec())
    return flatten({**p, HEAD: change(p[HEAD].clone())}, model.spec())


def week_rows_as_started(model: BaseModel) -> Callable[[torch.Tensor], torch.Tensor]:
    """The head with the shared row's weights subtracted from the own rows of every pattern with the week,
    so those patterns read what they started with; the others are unchanged."""
    def change(head: torch.Tensor) -> torch.Tensor:
        n_p, g = model.n_patterns, model.gate_column
        for pattern in range(n_p):
            if pattern >> WEEK & 1:
                head[:, pattern, :g] -= head[:, n_p, :g]
        return head
    return change


def level_scaled(factor: float) -> Callable[[torch.Tensor], torch.Tensor]:
    def change(head: torch.Tensor) -> torch.Tensor:
        head[:, :, LEVEL] *= factor
        return head
    return change


def report(run: Path, methods: list[str]) -> None:
    saved = SavedRun.open(run)
    model, stages, load = saved.model, saved.stages, saved.method
    if not model.has_head:
        print(f"{run}: not the lag-aware model (window.context {saved.cfg.window.context}); skipped")
        return
    data = saved.data
    origins = data.origins("test")
    truth, mask = data.truth(origins)

    def errors(flat: torch.Tensor) -> np.ndarray:
        return node_mae(predict(flat), truth, mask)

    def predict(flat: torch.Tensor) -> np.ndarray:
        return feasible(forecast(model, flat, data, "test"), data.city.kind)

    weekly = node_mae(feasible(load("weekly_naive").pred, data.city.kind), truth, mask)
    anchor = load("transfer_zero_shot").params
    rows = {"anchor zero-shot": errors(anchor),
            "anchor, level weights halved": errors(with_head(model, anchor, level_scaled(0.5))),
            "anchor, no level weight": errors(with_head(model, anchor, level_scaled(0.0))),
            "anchor, gates as trained": errors(Anchor.load(stages["anchor"]).params.expand(data.n_nodes, -1))}
    generated = predict(ParamCollection.load(Path(stages["generate"]) / "generated.safetensors").params)
    rows["gpd_zero_shot, gates as generated"] = node_mae(generated, truth, mask)
    print(f"\n## {run.parent.name} {run.name}\n")
    for name in methods:
        result = load(name)
        tuned = result.params
        shared = unflatten(tuned.float(), model.spec())[HEAD][:, model.n_patterns, LEVEL]  # [N, H]
        moved = (shared != 0).any(-1)
        print(f"- {name}: fine-tuning moved the shared level weights of {int(moved.sum())} of {moved.numel()} nodes; "
              f"median per step {[round(float(v), 3) for v in shared.median(0).values]}")
        pred = feasible(result.pred, data.city.kind)  # the run's forecasts, recomputed from its parameters
        rows[f"{name}, as tuned"] = node_mae(pred, truth, mask)
        rows[f"{name}, week rows as started"] = errors(with_head(model, tuned, week_rows_as_started(model)))
        if name == "gpd":
            week = lag_available(data, origins, 7)  # [N, B, H]
            print(f"- the test steps with the week: {week[mask.astype(bool)].mean():.0%} of the observed values")
            rows["gpd, the week's steps as generated (gates open)"] = node_mae(np.where(week, generated, pred), truth, mask)
    print("\n| variant | MAE alone | / weekly naive (nodes lower, p) | / anchor zero-shot (nodes lower, p) |")
    print("|---|---|---|---|")
    print(f"| weekly naive | {np.nanmean(weekly):.4g} | | |")
    for label, e in rows.items():
        cells = []
        for ref in (weekly, rows["anchor zero-shot"]):
            t = paired_test(e, ref)
            cells.append(f"{np.nanmean(e) / np.nanmean(ref):.3f} ({t.lower} of {t.n}, p {t.pvalue:.2g})"
                         if e is not ref else "")
        print(f"| {label} | {np.nanmean(e):.4g} | {cells[0]} | {cells[1]} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a bench folder")
    ap.add_argument("--methods", default="transfer,gpd", help="fine-tuned methods, comma-separated")
    args = ap.parse_args()
    methods = args.methods.split(",")
    for run in sorted(args.folder.glob("runs/*/seed*")):
        if complete(run, [*methods, "weekly_naive", "transfer_zero_shot"]):
            report(run, methods)


if __name__ == "__main__":
    main()
