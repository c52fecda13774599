"""One Markdown table per target of a `gpdiff bench` sweep: variants as rows, methods as columns.

    python benchmarks/sweep_table.py runs/bench/conditioning [--methods gpd,gpd_zero_shot] [--times]

Reads DIR/scoreboard.csv (average-horizon test MAE, mean over the seeds present) and, with
``--times``, DIR/timings.csv (wall seconds of the stages each variant computed itself or took from
the shared cache). The best value of each column is in bold. This is what BENCHMARKS.md shows for
the seed paper's open questions (issue 11); the scoreboard.md of the suite holds the full tables.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

DEFAULT_METHODS = ["seasonal_naive", "weekly_naive", "target_only", "transfer", "mean_params", "retrieval",
                   "knn_residual", "reptile", "gpd_zero_shot", "gpd"]


def fmt(x: float) -> str:
    return f"{x:.4g}"


def mae_tables(folder: Path, methods: list[str]) -> str:
    board = pd.read_csv(folder / "scoreboard.csv", dtype={"variant": str}, keep_default_na=False)
    board = board[board["horizon"].astype(str) == "avg"]
    board = board.assign(variant=board["variant"].replace("", "(default)"), mae=board["mae"].astype(float))
    keys = [part.split("=")[0] for part in str(board["variant"].iloc[0]).split() if "=" in part]
    head = " / ".join(keys) or "variant"
    board["variant"] = [" / ".join(p.split("=", 1)[-1] for p in v.split()) if keys else v for v in board["variant"]]
    out = []
    for target, part in board.groupby("target", sort=False):
        table = part.pivot_table(index="variant", columns="method", values="mae", aggfunc="mean", sort=False)
        cols = [m for m in methods if m in table.columns]
        table = table[cols]
        out.append(f"**{target}**\n")
        out.append(f"| {head} | " + " | ".join(cols) + " |")
        out.append("|---" * (len(cols) + 1) + "|")
        best = table.min()
        for variant, row in table.iterrows():
            cells = [f"**{fmt(v)}**" if v == best[m] and table[m].nunique() > 1 else fmt(v) for m, v in row.items()]
            out.append(f"| {variant} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def time_table(folder: Path) -> str:
    runs = pd.read_csv(folder / "run_times.csv")
    times = pd.read_csv(folder / "timings.csv")
    stages = ["anchor", "zoo", "prompts", "target_prompts", "diffusion", "generate"]
    wide = times.pivot_table(index=["experiment", "seed"], columns="stage", values="wall_s", aggfunc="first",
                             sort=False)
    fine = [c for c in wide.columns if c.startswith("methods/")]
    out = ["| experiment | run wall s | " + " | ".join(stages) + " | methods (sum) |", "|---" * (len(stages) + 3) + "|"]
    for (exp, seed), row in wide.iterrows():
        wall = runs[(runs["experiment"] == exp) & (runs["seed"] == seed)]["wall_s"]
        cells = [f"{row[s]:.0f}" if s in row and pd.notna(row[s]) else "" for s in stages]
        out.append(f"| {exp} | {float(wall.iloc[0]) if len(wall) else float('nan'):.0f} | " + " | ".join(cells)
                   + f" | {row[fine].sum():.0f} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a `gpdiff bench` output folder")
    ap.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="columns, comma-separated")
    ap.add_argument("--times", action="store_true", help="also the stage wall times of every run")
    args = ap.parse_args()
    print(mae_tables(args.folder, [m.strip() for m in args.methods.split(",")]))
    if args.times:
        print(time_table(args.folder))


if __name__ == "__main__":
    main()
