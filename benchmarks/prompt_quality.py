"""Prompt quality per encoder: do the prompts predict the zoo's parameters?

Over the source nodes of a trained zoo (``gpdiff zoo train ... --out ZOO``), for every encoder
(temporal ``masked_patch`` / ``stats``, spatial ``graph`` / ``none``, the two combined, and random
prompts as a control):

- Spearman's rho between prompt distance and parameter distance over node pairs (all, within a
  city, across cities);
- the transfer check: validation MAE (in units of each node's training std) of every node forecast
  with its own parameters, with those of its nearest prompt neighbour in another city, and with
  those of random other-city nodes; ``win`` = share of nodes where the neighbour beats random,
  ``gap`` = (random - neighbour) / (random - own).

Usage::

    gpdiff zoo train --cities nyc-taxi,montevideo-bus,melbourne-ped,hangzhou-metro --out runs/zoo_flow
    python benchmarks/prompt_quality.py --zoo runs/zoo_flow [--days 3] [--md out.md]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import torch

from gpdiff.data import load_city
from gpdiff.data.splits import SourceSplit
from gpdiff.prompts import PromptEncoders, make_encoder, source_segment
from gpdiff.prompts.diagnostics import (
    node_identification,
    rank_correlation,
    transfer_check,
)
from gpdiff.zoo.params import ParamCollection


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--zoo", required=True, type=Path, help="zoo folder or zoo.safetensors")
    ap.add_argument("--days", type=float, default=3.0, help="temporal prompt input days")
    ap.add_argument("--max-steps", type=int, default=None,
                    help="masked_patch training steps (default: the encoder's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--random-draws", type=int, default=3)
    ap.add_argument("--md", type=Path, default=None, help="also write the Markdown table here")
    args = ap.parse_args()

    coll = ParamCollection.load(args.zoo)
    names = coll.city_names()
    cities = [load_city(n) for n in names]
    split = SourceSplit.from_record(coll.config or {})
    segs = [source_segment(c, split) for c in cities]
    print(f"zoo: {coll.model}, {len(coll)} nodes of {', '.join(names)}; prompts from the last {args.days} days "
          "of each training period")

    fitted, seconds = {}, {}
    patch_cfg: dict[str, float] = {"days": args.days}
    if args.max_steps is not None:
        patch_cfg["max_steps"] = args.max_steps
    for kind, name, cfg in (("temporal", "masked_patch", patch_cfg), ("temporal", "stats", {"days": args.days}),
                            ("spatial", "graph", {}), ("spatial", "none", {})):
        t0 = time.perf_counter()
        fitted[name] = make_encoder(kind, name, cfg).fit(cities, segs, progress=True, seed=args.seed)
        seconds[name] = time.perf_counter() - t0
        print(f"fitted {name} in {seconds[name]:.1f} s")

    print("node re-identification from prompts 7 days apart (top-1; chance = 1/nodes):")
    for name in ("masked_patch", "stats"):
        ident = node_identification(fitted[name], cities, segs, shift_days=7)
        sizes = {c.name: c.n_nodes for c in cities}
        print(f"  {name:12s} " + "  ".join(f"{c} {v:.2f} (chance {1 / sizes[c]:.3f})" for c, v in ident.items()))

    def prompts(t: str, s: str):  # type: ignore[no-untyped-def]
        return PromptEncoders(fitted[t], fitted[s]).encode_many(cities, segs).select(coll.keys())

    variants = [("masked_patch", "temporal", prompts("masked_patch", "none")),
                ("stats", "temporal", prompts("stats", "none")),
                ("graph", "spatial", prompts("stats", "graph")), ("none", "spatial", prompts("stats", "none")),
                ("masked_patch + graph", "both", prompts("masked_patch", "graph")),
                ("stats + graph", "both", prompts("stats", "graph"))]
    base = variants[0][2]
    g = torch.Generator().manual_seed(args.seed)
    control = replace(base, temporal=torch.randn(base.temporal.shape, generator=g))
    variants.append(("random (control)", "temporal", control))

    city_map = dict(zip(names, cities))
    rows = []
    for label, part, ps in variants:
        rho = rank_correlation(ps, coll, parts=(part,), seed=args.seed)[part]
        tr = transfer_check(ps, coll, city_map, part=part, n_random=args.random_draws, seed=args.seed)
        s = tr.summary()
        rows.append({"prompts": label, "rho all": rho["all"], "rho within": rho["within"],
                     "rho cross": rho["cross"], "own": s["own"], "neighbour": s["neighbour"], "random": s["random"],
                     "win": s["win_rate"], "gap": s["gap_closed"]})
        print(f"{label:20s} rho {rho['all']:+.3f} (within {rho['within']:+.3f}, cross {rho['cross']:+.3f})  "
              f"MAE own {s['own']:.3f} neighbour {s['neighbour']:.3f} random {s['random']:.3f}  "
              f"win {s['win_rate']:.2f} gap {s['gap_closed']:+.2f}")

    from tabulate import tabulate

    md = tabulate([list(r.values()) for r in rows], headers=list(rows[0].keys()), tablefmt="github", floatfmt=".3f")
    fit_line = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
    print()
    print(md)
    print(f"\nfit time: {fit_line}")
    if args.md:
        args.md.write_text(md + f"\n\nfit time: {fit_line}\n")


if __name__ == "__main__":
    main()
