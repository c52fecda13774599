"""The unseen city of issue 28: NYC taxi pickups in the last ten days of 2010, never bundled.

    python benchmarks/unseen_city.py --raw ../shared/data --out cities      # writes cities/nyc2010/
    gpdiff run --target nyc2010 --data-dir cities --sources nyc-taxi,montevideo-bus,hangzhou-metro \\
        --set window.context=lags --out runs/unseen_lags

The bundled ``nyc-taxi`` is the same 16 x 8 grid in 2014 (:func:`scripts.build_bundle.build_nyc_taxi`).
This builds the 2010 file of the same source the same way (duplicated hours summed, hours with no
pickup anywhere masked, ``NYC10_Taxi_M16x8_T60_InOut.h5``, its SHA256 checked against the data folder's
``SHA256SUMS``), keeps the pickups (channel ``inflow``) of 2010-12-22 00:00 .. 12-31 23:00 (240 hours,
128 cells) and writes it as a city folder named ``nyc2010``. Ten days give the default target split
its three few-shot days, one validation day and a test period whose windows have the week before them.
A few seconds.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import pandas as pd

from gpdiff.data.city import City
from gpdiff.data.formats.city_folder import write_city_folder

REPO = Path(__file__).resolve().parents[1]
YEAR = 2010
DAYS = ("2010-12-22 00:00", "2010-12-31 23:00")


def _build_bundle():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("build_bundle", REPO / "scripts" / "build_bundle.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(raw: Path) -> City:
    """The nyc2010 city from the raw data folder ``raw`` (holding ``taxinyc-grid/``)."""
    bundle = _build_bundle()
    name = f"taxinyc-grid/NYC{YEAR % 100:02d}_Taxi_M16x8_T60_InOut.h5"
    bundle.verify(raw, [name])
    bundled, bundle.TAXI_YEAR = bundle.TAXI_YEAR, YEAR  # a fresh copy of the script's module: nothing to restore
    full = bundle.build_nyc_taxi(raw)
    t = pd.date_range(full.start, periods=full.n_steps, freq="h")
    keep = (t >= pd.Timestamp(DAYS[0])) & (t <= pd.Timestamp(DAYS[1]))
    source = full.source.replace(f"NYC{bundled % 100:02d}_", f"NYC{YEAR % 100:02d}_")
    return City(name="nyc2010", values=full.values[keep][..., :1], mask=full.mask[keep],
                start=pd.Timestamp(DAYS[0]), interval_minutes=60, adjacency=full.adjacency, kind="flow",
                units=full.units, node_ids=full.node_ids, channels=["inflow"], coords=full.coords,
                coord_kind=full.coord_kind, source=f"{source} ({DAYS[0]} .. {DAYS[1]})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, default=REPO.parent / "shared" / "data", help="the raw data folder")
    ap.add_argument("--out", type=Path, required=True, help="the folder the city folder nyc2010/ goes in")
    args = ap.parse_args()
    city = build(args.raw)
    path = write_city_folder(city, args.out / city.name)
    print(f"{path}: {city.n_nodes} nodes, {city.n_steps} hourly steps from {city.start}, "
          f"{100 * (1 - city.mask.mean()):.2f}% masked")


if __name__ == "__main__":
    main()
