"""What the no-past rule moved: a ``loco_blend`` scoreboard against the README's scoreboard before it.

    python benchmarks/protocol_shift.py runs/bench/loco_blend/scoreboard.csv

Prints every method's mean (± std over seeds) average-horizon test MAE per target with the change
from the numbers the README showed at commit 191b990 (measured with the validation day reading the
week before the few-shot days), then per target the best method and the learned methods that beat
both naive baselines.
"""
from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def old_scoreboard(commit: str) -> tuple[list[str], dict[tuple[str, str], float]]:
    """The README's scoreboard at ``commit``: its targets and {(method, target): mean MAE}."""
    readme = subprocess.run(["git", "show", f"{commit}:README.md"], capture_output=True, text=True, cwd=REPO,
                            check=True).stdout
    lines = readme.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("| method | melbourne-ped | nyc-taxi"))
    targets = [c.strip() for c in lines[i].strip("|").split("|")][1:]
    old = {}
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        for t, c in zip(targets, cells[1:]):
            old[(cells[0], t)] = float(re.sub(r"\*", "", c).split("±")[0])
    return targets, old


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scoreboard", help="a loco_blend scoreboard.csv")
    ap.add_argument("--before", default="191b990", help="the commit whose README scoreboard is the baseline")
    args = ap.parse_args()
    targets, old = old_scoreboard(args.before)
    sb = pd.read_csv(args.scoreboard, dtype={"horizon": str})
    avg = sb[sb["horizon"] == "avg"].groupby(["method", "target"])["mae"].agg(["mean", "std", "count"])
    methods = list(dict.fromkeys(m for m, _ in old))
    print("| method | " + " | ".join(targets) + " |")
    print("|---|" + "---|" * len(targets))
    for m in methods:
        cells = []
        for t in targets:
            n = avg.loc[(m, t)]
            o = old[(m, t)]
            sd = f" ± {n['std']:.2g}" if n["std"] > 0 else ""
            cells.append(f"{n['mean']:.4g}{sd} ({(n['mean'] / o - 1) * 100:+.1f}%)")
        print(f"| {m} | " + " | ".join(cells) + " |")
    print()
    # best method per target, and which learned methods beat both naive baselines
    for t in targets:
        naive = min(avg.loc[("seasonal_naive", t)]["mean"], avg.loc[("weekly_naive", t)]["mean"])
        winners = [m for m in methods if m not in ("seasonal_naive", "weekly_naive", "historical_average")
                   and avg.loc[(m, t)]["mean"] < naive]
        best = min(methods, key=lambda m: avg.loc[(m, t)]["mean"])
        print(t, "best:", best, f"{avg.loc[(best, t)]['mean']:.4g}", "| beat both naive:", winners, "| gpd",
              f"{avg.loc[('gpd', t)]['mean']:.4g}", "vs naive", f"{naive:.4g}")


if __name__ == "__main__":
    main()
