"""Fast samplers vs ancestral sampling on the same trained denoiser: time and forecast quality.

Samples parameters for ``--nodes`` nodes (default 500) of the synthetic family of
``benchmarks/diffusion_synthetic.py`` with ancestral DDPM over all 500 training steps, DDIM at 50
steps and DPM-Solver++ at 20 steps, and reports wall time, the DDPM / fast time ratio (target
>= 8x for DDIM-50) and the change in validation MAE of the generated parameters (target: within
2%). A second DDPM run with another seed shows how much the MAE moves by sampling noise alone.

The denoiser (small preset, trained on 80% of the nodes) is cached in ``--out`` and reused.
"""

from __future__ import annotations

import argparse
import time

import torch
from diffusion_synthetic import build_family, forecast_mae

from gpdiff import DiffusionConfig, train_denoiser
from gpdiff.diffusion import generate_tensors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=500)
    ap.add_argument("--out", default="runs/sampler_speed")
    ap.add_argument("--max-steps", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=1024, help="nodes per sampling batch")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    family = build_family(args.nodes, "stid", seed=0)
    cfg = DiffusionConfig.from_preset("small", max_steps=args.max_steps)
    model = train_denoiser(family.collection.take(family.train), family.prompts, cfg, seed=0, workdir=args.out)
    nodes = torch.arange(args.nodes)
    sp, tp = family.prompts.spatial, family.prompts.temporal

    runs = [("ddpm", None, 0), ("ddpm", None, 1), ("ddim", 50, 0), ("dpm++", 20, 0), ("ddim", 20, 0)]
    rows = []
    for sampler, steps, seed in runs:
        t0 = time.perf_counter()
        params = generate_tensors(model, sp, tp, sampler, num_inference_steps=steps, seed=seed,
                                  batch_size=args.batch_size)
        seconds = time.perf_counter() - t0
        mae_all = forecast_mae(family.model, params, family.data, nodes)
        mae_held = forecast_mae(family.model, params[family.test], family.data, family.test)
        rows.append((sampler, steps or cfg.schedule.num_train_timesteps, seed, seconds, mae_all, mae_held))
        print(rows[-1], flush=True)

    true_all = forecast_mae(family.model, family.collection.params, family.data, nodes)
    ref = rows[0]
    print(f"\n{args.nodes} nodes, {model.tokenizer.n_tokens} tokens x {model.tokenizer.token_dim}, "
          f"{model.denoiser.n_weights():,} weights, {torch.get_num_threads()} threads; true-parameter MAE "
          f"{true_all:.3f}")
    print("| sampler | steps | seed | time (s) | speed-up vs DDPM | val MAE (all) | change vs DDPM | val MAE (held out) |")
    print("|---|---|---|---|---|---|---|---|")
    for sampler, steps, seed, sec, mae_all, mae_held in rows:
        print(f"| {sampler} | {steps} | {seed} | {sec:.1f} | {ref[3] / sec:.1f}x | {mae_all:.3f} | "
              f"{100 * (mae_all / ref[4] - 1):+.2f}% | {mae_held:.3f} |")


if __name__ == "__main__":
    main()
