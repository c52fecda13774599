"""How much a node's own parameters beat the shared anchor on the *source* cities (issue 28): the room
GPD has over the anchor zero-shot if the diffusion model generated each target node's zoo model exactly.

    python benchmarks/zoo_gain.py runs/bench/loco_lags_det [--split test] [--seeds 0] [--targets hangzhou-metro]

GPD generates one base model per target node, trained to mimic the zoo: one model per source node,
fine-tuned from the anchor on months of that node's data (``gpdiff.zoo.train``), with every lag
there. If those per-node models forecast their own nodes barely better than the anchor, a generated
(or fine-tuned) node model cannot beat the anchor by more on a new city either, whatever the prompts.

For each zoo of the bench folder's finished runs (one per source set, ``stages.yaml``'s ``zoo``), this
forecasts every source node's ``--split`` windows (``test``: the last 20% of each source city, which
neither the anchor nor the zoo's early stopping read) with the anchor and with the node's zoo model,
and prints per source city: the mean over nodes of each node's MAE (original units), the ratio, the
share of nodes the zoo model improves, the nodes whose zoo model stopped at the anchor (best epoch 0),
the two-sided Wilcoxon test over nodes (:func:`gpdiff.experiment.scoreboard.paired_test`) and the
ratio per horizon step. About a minute per zoo on 2 CPU cores; trains nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gpdiff.evaluation.metrics import masked_metrics, node_mae
from gpdiff.experiment import pipeline
from gpdiff.experiment.runconfig import RunConfig
from gpdiff.experiment.scoreboard import paired_test
from gpdiff.utils.io import read_yaml
from gpdiff.zoo.nodetrain import forecast_windows
from gpdiff.zoo.params import unflatten
from gpdiff.zoo.sourcepool import prepare_cities
from gpdiff.zoo.train import load_zoo


def zoo_rows(run: Path, folder: Path, split: str) -> list[dict[str, object]]:
    """One row per source city of the run's zoo (the stage ``folder``): the anchor's and the zoo models'
    MAE on ``split``."""
    cfg = RunConfig.from_yaml(run / "config.yaml", {"device": "cpu"})
    collection = load_zoo(folder)
    if collection.anchor is None:
        raise SystemExit(f"{folder}: the zoo was not fine-tuned from an anchor (zoo.init {cfg.zoo.init}); nothing to compare.")
    model = cfg.model.build(cfg.window)
    data = prepare_cities(pipeline.load_cities(cfg).sources, cfg.window, cfg.source_split, model)
    cities = np.asarray(collection.cities)
    rows = []
    for d in data:
        own = torch.from_numpy(cities == d.city.name)  # the city's rows, in its node order
        n = int(own.sum())
        zoo = collection.params[own].float()
        anchor = collection.anchor.float().expand(n, -1)
        best_epoch = collection.metrics["best_epoch"][own]
        origins = d.origins(split)
        truth, mask = d.truth(origins)
        pred = {name: forecast_windows(model, unflatten(p.clone(), model.spec()), d, origins, model.config.in_channels)
                for name, p in (("anchor", anchor), ("zoo", zoo))}
        err = {name: node_mae(p, truth, mask) for name, p in pred.items()}
        t = paired_test(err["zoo"], err["anchor"], "zoo", "anchor")
        per_step = masked_metrics(pred["zoo"], truth, mask).mae / masked_metrics(pred["anchor"], truth, mask).mae
        rows.append({"sources of": run.parent.name, "seed": run.name, "city": d.city.name, "nodes": n,
                     "anchor": f"{np.nanmean(err['anchor']):.4g}", "zoo": f"{np.nanmean(err['zoo']):.4g}",
                     "zoo / anchor": f"{np.nanmean(err['zoo']) / np.nanmean(err['anchor']):.3f}",
                     "nodes better": f"{t.lower} of {t.n}", "at the anchor": int((best_epoch == 0).sum()),
                     "p": f"{t.pvalue:.2g}", "per step": "/".join(f"{r:.3f}" for r in per_step)})
        print(f"[zoo_gain] {run} {d.city.name}: anchor {rows[-1]['anchor']}, zoo {rows[-1]['zoo']}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="a bench folder (runs/<target>/seed<k>)")
    ap.add_argument("--split", default="test", choices=["val", "test"], help="the source cities' windows scored")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    ap.add_argument("--targets", default="*", help="comma-separated targets whose sources' zoo to score (default all)")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    rows, seen = [], set()
    for seed in args.seeds.split(","):
        runs = [r for t in args.targets.split(",") for r in sorted(Path(args.folder).glob(f"runs/{t}/seed{seed}"))]
        for run in runs:
            stages = (read_yaml(run / "stages.yaml") or {}) if (run / "stages.yaml").is_file() else {}
            zoo = stages.get("zoo")
            if zoo is None or zoo in seen:  # unfinished, or two targets with the same sources share one zoo
                continue
            seen.add(zoo)
            rows += zoo_rows(run, Path(zoo), args.split)
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
