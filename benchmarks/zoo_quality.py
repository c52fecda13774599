"""Is the zoo made of good models? Validation MAE of every node model against seasonal naive.

Trains one zoo over the bundled cities (default: all of them) and prints, per city, the mean
per-node validation MAE of the zoo and of the seasonal-naive forecast (the value one day earlier)
on the same validation windows, original scale, with the wall time. The zoo must beat naive on
every city.

    python benchmarks/zoo_quality.py                      # stgcn small, all bundled cities
    python benchmarks/zoo_quality.py --model gwn --out runs/bench/zoo-gwn
    python benchmarks/zoo_quality.py --init shared_random --lr 0.01   # the paper's zoo
    python benchmarks/zoo_quality.py --context daily --residual seasonal

With ``--init anchor`` (the default) the anchor is trained first and its time is printed apart.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import time
from pathlib import Path

import torch

from gpdiff import AnchorConfig, BaseModelConfig, ZooConfig, fit_anchor, train_zoo
from gpdiff.cli.zoo import summary_rows
from gpdiff.data import load_city
from gpdiff.data.catalog import bundled_names
from gpdiff.data.windows import WindowConfig
from gpdiff.experiment.report import table


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cities", default=",".join(bundled_names()), help="comma-separated cities")
    ap.add_argument("--model", default="stgcn")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--out", default=None, help="zoo folder (default runs/bench/zoo-quality-MODEL); wiped first")
    ap.add_argument("--keep", action="store_true", help="resume an existing folder instead of wiping it")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--init", default="anchor", help="anchor (default), shared_random or independent")
    ap.add_argument("--lr", type=float, default=None, help="zoo learning rate (default: ZooConfig's)")
    ap.add_argument("--l2-init", type=float, default=0.0)
    ap.add_argument("--context", default="none", help="seasonal context: none, daily or weekly")
    ap.add_argument("--residual", default="none", help="seasonal: forecast the correction to the context")
    ap.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = ap.parse_args()

    out = Path(args.out or f"runs/bench/zoo-quality-{args.model}-{args.preset}")
    if out.exists() and not args.keep:
        shutil.rmtree(out)
    cities = [load_city(c) for c in args.cities.split(",")]
    extra = {"lr": args.lr} if args.lr is not None else {}
    config = ZooConfig(compile=args.compile, init=args.init, l2_init=args.l2_init, **extra)
    arch = BaseModelConfig(args.model, args.preset, residual=args.residual)
    window = WindowConfig(context=args.context)
    t0 = time.perf_counter()
    anchor = (fit_anchor(cities, AnchorConfig(), model=arch, window=window, workdir=out) if args.init == "anchor"
              else None)
    t_anchor = time.perf_counter() - t0
    collection = train_zoo(cities, config, model=arch, window=window, anchor=anchor, workdir=out)
    wall = time.perf_counter() - t0
    rows = summary_rows(collection)
    print(table(rows, fmt="github" if args.markdown else "simple", floatfmt=".4g"))
    worse = [r["city"] for r in rows if not r["ratio"] < 1]
    print(f"\n{len(collection)} nodes, {collection.params.shape[1]} parameters each, init {args.init}, {wall:.0f} s "
          f"wall (anchor {t_anchor:.0f} s), "
          f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__})")
    print("zoo beats seasonal naive on every city" if not worse else f"NOT better than seasonal naive on: {worse}")


if __name__ == "__main__":
    main()
