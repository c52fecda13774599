"""Does the diversity of generated parameters survive fine-tuning? Ensembles of fine-tuned members.

Reads the seed-0 runs of a finished ``gpdiff bench`` folder (its stages: the target prompts, the
denoiser, the anchor, zoo and source prompts, and the ``gpd`` / ``knn_residual`` / ``transfer`` outputs) and, for
every target, fine-tunes
``--members`` members per method with the run's fine-tuning budget and averages their test forecasts:

- ``gpd``: member i starts from its own generated parameters (the mean of 4 DDIM samples, seeds
  ``100 + 4i`` ... ``103 + 4i``), so the members differ in where they start and in their windows;
- ``knn_residual`` and ``transfer``: every member starts from the method's one initialisation and
  differs only in the fine-tuning seed (its windows).

Member i fine-tunes with seed ``--finetune-seed + i`` (default 10) for every method. Prints each method's single-run MAE (from
the bench) and the ensemble's, and a paired Wilcoxon test over the target's nodes of the ``gpd``
ensemble against the other two ensembles::

    python benchmarks/finetune_ensemble.py --bench runs/bench/loco_stid --members 4 \\
        --targets nyc-taxi,hangzhou-metro,melbourne-ped,la-loop
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from gpdiff import GenerateConfig, generate
from gpdiff.diffusion.train import DiffusionModel
from gpdiff.evaluation.metrics import masked_metrics, node_mae
from gpdiff.experiment import pipeline
from gpdiff.experiment.runconfig import RunConfig
from gpdiff.experiment.scoreboard import paired_test
from gpdiff.methods import MethodResult
from gpdiff.methods.adapt import expand, finetune, forecast
from gpdiff.methods.knn_residual import initial
from gpdiff.prompts import PromptSet
from gpdiff.utils.io import load_tensors, read_yaml
from gpdiff.zoo.anchor import Anchor
from gpdiff.zoo.train import load_zoo

METHODS = ("gpd", "knn_residual", "transfer")


def start(method: str, output: Path, notes: dict, stages: dict, target_prompts: PromptSet, n: int) -> torch.Tensor:
    """Where ``knn_residual`` or ``transfer`` started fine-tuning ``[n, P]``: the stage file's ``init`` (gpdiff
    before it stopped storing it), else rebuilt from the anchor stage, or from the zoo, the source prompts and
    the ``k`` and ``shrinkage`` that the method noted."""
    tensors, _ = load_tensors(output)
    if "init" in tensors:
        return tensors["init"]
    if method == "transfer":
        return expand(Anchor.load(Path(stages["anchor"])).params, n)
    zoo = load_zoo(Path(stages["zoo"]))
    source = PromptSet.load(Path(stages["prompts"]) / "prompts_source.safetensors").select(zoo.keys())
    return initial(zoo, source, target_prompts, int(notes["k"]), float(notes["shrinkage"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bench", required=True, help="a finished gpdiff bench output folder")
    ap.add_argument("--members", type=int, default=4)
    ap.add_argument("--targets", required=True, help="comma-separated experiment labels (seed 0 runs)")
    ap.add_argument("--finetune-seed", type=int, default=10, help="member i fine-tunes with this seed + i")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for target in args.targets.split(","):
        run = Path(args.bench) / "runs" / target / "seed0"
        cfg = RunConfig.from_yaml(run / "config.yaml")
        cities = pipeline.load_cities(cfg)
        data = pipeline.target_data(cfg, cities, torch.device("cpu"))
        model = cfg.model.build(cfg.window)
        stages = read_yaml(run / "stages.yaml")
        denoiser = DiffusionModel.load(Path(stages["diffusion"]), device="cpu")
        prompts = PromptSet.load(Path(stages["target_prompts"]) / "prompts_target.safetensors")
        truth, mask = data.truth(data.origins("test"))
        nodes = {}
        for method in METHODS:
            f = Path(stages[f"methods/{method}"]) / "output.safetensors"
            result = MethodResult.load(f, lambda p, m=method: pipeline.recompute_forecasts(m, p, model, data))
            single = masked_metrics(result.pred, truth, mask).mae_avg
            if method == "gpd":
                inits = [generate(denoiser, prompts, GenerateConfig("ddim", 20, 1.0, 4), seed=100 + 4 * i).params
                         for i in range(args.members)]
            else:
                inits = [start(method, f, result.notes, stages, prompts, data.n_nodes)] * args.members
            preds = []
            for i, init in enumerate(inits):
                with tempfile.TemporaryDirectory() as tmp:
                    params = finetune(model, init, data, cfg.finetune, Path(tmp), seed=args.finetune_seed + i,
                                      progress=False)
                preds.append(forecast(model, params, data))
            pred = np.mean(preds, 0)
            nodes[method] = node_mae(pred, truth, mask)
            members = ", ".join(f"{masked_metrics(p, truth, mask).mae_avg:.4g}" for p in preds)
            print(f"{target} {method}: single {single:.4g}, members {members}, ensemble of {args.members} "
                  f"{masked_metrics(pred, truth, mask).mae_avg:.4g}", flush=True)
        for other in METHODS[1:]:
            t = paired_test(nodes["gpd"], nodes[other], "gpd", other)
            print(f"{target} gpd vs {other} ensembles: gpd lower on {t.lower} of {t.n} nodes, "
                  f"median difference {t.median_diff:.4g}, Wilcoxon p {t.pvalue:.3g}", flush=True)


if __name__ == "__main__":
    main()
