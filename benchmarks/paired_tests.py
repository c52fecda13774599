"""Paired tests of one method against others on every target of a ``gpdiff bench`` folder.

Reads ``DIR/node_mae.csv`` (one row per experiment, seed, method and node), averages each node's
test MAE over the seeds, and prints for every experiment and every other method how many nodes the
method has lower and the Wilcoxon signed-rank p-value (:func:`gpdiff.experiment.scoreboard.paired_test`, the scoreboard's
test, against every method instead of only the best baseline)::

    python benchmarks/paired_tests.py runs/bench/loco_blend gpd \\
        seasonal_naive,weekly_naive,historical_average,transfer,retrieval,knn_residual
"""

from __future__ import annotations

import argparse

import pandas as pd

from gpdiff.experiment.scoreboard import paired_test


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", help="a finished gpdiff bench output folder")
    ap.add_argument("method", help="the method tested, e.g. gpd")
    ap.add_argument("others", help="comma-separated methods to test it against")
    args = ap.parse_args()
    df = pd.read_csv(f"{args.bench}/node_mae.csv")
    nodes = df.groupby(["experiment", "method", "node"]).mae.mean().unstack("method")
    for experiment, table in nodes.groupby(level=0, sort=False):
        cells = []
        for other in args.others.split(","):
            t = paired_test(table[args.method].to_numpy(), table[other].to_numpy(), args.method, other)
            cells.append(f"vs {other}: {t.lower}/{t.n} lower, p {t.pvalue:.2g}")
        print(f"{experiment}: " + " | ".join(cells))


if __name__ == "__main__":
    main()
