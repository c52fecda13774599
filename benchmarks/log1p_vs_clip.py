"""A flow city's forecasts must not be negative: clip them at 0, or model log1p counts? (issue 25)

    PYTHONPATH=src python benchmarks/log1p_vs_clip.py [--targets melbourne-ped nyc-taxi] [--seed 0] [--out DIR]
        [--cache runs/bench/loco_blend/cache]

For every target, two `gpdiff run`s with the defaults (the target's three few-shot days, the other
bundled flow cities as sources, in the order of the ``loco_blend`` suite, so that with ``--cache``
that suite's stages are reused for the first):

- **clip**: the bundled data as it is; a negative forecast counts as 0 (what gpdiff does);
- **log1p**: every city (sources and target) replaced by ``log1p`` of its counts, so that every
  stage (anchor, zoo, prompts, denoiser, fine-tuning, the blend's weights) models log counts; each
  forecast is mapped back with ``expm1`` and then clipped at 0 like the other.

Both are scored the same way: the average-horizon MAE on the target's test period, original scale,
masked, per method alone and blended (the run's blend weights applied to the run's forecasts). The
table also gives the share of negative test forecasts before clipping. The transform follows the
usual variance-stabilising treatment of counts (Box & Cox 1964; Hyndman & Athanasopoulos,
*Forecasting: Principles and Practice*, 3rd ed., section 5.6 on back-transformed forecasts, which
notes that ``expm1`` of a forecast of the mean log is a forecast of the median, not the mean).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from gpdiff.data.catalog import FLOW_CITIES, load_city
from gpdiff.data.city import feasible
from gpdiff.data.formats.city_folder import write_city_folder
from gpdiff.data.windows import CityData
from gpdiff.evaluation.blend import BlendFit
from gpdiff.evaluation.metrics import masked_metrics
from gpdiff.experiment.pipeline import load_cities, recompute_forecasts, run_pipeline, target_data
from gpdiff.experiment.runconfig import RunConfig
from gpdiff.methods import MethodResult
from gpdiff.utils.io import read_yaml

LOCO_ORDER = ("melbourne-ped", "nyc-taxi", "montevideo-bus", "hangzhou-metro")  # configs/bench/loco_blend.yaml


def log_city(name: str) -> object:
    city = load_city(name)
    return dataclasses.replace(city, values=np.log1p(np.maximum(city.values, 0)).astype(np.float32))


def scores(cfg: RunConfig, log: bool, cache: str | None) -> dict[str, tuple[float, float]]:
    """method -> (test MAE on the original scale, share of negative forecasts before the clip)."""
    res = run_pipeline(cfg, progress=False, log=lambda m: None, cache=cache)
    assert res is not None
    listed = res.out / "stages.yaml"  # written with a shared cache; without one every stage is a folder of the run
    stages = ({k: Path(v) for k, v in read_yaml(listed).items()} if listed.is_file()
              else {p.relative_to(res.out).as_posix(): p for p in res.out.glob("*/*") if p.is_dir()}
              | {p.name: p for p in res.out.iterdir() if p.is_dir()})
    cities = load_cities(cfg)
    tdata = target_data(cfg, cities, "cpu")
    original = CityData(load_city(cfg.target), cities.split, cfg.window.history, cfg.window.horizon,
                        cfg.window.n_neighbors)
    test = tdata.origins("test")
    truth, mask = original.truth(test)
    model = cfg.model.build(cfg.window)
    out = {}
    for name in cfg.methods:
        pred = MethodResult.load(stages[f"methods/{name}"] / "output.safetensors",
                                 lambda p, m=name: recompute_forecasts(m, p, model, tdata)).pred
        if f"blend/{name}" in stages:
            pred = BlendFit.load(stages[f"blend/{name}"] / "blend.safetensors").apply(pred, tdata, test)
        pred = np.expm1(pred.astype(np.float64)) if log else pred.astype(np.float64)
        negative = float((pred < 0).mean())
        out[name] = (float(masked_metrics(feasible(pred, "flow"), truth, mask).mae_avg), negative)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--targets", nargs="+", default=["melbourne-ped"], choices=list(FLOW_CITIES))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="where the runs go (default: a temporary folder)")
    ap.add_argument("--cache", default=None, help="a stage cache to share (e.g. a loco_blend suite's)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        data = root / "log1p-cities"
        for name in FLOW_CITIES:
            if not (data / name).is_dir():
                write_city_folder(log_city(name), data / name)
        for target in args.targets:
            base = {"target": target, "seed": args.seed, "sources": [c for c in LOCO_ORDER if c != target]}
            clip = scores(RunConfig.from_dict({**base, "out": str(root / f"{target}-clip")}), False, args.cache)
            logged = scores(RunConfig.from_dict({**base, "out": str(root / f"{target}-log1p"), "data_dir": str(data)}),
                            True, args.cache)
            print(f"\n{target}, seed {args.seed}: test MAE (average horizon, original scale, blended as configured)\n")
            print("| method | clip | log1p | log1p / clip | negative before the clip (clip run) |")
            print("|---|---|---|---|---|")
            for name, (mae, negative) in clip.items():
                lm = logged[name][0]
                print(f"| {name} | {mae:.4g} | {lm:.4g} | {lm / mae:.3f} | {negative:.1%} |")


if __name__ == "__main__":
    main()
