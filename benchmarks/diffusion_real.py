"""Generated parameters for held-out *source* nodes on real data, against simple alternatives.

Needs a trained zoo and prompts of the same cities::

    gpdiff zoo train --cities nyc-taxi,montevideo-bus,melbourne-ped,hangzhou-metro --model stgcn \
        --preset small --out runs/zoo
    gpdiff prompts fit --cities nyc-taxi,montevideo-bus,melbourne-ped,hangzhou-metro --out runs/prompts
    python benchmarks/diffusion_real.py --zoo runs/zoo --prompts runs/prompts

A random ``--holdout`` fraction of every city's nodes is held out; the denoiser trains on the rest
and generates the held-out nodes' parameters from their prompts. Each parameter set is loaded into
the base model and forecasts its own node's validation windows (the zoo's split and scaler;
original-scale MAE). Compared: the zoo's own trained parameters (the ceiling), the generated
ones (one sample, and the mean of ``--samples`` samples), the anchor alone (anchored zoos), the
``knn_residual`` initialisation (the anchor plus a shrunken mean difference of the k nearest training
nodes; k and the shrinkage selected on the training nodes only, as the method does), the nearest
training node in prompt space (retrieval), the mean of the training nodes' parameters, and the random
initialisation.

``--on-knn`` (anchored zoos) makes the denoiser generate a node's difference from its
``knn_residual`` initialisation instead of from the anchor: each training node's target is its
parameters minus the initialisation built from its k nearest *other* training nodes (leave one out),
and a held-out node's parameters are its own initialisation plus the generated difference. A
denoiser that learns nothing then gives the ``knn_residual`` row; the question is whether the prompts
carry anything beyond it.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from gpdiff import DiffusionConfig, GenerateConfig, generate, train_denoiser
from gpdiff.data.catalog import load_city
from gpdiff.data.splits import source_split
from gpdiff.data.windows import CityData
from gpdiff.diffusion.functional import FunctionalLoss
from gpdiff.diffusion.schedule import sampling_steps
from gpdiff.evaluation.metrics import masked_metrics
from gpdiff.methods.knn_residual import holdout_rows, initial, select
from gpdiff.methods.retrieval import nearest_sources
from gpdiff.models import BaseModel, model_from_dict
from gpdiff.prompts import PromptSet
from gpdiff.utils.device import resolve_device
from gpdiff.zoo.params import ParamCollection, flatten, unflatten


@torch.no_grad()
def city_mae(model: BaseModel, params: torch.Tensor, data: CityData, nodes: torch.Tensor) -> tuple[float, int]:
    """(sum of absolute errors, count) of node ``nodes[i]`` forecast with ``params[i]`` on its val windows."""
    p = unflatten(params, model.spec())
    preds = [model.forward(p, batch) for _, batch in data.iter_eval("val", nodes, batch_size=256)]
    pred = data.to_original(torch.cat(preds, 1), nodes)
    truth, mask = data.truth(data.origins("val"), nodes.numpy())
    m = masked_metrics(pred, truth, mask)
    count = int(m.count.sum())
    return m.mae_avg * count, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default="runs/zoo")
    ap.add_argument("--prompts", default="runs/prompts")
    ap.add_argument("--out", default="runs/diffusion_real", help="denoiser folder (reused when unchanged)")
    ap.add_argument("--holdout", type=float, default=0.2)
    ap.add_argument("--condition", default="pre_inductive")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--cfg-dropout", type=float, default=None)
    ap.add_argument("--prediction", default=None, help="v_prediction (default), epsilon or sample")
    ap.add_argument("--reference", default=None, help="auto (default), anchor, mean or none")
    ap.add_argument("--standardize", default=None, help="coordinate (default) or tensor")
    ap.add_argument("--balance", default=None, help="city (default) or proportional")
    ap.add_argument("--functional-weight", type=float, default=None,
                    help="> 0 adds the functional loss (the estimate scored on its node's training windows)")
    ap.add_argument("--functional-windows", type=int, default=None)
    ap.add_argument("--samples", type=int, default=4, help="samples averaged for the 'generated (mean)' row")
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--num-inference-steps", type=int, default=None, help="DDIM / DPM++ steps [20]")
    ap.add_argument("--guidance-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--on-knn", action="store_true",
                    help="generate the difference from the knn_residual initialisation (leave one out), not the anchor")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    zoo = ParamCollection.load(args.zoo)
    prompts = PromptSet.load(args.prompts).select(zoo.keys())
    train, test = holdout_rows(list(zoo.cities), args.holdout, args.seed)
    cfg = DiffusionConfig.from_preset(args.preset, denoiser={"condition": args.condition}, max_steps=args.max_steps,
                                      cfg_dropout=args.cfg_dropout, schedule={"prediction_type": args.prediction},
                                      reference=args.reference, standardize=args.standardize, balance=args.balance,
                                      functional_weight=args.functional_weight,
                                      functional_windows=args.functional_windows)
    print(f"zoo {zoo.model}/{zoo.model_config.get('preset')}: {len(zoo)} nodes of {zoo.city_names()}, "
          f"{zoo.params.shape[1]} parameters; training on {len(train)}, holding out {len(test)}")
    cities = {name: load_city(name) for name in zoo.city_names()}
    model = model_from_dict(zoo.model, zoo.model_config)
    zc = zoo.config
    datas = {}
    for city_name, city in cities.items():
        split = source_split(city.n_steps, zc.get("train", 0.7), zc.get("val", 0.1), zc.get("test", 0.2))
        datas[city_name] = CityData(city, split, history=model.config.history, horizon=model.config.horizon,
                                    n_neighbors=model.config.ego_size - 1, context=model.config.context)
    held = prompts.select([zoo.keys()[i] for i in test.tolist()])
    train_zoo, train_prompts = zoo.take(train), prompts.select([zoo.keys()[i] for i in train.tolist()])
    k, shrink, _ = select(model, train_zoo, train_prompts, list(datas.values()), seed=args.seed)
    knn = initial(train_zoo, train_prompts, held, k, shrink)
    denoiser_zoo = train_zoo
    if args.on_knn:
        if zoo.anchor is None or zoo.n_members > 1:
            ap.error("--on-knn needs an anchored zoo (zoo.init: anchor) with one member per node")
        order = nearest_sources(train_prompts, train_prompts, k=k + 1).reshape(len(train), -1)
        others = torch.stack([row[row != i][:k] for i, row in enumerate(order)])  # leave the node itself out
        loo = zoo.anchor + shrink * (train_zoo.params[others] - zoo.anchor).mean(1)
        denoiser_zoo = replace(train_zoo, params=train_zoo.params - loo + zoo.anchor, metrics={})
    functional = (FunctionalLoss.for_zoo(denoiser_zoo, list(cities.values()), cfg.functional_windows,
                                         resolve_device("auto")) if cfg.functional_weight > 0 else None)
    t0 = time.time()
    dmodel = train_denoiser(denoiser_zoo, prompts, cfg, seed=args.seed, workdir=args.out, functional=functional)
    t1 = time.time()
    steps = sampling_steps(args.sampler, dmodel.config.schedule, None if args.sampler == "ddpm" else args.num_inference_steps)
    g = GenerateConfig(args.sampler, steps, args.guidance_scale, num_samples=1)
    samples = [generate(dmodel, held, g, seed=args.seed + i).params
               for i in range(max(1, args.samples))]
    if args.on_knn:
        samples = [knn + (x - zoo.anchor) for x in samples]
    gen = samples[0]
    t2 = time.time()

    true = zoo.params[test]
    mean = zoo.params[train].mean(0, keepdim=True).expand_as(true)
    init_kind = zc.get("init", "shared_random" if zc.get("shared_init", True) else "independent")
    init = flatten(model.init(len(test), seed=zc.get("seed", 0), shared=init_kind != "independent"), model.spec())
    # retrieval: the training node with the nearest prompt, exactly as the `gpdiff run` baseline picks it
    retrieval = zoo.params[train][nearest_sources(train_prompts, held)]
    methods = {"zoo (trained)": true, "generated": gen, f"generated (mean of {len(samples)})":
               torch.stack(samples).mean(0)}
    if zoo.anchor is not None:
        methods["anchor alone"] = zoo.anchor.reshape(1, -1).expand_as(true)
    methods.update({f"knn residual (k={k}, s={shrink:g})": knn, "retrieval": retrieval, "mean params": mean,
                    "random init": init})

    sums = {m: [0.0, 0] for m in methods}
    per_city: dict[str, dict[str, float]] = {}
    for city_name in zoo.city_names():
        rows = [i for i, r in enumerate(test.tolist()) if zoo.cities[r] == city_name]
        if not rows:
            continue
        data = datas[city_name]
        city = data.city
        where = {n: i for i, n in enumerate(city.node_ids)}
        nodes = torch.tensor([where[zoo.node_ids[test[r]]] for r in rows])
        per_city[city_name] = {}
        for m, p in methods.items():
            s, c = city_mae(model, p[rows], data, nodes)
            sums[m][0] += s
            sums[m][1] += c
            per_city[city_name][m] = s / max(c, 1)
    overall = {m: s / max(c, 1) for m, (s, c) in sums.items()}
    ref = zoo.anchor if zoo.anchor is not None else zoo.params[train].mean(0)
    spread = (true - ref).norm(dim=1).sum()  # summed: a node that kept the anchor has no distance from it
    rel = ((gen - true).norm(dim=1).sum() / spread).item()
    rel_mean = ((mean - true).norm(dim=1).sum() / spread).item()

    print(f"\ntrain {t1 - t0:.0f}s, generate {t2 - t1:.1f}s ({args.sampler}, {steps or 'all'} steps); "
          f"L2 distance to the held-out node's own parameters, relative to its distance from the "
          f"reference point: generated {rel:.3f}, mean {rel_mean:.3f}")
    names = list(methods)
    print("\n| city | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for city_name, row in per_city.items():
        print(f"| {city_name} | " + " | ".join(f"{row[m]:.3f}" for m in names) + " |")
    print("| **all (pooled)** | " + " | ".join(f"{overall[m]:.3f}" for m in names) + " |")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "overall": overall, "per_city": per_city,
                                               "rel_l2": {"generated": rel, "mean": rel_mean},
                                               "train_s": t1 - t0, "generate_s": t2 - t1}, indent=1))


if __name__ == "__main__":
    main()
