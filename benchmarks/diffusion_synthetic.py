"""Does the diffusion model learn the prompt -> parameter mapping? A synthetic family with a known answer.

Every node of a synthetic city gets a latent ``z = [z_s, z_t]``: ``z_s`` its standardised
coordinates, ``z_t`` random. Its prompts are smooth maps of the latent (spatial ``tanh(A_s z_s)``,
temporal ``tanh(A_t z_t)``) and its *true* parameters a smooth function of the latent plus small
noise::

    theta_i = theta_0 + scale * rms_j * (h(z_i) @ G_j) + noise * rms_j * eps     (per tensor j)

with ``theta_0`` one base model trained on all nodes' pooled training windows, ``h`` random Fourier
features of ``z`` and ``G_j`` fixed random directions. The denoiser is trained on 80% of the nodes
and generates parameters for the held-out 20% from their prompts alone. Reported:

- relative L2 error of generated vs true parameters, against that of the training nodes' mean
  vector (target: ratio < 0.3);
- validation MAE (original scale) of forecasts with generated, true, mean and random-init
  parameters on the held-out nodes' own windows (target: generated within 10% of true).

Run: ``python benchmarks/diffusion_synthetic.py`` (``--help`` for sizes; ``--conditions all``
compares the five strategies). ``tests/diffusion/test_train.py`` runs a tiny version of the same code.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gpdiff import DiffusionConfig, GenerateConfig, generate, train_denoiser
from gpdiff.data.splits import source_split
from gpdiff.data.synthetic import synthetic_city
from gpdiff.data.windows import CityData
from gpdiff.diffusion import CONDITIONING
from gpdiff.diffusion.schedule import sampling_steps
from gpdiff.evaluation.metrics import masked_mae_torch, masked_metrics
from gpdiff.models import BaseModel, ModelConfig, get_model
from gpdiff.prompts import PromptSet
from gpdiff.zoo.params import ParamCollection, flatten, unflatten


@dataclass
class Family:
    model: BaseModel
    data: CityData
    collection: ParamCollection  # true parameters of every node
    prompts: PromptSet
    train: torch.Tensor  # node indices the denoiser trains on
    test: torch.Tensor  # held-out node indices
    theta0: torch.Tensor  # [P] the pooled model


def train_pooled(model: BaseModel, data: CityData, steps: int = 200, lr: float = 0.01, seed: int = 0) -> torch.Tensor:
    """One parameter set trained on all nodes' training windows (flat ``[P]``)."""
    g = torch.Generator().manual_seed(seed)
    theta = {k: v.clone().requires_grad_(True) for k, v in model.init(1, seed=seed).items()}
    opt = torch.optim.Adam(theta.values(), lr=lr)
    origins = torch.from_numpy(data.origins("train"))
    for _ in range(steps):
        nodes = torch.randint(data.n_nodes, (16,), generator=g)
        o = origins[torch.randint(origins.numel(), (16, 32), generator=g)]
        batch = data.batch(nodes, o)
        pred = model.forward({k: v.expand(16, *v.shape[1:]) for k, v in theta.items()}, batch)
        loss = masked_mae_torch(pred, batch.y, batch.y_mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return flatten({k: v.detach() for k, v in theta.items()}, model.spec())[0]


def build_family(n_nodes: int = 200, model_name: str = "stid", scale: float = 0.3, noise: float = 0.03,
                 prompt_dim: int = 16, n_features: int = 8, days: float = 14, seed: int = 0,
                 pooled_steps: int = 200) -> Family:
    rng = torch.Generator().manual_seed(seed)
    city = synthetic_city("synth", n_nodes=n_nodes, days=days, seed=seed)
    split = source_split(city.n_steps)
    model = get_model(model_name, ModelConfig(preset="small"))
    data = CityData(city, split, history=model.config.history, horizon=model.config.horizon,
                    n_neighbors=model.config.ego_size - 1)
    theta0 = train_pooled(model, data, steps=pooled_steps, seed=seed)

    coords = torch.from_numpy(np.asarray(city.coords, dtype=np.float32))
    z_s = (coords - coords.mean(0)) / coords.std(0)
    z_t = torch.randn(n_nodes, 2, generator=rng)
    z = torch.cat([z_s, z_t], 1)
    spatial = torch.tanh(z_s @ torch.randn(2, prompt_dim, generator=rng) + 0.5 * torch.randn(prompt_dim, generator=rng))
    temporal = torch.tanh(z_t @ torch.randn(2, prompt_dim, generator=rng) + 0.5 * torch.randn(prompt_dim, generator=rng))
    omega = torch.randn(z.shape[1], n_features, generator=rng) * 0.7
    phase = torch.rand(n_features, generator=rng) * 2 * math.pi
    h = torch.sin(z @ omega + phase) / math.sqrt(0.5 * n_features)  # unit variance per direction

    blocks, i = [], 0
    for s in model.spec():
        base = theta0[i : i + s.numel]
        rms = base.square().mean().sqrt().clamp_min(1e-3)
        signal = h @ torch.randn(n_features, s.numel, generator=rng)
        eps = torch.randn(n_nodes, s.numel, generator=rng)
        blocks.append(base + rms * (scale * signal + noise * eps))
        i += s.numel
    params = torch.cat(blocks, 1)
    collection = ParamCollection(params, list(city.node_ids), [city.name] * n_nodes, model.name,
                                 model.config.to_dict(), model.spec())
    prompts = PromptSet(spatial, temporal, list(city.node_ids), [city.name] * n_nodes, {"source": "synthetic"})
    perm = torch.randperm(n_nodes, generator=rng)
    n_train = round(0.8 * n_nodes)
    return Family(model, data, collection, prompts, perm[:n_train].sort().values, perm[n_train:].sort().values,
                  theta0)


@torch.no_grad()
def forecast_mae(model: BaseModel, params: torch.Tensor, data: CityData, nodes: torch.Tensor,
                 segment: str = "val") -> float:
    """Pooled original-scale MAE of node ``nodes[i]`` forecast with ``params[i]`` on its own windows."""
    p = unflatten(params.to(data.device), model.spec())
    preds = [model.forward(p, batch) for _, batch in data.iter_eval(segment, nodes, batch_size=512)]
    pred = data.to_original(torch.cat(preds, 1), nodes)
    truth, mask = data.truth(data.origins(segment), nodes.numpy())
    return masked_metrics(pred, truth, mask).mae_avg


def rel_l2(a: torch.Tensor, truth: torch.Tensor) -> float:
    return float(((a - truth).norm(dim=1) / truth.norm(dim=1)).mean())


def evaluate(family: Family, generated: torch.Tensor) -> dict[str, float]:
    """Parameter and forecast metrics of ``generated`` (rows = held-out nodes) against the truth."""
    true = family.collection.params[family.test]
    mean = family.collection.params[family.train].mean(0, keepdim=True).expand_as(true)
    init = flatten(family.model.init(len(family.test), seed=1), family.model.spec())
    nodes, m, d = family.test, family.model, family.data
    out = {"rel_l2_generated": rel_l2(generated, true), "rel_l2_mean": rel_l2(mean, true)}
    out["rel_l2_ratio"] = out["rel_l2_generated"] / out["rel_l2_mean"]
    for name, p in (("true", true), ("generated", generated), ("mean", mean), ("init", init)):
        out[f"mae_{name}"] = forecast_mae(m, p, d, nodes)
    out["mae_gap"] = out["mae_generated"] / out["mae_true"] - 1
    return out


def run(family: Family, config: DiffusionConfig, sampler: str = "ddim", num_inference_steps: int | None = 50,
        seed: int = 0, progress: bool = False, out: str | None = None) -> dict[str, Any]:
    """Train on the family's training nodes with ``seed`` (reusing a finished run in ``out``), generate for
    the held-out nodes with the same seed, evaluate."""
    t0 = time.time()
    model = train_denoiser(family.collection.take(family.train), family.prompts, config, seed=seed, progress=progress,
                           workdir=out)
    t1 = time.time()
    g = GenerateConfig(sampler, sampling_steps(sampler, model.config.schedule, num_inference_steps), num_samples=1)
    gen = generate(model, family.prompts.select([family.collection.keys()[i] for i in family.test.tolist()]), g,
                   seed=seed)
    t2 = time.time()
    res: dict[str, Any] = evaluate(family, gen.params)
    res.update({"condition": config.denoiser.condition, "train_s": model.info.get("train_seconds", round(t1 - t0, 1)),
                "sample_s": round(t2 - t1, 2), "final_loss": model.info.get("final_loss"),
                "tokens": model.tokenizer.n_tokens, "token_dim": model.tokenizer.token_dim,
                "weights": model.denoiser.n_weights()})
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--model", default="stid")
    ap.add_argument("--conditions", default="pre_inductive", help="comma list, or 'all'")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--d-model", type=int, default=None)
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--token-dim", type=int, default=None)
    ap.add_argument("--prediction", default=None, help="v_prediction (default), epsilon or sample")
    ap.add_argument("--sampler", default="ddim")
    ap.add_argument("--num-inference-steps", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--out", default=None, help="cache denoisers in OUT/<condition> (reused when unchanged)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    conditions = list(CONDITIONING) if args.conditions == "all" else args.conditions.split(",")
    t0 = time.time()
    family = build_family(args.nodes, args.model, seed=args.seed)
    print(f"family: {args.nodes} nodes of {args.model}/small ({family.model.n_params} parameters), "
          f"{len(family.train)} train / {len(family.test)} held out, built in {time.time() - t0:.1f}s")
    results = []
    for cond in conditions:
        cfg = DiffusionConfig.from_preset(args.preset, denoiser={"condition": cond, "d_model": args.d_model,
                                                                 "n_layers": args.layers, "token_dim": args.token_dim},
                                          schedule={"prediction_type": args.prediction}, max_steps=args.max_steps, lr=args.lr,
                                          batch_size=args.batch_size)
        res = run(family, cfg, args.sampler, args.num_inference_steps if args.sampler != "ddpm" else None, args.seed,
                  progress=True, out=f"{args.out}/{cond}" if args.out else None)
        results.append(res)
        print(json.dumps(res))
    print("\n| condition | rel L2 gen | rel L2 mean | ratio | MAE true | MAE gen | gap | MAE mean | MAE init | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['condition']} | {r['rel_l2_generated']:.3f} | {r['rel_l2_mean']:.3f} | {r['rel_l2_ratio']:.3f} | "
              f"{r['mae_true']:.3f} | {r['mae_generated']:.3f} | {100 * r['mae_gap']:+.1f}% | {r['mae_mean']:.3f} | "
              f"{r['mae_init']:.3f} | {r['train_s']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
