"""pooled_linear against the naive forecasts on the leave-one-city-out targets (issue 28).

    PYTHONPATH=src python benchmarks/pooled_linear.py [--suite loco_blend] [--seeds 0 1 2]

For every experiment of the suite (default ``loco_blend``: each bundled city the target once, the
other four the sources, the `gpdiff run` defaults: 3 few-shot days, 1 validation day, the last 20%
as test), fits :mod:`gpdiff.methods.pooled_linear` on the sources exactly as `gpdiff run` does
(the same data, splits and scalers: :func:`gpdiff.experiment.pipeline.load_cities`, ``target_data``,
:func:`gpdiff.zoo.train.prepare_cities`) and prints a markdown table of the average-horizon test MAE
(original scale, a flow city's negative forecasts count as 0) of pooled_linear alone, pooled_linear
blended as the run blends it (weights fitted on the validation day, :mod:`gpdiff.evaluation.blend`), weekly
naive and seasonal naive, the ratios to weekly naive, and the share of test windows each lag model
forecast. Mean over the seeds (they change only which source windows are drawn), ± std when it is
not 0. Nothing trains on the target; nothing but the sources' training segments is fitted.
"""

from __future__ import annotations

import argparse
import tempfile

import numpy as np

from gpdiff.data.city import feasible
from gpdiff.evaluation import blend
from gpdiff.evaluation.metrics import masked_metrics
from gpdiff.evaluation.naive import seasonal_naive, weekly_naive
from gpdiff.experiment.bench import load_suite
from gpdiff.experiment.pipeline import load_cities, target_data
from gpdiff.methods.pooled_linear import PooledLinearConfig, fit, forecast_windows
from gpdiff.zoo.sourcepool import prepare_cities


def scores(cfg) -> dict[str, object]:
    cities = load_cities(cfg)
    tdata = target_data(cfg, cities, "cpu")
    sources = prepare_cities(cities.sources, cfg.window, cfg.source_split, cfg.model.build(cfg.window), "cpu")
    model = fit(sources, PooledLinearConfig(**cfg.methods.get("pooled_linear", {})), cfg.seed)
    test, val = tdata.origins("test"), tdata.origins("val")
    truth, mask = tdata.truth(test)
    kind = cities.target.kind
    pred, share = forecast_windows(model, tdata, test)
    val_pred, _ = forecast_windows(model, tdata, val)
    names = cfg.blend.naive
    fitted = blend.fit_blend(val_pred, tdata, cfg.blend)
    blended = fitted.apply(pred, tdata, test)
    mae = {name: float(masked_metrics(feasible(p, kind), truth, mask).mae_avg) for name, p in (
        ("pooled_linear", pred), ("pooled_linear_blended", blended), ("weekly_naive", weekly_naive(tdata, test)),
        ("seasonal_naive", seasonal_naive(tdata, test)))}
    return {**mae, "share": share, "weights": blend.weights_note(names, fitted.weights)}


def cell(values: list[float]) -> str:
    sd = np.std(values, ddof=1) if len(values) > 1 else 0.0
    return f"{np.mean(values):.4g}" + (f" ± {sd:.2g}" if sd > 1e-9 * abs(np.mean(values)) else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="loco_blend")
    ap.add_argument("--seeds", type=int, nargs="*", default=None, help="default: the suite's seeds")
    args = ap.parse_args()
    suite = load_suite(args.suite, tempfile.mkdtemp())
    runs = [e for e in suite.experiments if args.seeds is None or e.seed in args.seeds]
    results: dict[str, list[dict[str, object]]] = {}
    for e in runs:
        results.setdefault(e.label, []).append(scores(e.config))
    cols = ["pooled_linear", "pooled_linear_blended", "weekly_naive", "seasonal_naive"]
    print(f"suite {suite.name}, seeds {sorted({e.seed for e in runs})}: average-horizon test MAE\n")
    print("| target | " + " | ".join(cols) + " | pooled_linear / weekly | blended / weekly | test windows by lag model |")
    print("|---" * (len(cols) + 4) + "|")
    for label, rs in results.items():
        vals = {c: [float(r[c]) for r in rs] for c in cols}
        ratio = np.mean(vals["pooled_linear"]) / np.mean(vals["weekly_naive"])
        ratio_b = np.mean(vals["pooled_linear_blended"]) / np.mean(vals["weekly_naive"])
        ranked = sorted(rs[0]["share"].items(), key=lambda kv: -kv[1])  # type: ignore[union-attr]
        share = ", ".join(f"{k} {v:.1%}" for k, v in ranked[:3]) + (
            f", {len(ranked) - 3} others {sum(v for _, v in ranked[3:]):.1%}" if len(ranked) > 3 else "")
        print(f"| {label} | " + " | ".join(cell(vals[c]) for c in cols) + f" | {ratio:.3f} | {ratio_b:.3f} | {share} |")
    print("\nblend weights of pooled_linear_blended (the first seed's run):")
    for label, rs in results.items():
        print(f"- {label}: {rs[0]['weights']}")


if __name__ == "__main__":
    main()
