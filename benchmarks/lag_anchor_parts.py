"""Which part of the lag-aware anchor fails zero-shot (issue 28): its head, or the network's correction.

    gpdiff bench loco_lags --out runs/bench/loco_lags
    python benchmarks/lag_anchor_parts.py runs/bench/loco_lags [--seed 0]

The lag-aware base model (``window.context: lags``) forecasts ``head + correction``: the head is a
learned combination of the recent level and the values one day and one week earlier (``lags.head``,
weights per availability pattern of the lags and per forecast step), the correction is the network.
For every target of a bench folder this takes the run's anchor (``RUN/pretrained``), the parameters
``transfer_zero_shot`` forecasts with, and scores on the target's test windows, as the run does
(test MAE in original units, a flow city's forecasts clipped at 0):

- the whole anchor as trained on the sources (the head plus the network's output times its gate) and
  the head alone, which is what ``transfer_zero_shot`` forecasts since the gates are closed on a target
  (:func:`gpdiff.methods.adapt.target_start`);
- weekly and seasonal naive and the node means of the few-shot days (what a head whose weights sum to
  less than one would shrink towards: 0 in scaled units; the affine head of code ``af45440`` on cannot);
- the head's effective weights of (level, day, week) and the network's gate when both lags are
  available, at the first and the last forecast step.

The head is read with this code's combination: runs made before the gate (code before this script's
change) hold a head of another shape and are not read. The tables in BENCHMARKS.md made on code
``e6c05bc`` and ``af45440`` came from the earlier versions of this script (with a "completed to 1"
column, equal to the head alone for an affine head).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import yaml

from gpdiff.diffusion.pretrained import GPD
from gpdiff.evaluation.metrics import masked_metrics
from gpdiff.evaluation.naive import seasonal_naive, weekly_naive
from gpdiff.experiment.pipeline import load_cities, target_data
from gpdiff.experiment.runconfig import RunConfig
from gpdiff.models.base import HEAD
from gpdiff.zoo.params import unflatten

OLD_KEYS = {("diffusion", "iters"): "max_steps", ("diffusion", "subset"): "tensors"}  # runs of gpdiff before issue 26


def run_config(run: Path) -> RunConfig:
    """A run's saved config, its pre-rename keys under their new names."""
    doc = yaml.safe_load((run / "config.yaml").read_text())
    for (section, old), new in OLD_KEYS.items():
        if old in doc.get(section, {}):
            doc[section][new] = doc[section].pop(old)
    temporal = doc.get("prompts", {}).get("temporal_config") or {}
    if "train_steps" in temporal:
        temporal["max_steps"] = temporal.pop("train_steps")
    reptile = doc.get("methods", {}).get("reptile") or {}
    if "meta_steps" in reptile:
        reptile["max_steps"] = reptile.pop("meta_steps")
    return RunConfig.from_dict(doc)


@torch.no_grad()
def parts(run: Path) -> dict[str, float | list[float]]:
    cfg = run_config(run)
    data = target_data(cfg, load_cities(cfg), torch.device("cpu"))
    model = cfg.model.build(cfg.window)
    if not model.has_head:
        raise SystemExit(f"{run}: not a lag-aware run (window.context {cfg.window.context})")
    n, nodes = data.n_nodes, data.all_nodes()
    p = unflatten(GPD.from_pretrained(run / "pretrained").anchor.reshape(1, -1).expand(n, -1).contiguous(),
                  model.spec())
    full, head = [], []
    for _, batch in data.iter_eval("test"):
        head.append(model.combination(p[HEAD], batch))
        full.append(model.forward(p, batch))
    origins = data.origins("test")
    truth, mask = data.truth(origins)

    def mae(x: np.ndarray) -> float:
        return float(masked_metrics(np.clip(x, 0, None) if data.city.kind == "flow" else x, truth, mask).mae_avg)

    def original(chunks: list[torch.Tensor]) -> np.ndarray:
        return data.to_original(torch.cat(chunks, 1), nodes)

    w = model.pattern_weights(p[HEAD])[0, 3].clone()  # both lags available: [level, day, week, gate] x steps
    w[2] = 1 - w[0] - w[1]  # the week's effective weight: the combination does not read its own entry
    return {"weekly naive": mae(weekly_naive(data, origins)), "seasonal naive": mae(seasonal_naive(data, origins)),
            "few-shot node means": mae(data.to_original(torch.zeros(n, origins.size, data.horizon), nodes)),
            "anchor": mae(original(full)), "head alone": mae(original(head)),
            "weights at step 1": [round(float(v), 3) for v in w[:, 0]],
            "weights at the last step": [round(float(v), 3) for v in w[:, -1]]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bench", type=Path, help="a gpdiff bench folder of lag-aware runs (loco_lags)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = {run.parent.name: parts(run) for run in sorted(args.bench.glob(f"runs/*/seed{args.seed}"))
            if (run / "pretrained").is_dir()}
    cols = ["weekly naive", "seasonal naive", "few-shot node means", "anchor", "head alone"]
    print("| target | " + " | ".join(cols) + " | head weights (level, day, week) and the network's gate, both lags: "
          "step 1; last step |")
    print("|---" * (len(cols) + 2) + "|")
    for target, r in rows.items():
        print(f"| {target} | " + " | ".join(f"{r[c]:.4g}" for c in cols)
              + f" | {r['weights at step 1']}; {r['weights at the last step']} |")


if __name__ == "__main__":
    main()
