"""The forecaster's speed and its multi-step strategy (issue 25).

Three timings, each one subcommand so that ``farm-bench`` can time the whole process, and each
printing its own timing of the step the target is about (after the imports and the load):

    python benchmarks/forecaster.py fit        # fit with the shipped pretrained GPD: 30 nodes, hourly, 3 days
    python benchmarks/forecaster.py forecast   # one day ahead for 1,000 nodes, after load
    python benchmarks/forecaster.py new-node   # parameters for one node the forecaster has never seen

The cities are synthetic (:func:`gpdiff.data.synthetic.synthetic_city`): every bundled city is among
the shipped model's sources, which ``fit`` refuses, and speed does not depend on the values.

One accuracy question, on real data:

    python benchmarks/forecaster.py recursive --pretrained DIR --city melbourne-ped

fits a forecaster on all but the last ``--test-days`` (default 7) days of ``--city`` with a pretrained
GPD that has not seen it (``gpdiff pretrain --sources`` without it), then forecasts one day ahead from
every midnight of the held-out days (the model's own horizon directly, beyond it by feeding forecasts
back) and prints the MAE per horizon step against seasonal naive (the value one day earlier) and
weekly naive, so the table says from which step on the recursion loses to them.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from gpdiff.data.synthetic import synthetic_city
from gpdiff.forecaster import GPD, Forecaster


def _fit(args: argparse.Namespace) -> None:
    gpd = GPD.from_pretrained(args.pretrained)
    city = synthetic_city("bench30", n_nodes=30, days=3, seed=0)
    t = time.perf_counter()
    f = Forecaster.fit(city, gpd)
    print(f"fit: {city.n_nodes} nodes x {city.n_steps} steps in {time.perf_counter() - t:.2f} s "
          f"(validation MAE {f.meta['validation_mae']})")


def _big(tmp: Path, gpd: GPD) -> tuple[Path, pd.DataFrame]:
    city = synthetic_city("bench1000", n_nodes=1000, days=8, seed=1)
    f = Forecaster.fit(city, gpd, finetune={"max_epochs": 1, "steps_per_epoch": 1})  # speed of predict only
    f.save(tmp / "F")
    return tmp / "F", city.to_pandas()


def _forecast(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder, _ = _big(Path(tmp), GPD.from_pretrained(args.pretrained))
        f = Forecaster.load(folder)
        t = time.perf_counter()
        df = f.predict()
        print(f"forecast: {df['node'].nunique()} nodes x {df['step'].max()} steps in {time.perf_counter() - t:.3f} s")


def _new_node(args: argparse.Namespace) -> None:
    gpd = GPD.from_pretrained(args.pretrained)
    city = synthetic_city("bench30", n_nodes=30, days=8, seed=0)
    f = Forecaster.fit(city, gpd, finetune={"max_epochs": 1, "steps_per_epoch": 1})
    wide = city.to_pandas()
    wide["new"] = wide[city.node_ids[0]] * 0.7
    from gpdiff.data.splits import Segment
    from gpdiff.forecaster.forecaster import as_city

    full = as_city(wide, like=f)
    t = time.perf_counter()
    prompts = gpd.prompts(full, Segment(0, full.n_steps))
    import torch

    params = gpd.generate(prompts.take(torch.tensor([full.n_nodes - 1])), seed=0)
    dt = time.perf_counter() - t
    t = time.perf_counter()
    df = f.predict(wide, horizon=1)
    print(f"new node: prompts + generation {dt:.3f} s ({tuple(params.shape)}); predict with it {time.perf_counter() - t:.3f} s "
          f"({df['node'].nunique()} nodes)")


def _recursive(args: argparse.Namespace) -> None:
    from gpdiff.data.catalog import load_city
    from gpdiff.evaluation.metrics import masked_metrics

    city = load_city(args.city)
    spd = city.steps_per_day
    cut = city.n_steps - args.test_days * spd
    if args.forecaster and Path(args.forecaster).exists():
        f = Forecaster.load(args.forecaster)
    else:
        f = Forecaster.fit(city.subset_time(0, cut), args.pretrained, log=print)
        if args.forecaster:
            f.save(args.forecaster)
    rows = {"forecaster": [], "seasonal_naive": [], "weekly_naive": []}
    truth_all, mask_all = [], []
    for day in range(args.test_days):
        origin = cut + day * spd
        df = f.predict(city.subset_time(0, origin), horizon=spd)
        # a node with too little observed history is listed, not forecast: scored by no method here
        pred = df.pivot(index="node", columns="step", values="forecast").reindex(city.node_ids).to_numpy()
        t = origin + np.arange(spd)
        truth_all.append(city.values[t, :, 0].T)
        mask_all.append(city.mask[t].T & ~np.isnan(pred))
        rows["forecaster"].append(pred)
        rows["seasonal_naive"].append(city.values[t - spd, :, 0].T)
        rows["weekly_naive"].append(city.values[t - 7 * spd, :, 0].T)
    truth, mask = np.stack(truth_all, 1), np.stack(mask_all, 1)  # [N, days, H]
    print(f"{args.city}: {args.test_days} origins (midnight), one day ahead, MAE per step "
          f"(the model's horizon is {f.window.horizon}; later steps are recursive)")
    scores = {k: masked_metrics(np.stack(v, 1), truth, mask) for k, v in rows.items()}
    steps = [1, 2, 3, 6, 7, 12, 18, spd] if spd == 24 else sorted({1, f.window.horizon, f.window.horizon + 1, spd // 2, spd})
    print("| step | " + " | ".join(scores) + " |")
    print("|---|" + "---|" * len(scores))
    for s in steps:
        print(f"| {s} | " + " | ".join(f"{m.mae[s - 1]:.4g}" for m in scores.values()) + " |")
    print("| avg | " + " | ".join(f"{m.mae_avg:.4g}" for m in scores.values()) + " |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["fit", "forecast", "new-node", "recursive"])
    ap.add_argument("--pretrained", default=None, help="pretrained GPD folder (default: the one that ships)")
    ap.add_argument("--city", default="melbourne-ped")
    ap.add_argument("--test-days", type=int, default=7)
    ap.add_argument("--forecaster", default=None, help="recursive: keep the fitted forecaster here and reuse it on a rerun")
    args = ap.parse_args()
    {"fit": _fit, "forecast": _forecast, "new-node": _new_node, "recursive": _recursive}[args.what](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
