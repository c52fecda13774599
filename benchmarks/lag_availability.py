"""Which lags the target's windows may read, per segment (issue 28): why fine-tuning cannot learn the week.

    python benchmarks/lag_availability.py [--targets melbourne-ped,nyc-taxi,...]

With ``window.context: lags`` every window carries the values one day and one week before each forecast
step, masked where the protocol forbids them (before the target's few-shot days, the rule of
:func:`gpdiff.data.windows.first_readable`). For each bundled target under the default split (3 few-shot
days, 1 validation day, the last 20% tested) this prints the share of forecast values whose day and
week lags are readable in the training (few-shot), validation and test windows. Fine-tuning and the
blend are fitted on the first two; a lag pattern they never see is one they cannot learn.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from gpdiff.experiment import pipeline
from gpdiff.experiment.runconfig import RunConfig

TARGETS = ("melbourne-ped", "nyc-taxi", "montevideo-bus", "hangzhou-metro", "la-loop")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", default=",".join(TARGETS))
    args = ap.parse_args()
    print("| target | segment | windows | day lag readable | week lag readable |")
    print("|---|---|---|---|---|")
    for target in args.targets.split(","):
        source = next(t for t in TARGETS if t != target)  # the target's windows do not depend on the sources
        cfg = RunConfig.from_yaml(None, {"target": target, "sources": source, "device": "cpu",
                                         "window": {"context": "lags"}}, ())
        data = pipeline.target_data(cfg, pipeline.load_cities(cfg), torch.device("cpu"))
        nodes = torch.arange(data.n_nodes)
        for segment in ("train", "val", "test"):
            origins = data.origins(segment)
            ok = np.concatenate([data.batch(nodes, torch.from_numpy(np.repeat(o[None], data.n_nodes, 0))).lags_ok_y
                                 .reshape(-1, 2).numpy() for o in np.array_split(origins, max(1, origins.size // 256))])
            print(f"| {target} | {segment} | {origins.size} | {ok[:, 0].mean():.1%} | {ok[:, 1].mean():.1%} |")


if __name__ == "__main__":
    main()
