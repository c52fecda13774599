#!/usr/bin/env python
"""Build the bundled cities (``src/gpdiff/data/bundled/*.city``) from the raw public files.

The raw files live in ``../shared/data`` next to the repository (``--raw DIR`` to change it);
they are byte-identical to their public sources and listed with their SHA256 in
``SHA256SUMS``. Every raw file a city uses is checked against that list before it is read.

One builder per city, importable (the tests use them)::

    build_la_loop(raw) / build_nyc_taxi(raw) / build_montevideo_bus(raw)
    build_melbourne_ped(raw) / build_hangzhou_metro(raw)

each ``(raw: Path, notes: dict | None = None) -> City``; ``notes`` (optional) collects the
numbers that ``PROVENANCE.md`` reports. The output is deterministic: the same raw files give
the same bytes (``City.to_bytes`` is deterministic and nothing here depends on hash order,
time or randomness).

Usage::

    python scripts/build_bundle.py                 # all cities + PROVENANCE.md
    python scripts/build_bundle.py --only hangzhou-metro --out /tmp/x

Only numpy / pandas / h5py / scipy and the standard library are used.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.io

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))  # run from a checkout without installing

from gpdiff.data.city import City  # noqa: E402
from gpdiff.data.graph import grid_adjacency, pairwise_distances  # noqa: E402

DEFAULT_RAW = REPO.parent / "shared" / "data"
BUNDLED = REPO / "src" / "gpdiff" / "data" / "bundled"


class ChecksumError(RuntimeError):
    """A raw file is missing or differs from ``SHA256SUMS``."""


# --------------------------------------------------------------------------- raw files
#: raw files each city reads (paths relative to the raw folder, as in SHA256SUMS)
RAW_FILES: dict[str, list[str]] = {
    "la-loop": [
        "los-loop/los_speed.csv",
        "los-loop/los_adj.csv",
        "metr-la_graph/adj_mx.pkl",
        "metr-la_graph/graph_sensor_locations.csv",
    ],
    "nyc-taxi": ["taxinyc-grid/NYC14_Taxi_M16x8_T60_InOut.h5", "taxinyc-grid/ReadMe.md"],
    "montevideo-bus": ["montevideo-bus/montevideo_bus.json"],
    "melbourne-ped": ["melbourne-pedestrian/Pedestrian_Melbourne.zip"],
    "hangzhou-metro": ["hangzhou-metro/tensor.mat", "hangzhou-metro/graph.csv"],
}

#: where each raw folder comes from (data README: repository @ commit, path) and its licence
ORIGIN = {
    "la-loop": [
        ("lehaifeng/T-GCN", "219a234", "data/los_speed.csv, data/los_adj.csv", "MIT"),
        ("liyaguang/DCRNN", "602afd9", "data/sensor_graph/adj_mx.pkl, "
         "data/sensor_graph/graph_sensor_locations.csv", "MIT"),
    ],
    "nyc-taxi": [
        ("pengzhangzhi/spatial-temporal-transformer", "b17760e",
         "data/TaxiNYC/NYC14_Taxi_M16x8_T60_InOut.h5",
         "not stated (derived from NYC TLC public trip records)"),
    ],
    "montevideo-bus": [
        ("benedekrozemberczki/pytorch_geometric_temporal", "adefe44", "dataset/montevideo_bus.json", "MIT"),
    ],
    "melbourne-ped": [
        ("uctb/Urban-Dataset", "87e33c9",
         "Public_Datasets/Pedestrian/60_minutes/Pedestrian_Melbourne.zip",
         "not stated (derived from City of Melbourne open data)"),
    ],
    "hangzhou-metro": [
        ("xinychen/transdim", "99a3127", "datasets/Hangzhou-data-set/tensor.mat, "
         "datasets/Hangzhou-data-set/graph.csv", "MIT"),
    ],
}


def source_string(city: str) -> str:
    return "; ".join(f"{repo}@{commit}:{path}" for repo, commit, path, _ in ORIGIN[city])


def read_sums(raw: Path) -> dict[str, str]:
    sums_file = raw / "SHA256SUMS"
    if not sums_file.is_file():
        raise ChecksumError(f"{sums_file} not found: is --raw {raw} the raw data folder?")
    sums: dict[str, str] = {}
    for line in sums_file.read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.strip().lstrip("*").removeprefix("./")] = digest.lower()
    return sums


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(raw: Path, rel_paths: list[str]) -> dict[str, str]:
    """Check ``rel_paths`` against ``SHA256SUMS``; return {path: sha256}. Stops on any mismatch."""
    sums = read_sums(raw)
    out: dict[str, str] = {}
    for rel in rel_paths:
        if rel not in sums:
            raise ChecksumError(f"{rel} is not listed in {raw / 'SHA256SUMS'}; refusing to use it.")
        path = raw / rel
        if not path.is_file():
            raise ChecksumError(f"raw file {path} is missing.")
        got = sha256(path)
        if got != sums[rel]:
            raise ChecksumError(
                f"checksum mismatch for {path}: SHA256SUMS says {sums[rel]}, file has {got}. "
                "The raw file changed; restore the original before building the bundle."
            )
        out[rel] = got
    return out


def _checked(raw: Path, city: str) -> Path:
    raw = Path(raw)
    verify(raw, RAW_FILES[city])
    return raw


def _note(notes: dict | None, **kw: object) -> None:
    if notes is not None:
        notes.update(kw)


# --------------------------------------------------------------------------- graph helpers
def gaussian_kernel(d: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-np.square(d / sigma))


def zero_runs(x: np.ndarray) -> list[tuple[int, int]]:
    """(start, length) of every run of True in a 1-D bool array."""
    z = np.diff(np.r_[0, x.astype(np.int8), 0])
    starts, ends = np.flatnonzero(z == 1), np.flatnonzero(z == -1)
    return list(zip(starts.tolist(), (ends - starts).tolist()))


# --------------------------------------------------------------------------- la-loop
def build_la_loop(raw: Path, notes: dict | None = None) -> City:
    raw = _checked(raw, "la-loop")
    speed = pd.read_csv(raw / "los-loop/los_speed.csv")
    adj = pd.read_csv(raw / "los-loop/los_adj.csv", header=None).to_numpy(dtype=np.float64)
    header = [str(c) for c in speed.columns]
    with (raw / "metr-la_graph/adj_mx.pkl").open("rb") as f:
        # DCRNN's pickle (Python 2); our fixed, checksummed file, so unpickling is safe here.
        ids, _id_to_idx, adj_mx = pickle.load(f, encoding="latin1")
    ids = [str(i) for i in ids]
    locs = pd.read_csv(raw / "metr-la_graph/graph_sensor_locations.csv", dtype={"sensor_id": str})

    # Node order: los_speed.csv's header row holds the METR-LA sensor ids, in adj_mx.pkl's order,
    # and los_adj.csv equals max(adj_mx, adj_mx.T) (adj_mx symmetrised) in that same order.
    if header != ids:
        raise ValueError("los_speed.csv header is not the adj_mx.pkl sensor order; cannot attach ids.")
    sym = np.maximum(adj_mx, adj_mx.T).astype(np.float64)
    adj_diff = float(np.abs(adj - sym).max())
    if adj_diff > 1e-6:
        raise ValueError(f"los_adj.csv differs from symmetrised adj_mx.pkl (max |diff| {adj_diff}).")
    loc = locs.set_index("sensor_id").loc[ids]
    coords = loc[["latitude", "longitude"]].to_numpy(dtype=np.float64)

    values = speed.to_numpy(dtype=np.float64)
    mask = np.isfinite(values) & (values != 0)  # METR-LA convention: 0 mph = missing
    values = np.where(mask, values, 0.0)
    _note(notes, shape=values.shape, zeros=int((speed.to_numpy() == 0).sum()),
          nonfinite=int((~np.isfinite(speed.to_numpy())).sum()), masked=int((~mask).sum()),
          adj_diff=adj_diff, adj_mx_nnz=int(np.count_nonzero(adj_mx)),
          adj_nnz=int(np.count_nonzero(adj)), asym_pairs=int(np.count_nonzero(adj_mx != adj_mx.T)),
          isolated=[ids[i] for i in np.flatnonzero((adj > 0).sum(axis=1) - (np.diag(adj) > 0) == 0)])
    return City(
        name="la-loop", values=values[:, :, None], mask=mask, start="2012-03-01 00:00",
        interval_minutes=5, adjacency=adj, kind="speed", units="mph", node_ids=ids,
        channels=["speed"], coords=coords, coord_kind="latlon", source=source_string("la-loop"),
    )


# --------------------------------------------------------------------------- nyc-taxi
TAXI_YEAR = 2014


def build_nyc_taxi(raw: Path, notes: dict | None = None) -> City:
    raw = _checked(raw, "nyc-taxi")
    with h5py.File(raw / f"taxinyc-grid/NYC{TAXI_YEAR % 100:02d}_Taxi_M16x8_T60_InOut.h5", "r") as f:
        data = f["data"][:]  # (rows, 2, 16, 8): [0] new-flow (pickups) = inflow, [1] end-flow = outflow
        dates = [d.decode() for d in f["date"][:]]
    n_rows, n_ch, rows, cols = data.shape
    ts = pd.to_datetime([d[:8] for d in dates], format="%Y%m%d") + pd.to_timedelta(
        [int(d[8:]) for d in dates], unit="h")

    # De-duplicate on `date`. Every repeated hour occurs exactly twice, and one of the two copies
    # has zero new-flow in every cell and a few end-flows (almost all at hour 00): it holds the
    # drop-offs of trips that started before midnight and were counted from the previous monthly
    # trip file. The two copies are disjoint sets of trips, so the hour's true count is their sum
    # (channel 0 is unchanged because the spill-over copy has none). Keeping only the first copy
    # would keep the empty copy for the 24 hours of 2014-07-01.
    groups: dict[pd.Timestamp, list[int]] = {}
    for i, t in enumerate(ts):
        groups.setdefault(t, []).append(i)
    merged: dict[pd.Timestamp, np.ndarray] = {}
    n_dup = n_first_empty = 0
    spill = 0.0
    for t, idx in groups.items():
        if len(idx) == 1:
            merged[t] = data[idx[0]]
            continue
        if len(idx) != 2:
            raise ValueError(f"{t} occurs {len(idx)} times; expected at most 2.")
        a, b = data[idx[0]], data[idx[1]]
        if np.array_equal(a, b):
            merged[t] = a
            continue
        empty = [k for k, x in enumerate((a, b)) if not x[0].any()]
        if len(empty) != 1:
            raise ValueError(f"duplicate hour {t}: neither/both copies are spill-over copies; inspect the file.")
        n_dup += 1
        n_first_empty += empty[0] == 0
        spill += float((a, b)[empty[0]][1].sum())
        merged[t] = a + b

    start = pd.Timestamp(f"{TAXI_YEAR}-01-01 00:00")
    calendar = pd.date_range(start, f"{TAXI_YEAR}-12-31 23:00", freq="h")
    values = np.zeros((len(calendar), rows * cols, n_ch), dtype=np.float64)
    mask = np.zeros((len(calendar), rows * cols), dtype=bool)
    pos = {t: k for k, t in enumerate(calendar)}
    outside = [t for t in merged if t not in pos]
    if outside:
        raise ValueError(f"{len(outside)} timestamps outside {TAXI_YEAR}, e.g. {outside[0]}")
    for t, x in merged.items():
        k = pos[t]
        values[k] = x.transpose(1, 2, 0).reshape(rows * cols, n_ch)  # node = row * cols + col
        mask[k] = True
    absent = int((~mask[:, 0]).sum())
    # An hour with zero new-flow in every cell is not a real observation in New York: it is either
    # 2014-09-01 (the September trip file is absent from the source: the whole day holds only the
    # August spill-over) or the non-existent 02:00 hour of the spring-forward DST change.
    dead = mask[:, 0] & (values[:, :, 0].sum(axis=1) == 0)
    dead_hours = [str(t) for t in calendar[dead]]
    mask[dead] = False
    values[~mask] = 0.0
    zeros_obs = float((values[:, :, 0][mask] == 0).mean())
    zeros_obs_both = float((values[mask] == 0).mean())
    _note(notes, year=TAXI_YEAR, file_rows=n_rows, unique_hours=len(merged), dup_hours=n_dup,
          dup_first_empty=n_first_empty, dup_second_empty=n_dup - n_first_empty, spill_trips=int(spill),
          calendar_hours=len(calendar), absent_hours=absent, dead_hours=dead_hours,
          masked_hours=int((~mask[:, 0]).sum()), zero_frac=zeros_obs, zero_frac_both=zeros_obs_both, shape=values.shape)

    node_ids = [f"r{r}c{c}" for r in range(rows) for c in range(cols)]
    coords = np.array([[c + 0.5, r + 0.5] for r in range(rows) for c in range(cols)], dtype=np.float64)
    return City(
        name="nyc-taxi", values=values, mask=mask, start=start, interval_minutes=60,
        adjacency=grid_adjacency(rows, cols, neighbours=4), kind="flow", units="trips/h", node_ids=node_ids,
        channels=["inflow", "outflow"], coords=coords, coord_kind="xy", source=source_string("nyc-taxi"),
    )


# --------------------------------------------------------------------------- montevideo-bus
def build_montevideo_bus(raw: Path, notes: dict | None = None) -> City:
    raw = _checked(raw, "montevideo-bus")
    g = json.loads((raw / "montevideo-bus/montevideo_bus.json").read_text())
    nodes, links = g["nodes"], g["links"]
    ids = [n["id"] for n in nodes]
    if [n["bus_stop"] for n in nodes] != ids:
        raise ValueError("node 'id' and 'bus_stop' differ; check the JSON.")
    index = {nid: i for i, nid in enumerate(ids)}
    y = np.array([n["y"] for n in nodes], dtype=np.int64).T  # [744, 675]
    if not np.array_equal(np.array([n["X"]["y"] for n in nodes]).T, y):
        raise ValueError("node X.y differs from y; check the JSON.")
    dist = np.array([float(link["weight"]) for link in links])
    pairs = {(link["source"], link["target"]) for link in links}
    sigma = float(dist.std())  # population std (ddof=0) of the 690 link road distances, metres
    w = gaussian_kernel(dist, sigma)
    adj = np.zeros((len(ids), len(ids)), dtype=np.float64)
    for link, wk in zip(links, w):
        i, j = index[link["source"]], index[link["target"]]
        adj[i, j] = max(adj[i, j], wk)
    adj = np.maximum(adj, adj.T)  # symmetrise (the JSON has no reciprocal links)
    adj32 = adj.astype(np.float32)
    # x = easting ("lon" field), y = northing ("lat" field): projected metres (UTM 21S-like)
    coords = np.array([[n["lon"], n["lat"]] for n in nodes], dtype=np.float64)
    mask = np.ones(y.shape, dtype=bool)
    deg = (adj32 > 0).sum(axis=1)
    _note(notes, shape=y.shape + (1,), sigma=sigma, n_links=len(links), dist_min=float(dist.min()),
          dist_max=float(dist.max()), dist_mean=float(dist.mean()),
          w_median=float(np.median(w)), w_lt_01=int((w < 0.1).sum()),
          w_zero_f32=int((w.astype(np.float32) == 0).sum()), isolated=int((deg == 0).sum()),
          zero_frac=float((y == 0).mean()), reciprocal=len(pairs & {(t, s) for s, t in pairs}))
    return City(
        name="montevideo-bus", values=y[:, :, None], mask=mask, start="2020-10-01 00:00",
        interval_minutes=60, adjacency=adj32, kind="flow", units="passengers/h",
        node_ids=[str(i) for i in ids], channels=["inflow"], coords=coords, coord_kind="xy",
        source=source_string("montevideo-bus"),
    )


# --------------------------------------------------------------------------- melbourne-ped
MELB_K = 8  # nearest neighbours per sensor
MELB_THRESHOLD = 0.1  # kernel weights below this are dropped
MELB_RUN_DAY = 24  # a zero run this long (hours) is "sensor off" whatever the context
MELB_RUN_MIN = 3  # shorter zero runs need at least this length ...
MELB_REF_RATE = 10.0  # ... and a reference level of at least this many pedestrians per hour
MELB_REF_LAGS = (-336, -168, 168, 336)  # same hours 1 and 2 weeks before / after


def _melbourne_off_runs(x: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, int]:
    """Mask of exact-zero runs that mean "sensor off" (see PROVENANCE.md); and their count."""
    t_len, n = x.shape
    off = np.zeros_like(valid)
    n_runs = 0
    for j in range(n):
        for s, length in zero_runs((x[:, j] == 0) & valid[:, j]):
            is_off = length >= MELB_RUN_DAY
            if not is_off and length >= MELB_RUN_MIN:
                idx = np.arange(s, s + length)
                refs = []
                for lag in MELB_REF_LAGS:
                    ii = idx + lag
                    if ii[0] >= 0 and ii[-1] < t_len and valid[ii, j].all():
                        refs.append(float(x[ii, j].mean()))
                is_off = bool(refs) and float(np.median(refs)) >= MELB_REF_RATE
            if is_off:
                off[s : s + length, j] = True
                n_runs += 1
    return off, n_runs


def build_melbourne_ped(raw: Path, notes: dict | None = None) -> City:
    raw = _checked(raw, "melbourne-ped")
    with zipfile.ZipFile(raw / "melbourne-pedestrian/Pedestrian_Melbourne.zip") as z:
        # UCTB stores the dataset as a pickle. Unpickling runs code from the file, which is acceptable
        # here only because this is our fixed, SHA256-checked copy; never do this with untrusted data.
        d = pickle.loads(z.read("Pedestrian_Melbourne.pkl"))
    x = np.asarray(d["Node"]["TrafficNode"]).astype(np.int64)  # [16056, 55] int16 counts, -1 = missing
    info = d["Node"]["StationInfo"]  # [id, install_date, lat, lon, name]
    if int(d["TimeFitness"]) != 60:
        raise ValueError(f"TimeFitness {d['TimeFitness']} != 60")
    start, stop = (pd.Timestamp(s) for s in d["TimeRange"])
    t_len, n = x.shape
    if (stop - start) != pd.Timedelta(hours=t_len) or len(info) != n:
        raise ValueError("TimeRange / StationInfo do not match TrafficNode's shape.")

    flagged = x < 0  # UCTB's missing-value marker (-1)
    if (x < -1).any():
        raise ValueError("unexpected negative counts other than -1.")
    installed = pd.to_datetime([row[1] for row in info])
    ts = pd.date_range(start, periods=t_len, freq="h")
    before_install = ts.to_numpy()[:, None] < installed.to_numpy()[None, :]
    # hours where every sensor reads 0 (or -1): the non-existent 02:00 of the DST change
    dst_rows = (x <= 0).all(axis=1)
    dst = np.repeat(dst_rows[:, None], n, axis=1) & ~flagged
    valid = ~(flagged | before_install | dst)
    off, n_off_runs = _melbourne_off_runs(x, valid)
    mask = valid & ~off
    values = np.where(mask, x, 0)
    dead = np.flatnonzero(~mask.any(axis=0))
    if dead.size:
        raise ValueError(f"sensors without data: {dead}")

    lat = np.array([float(r[2]) for r in info])
    lon = np.array([float(r[3]) for r in info])
    dist = pairwise_distances(np.c_[lat, lon], latlon=True) / 1000.0  # km
    np.fill_diagonal(dist, np.inf)
    nn = np.argsort(dist, axis=1, kind="stable")[:, :MELB_K]
    knn_d = np.take_along_axis(dist, nn, axis=1)
    sigma = float(knn_d.std())
    w = np.zeros((n, n), dtype=np.float64)
    rows = np.repeat(np.arange(n), MELB_K)
    w[rows, nn.ravel()] = gaussian_kernel(knn_d.ravel(), sigma)
    w = np.maximum(w, w.T)
    # Drop weak links, except each sensor's link to its nearest neighbour: with sigma from the
    # kNN distances, the 4 most isolated sensors (Errol20_T, MCEC_T, WebBN_T, Que85_T) would
    # otherwise lose every neighbour.
    keep = w >= MELB_THRESHOLD
    keep[np.arange(n), nn[:, 0]] = True
    keep |= keep.T
    n_rescued = int(((w < MELB_THRESHOLD) & keep).sum() // 2)
    w = np.where(keep, w, 0.0)
    deg = (w > 0).sum(axis=1)
    if (deg == 0).any():
        raise ValueError("a sensor lost all neighbours after thresholding.")
    n_comp = _n_components(w > 0)
    _note(notes, shape=(t_len, n, 1), start=str(start), stop=str(stop), flagged=int(flagged.sum()),
          before_install=int(before_install.sum()), dst_hours=[str(t) for t in ts[dst_rows]],
          dst_values=int(dst.sum()), off_runs=n_off_runs, off_values=int(off.sum()),
          masked=int((~mask).sum()), masked_frac=float((~mask).mean()), last_install=str(installed.max().date()),
          sigma_km=sigma, knn_d_min=float(knn_d.min()), knn_d_max=float(knn_d.max()),
          edges=int(np.count_nonzero(np.triu(w, 1))), deg_min=int(deg.min()), deg_max=int(deg.max()),
          components=n_comp, rescued=n_rescued, zero_frac=float((values[mask] == 0).mean()))
    return City(
        name="melbourne-ped", values=values[:, :, None], mask=mask, start=start, interval_minutes=60,
        adjacency=w, kind="flow", units="pedestrians/h", node_ids=[str(r[0]) for r in info],
        channels=["count"], coords=np.stack([lat, lon], axis=1), coord_kind="latlon",
        source=source_string("melbourne-ped"),
    )


def _n_components(a: np.ndarray) -> int:
    from scipy.sparse.csgraph import connected_components

    return int(connected_components(a.astype(np.int8), directed=False)[0])


# --------------------------------------------------------------------------- hangzhou-metro
HZ_FIRST_SLOT = 36  # service-day slot 0 is 06:00-06:10 (00:00-06:00 was cut by the source)
HZ_DROPPED = "54"  # graph.csv station with no series (see PROVENANCE.md)


def build_hangzhou_metro(raw: Path, notes: dict | None = None) -> City:
    raw = _checked(raw, "hangzhou-metro")
    tensor = scipy.io.loadmat(str(raw / "hangzhou-metro/tensor.mat"))["tensor"]  # (80, 25, 108) uint16
    n, days, slots = tensor.shape
    per_day = 144
    if HZ_FIRST_SLOT + slots != per_day:
        raise ValueError(f"{slots} slots from slot {HZ_FIRST_SLOT} do not end at midnight.")
    values = np.zeros((days, per_day, n), dtype=np.float64)
    mask = np.zeros((days, per_day, n), dtype=bool)
    values[:, HZ_FIRST_SLOT:, :] = tensor.transpose(1, 2, 0)
    mask[:, HZ_FIRST_SLOT:, :] = True
    values = values.reshape(days * per_day, n)
    mask = mask.reshape(days * per_day, n)

    g = pd.read_csv(raw / "hangzhou-metro/graph.csv", index_col=0)
    labels = [str(c) for c in g.columns]
    if [str(i) for i in g.index] != labels or len(labels) != n + 1:
        raise ValueError("graph.csv must be square with matching header/index and one more station.")
    a = g.to_numpy(dtype=np.float64)
    drop = labels.index(HZ_DROPPED)
    nbrs = np.flatnonzero(a[drop])
    # Bridge the dropped station's neighbours so the line stays connected (trains run through it).
    bridged = []
    for p in range(len(nbrs)):
        for q in range(p + 1, len(nbrs)):
            i, j = nbrs[p], nbrs[q]
            if a[i, j] == 0:
                a[i, j] = a[j, i] = 1
                bridged.append((labels[i], labels[j]))
    keep = [k for k in range(n + 1) if k != drop]
    a = a[np.ix_(keep, keep)]
    _note(notes, shape=(days * per_day, n, 1), raw_shape=tensor.shape, dropped=HZ_DROPPED,
          dropped_neighbours=[labels[k] for k in nbrs], bridged=bridged,
          edges_raw=int(np.count_nonzero(np.triu(g.to_numpy(), 1))),
          edges=int(np.count_nonzero(np.triu(a, 1))), night_masked=int((~mask).sum()),
          zero_frac=float((values[mask] == 0).mean()),
          first_slot_total=int(tensor[:, :, 0].sum()), last_slot_total=int(tensor[:, :, -1].sum()))
    return City(
        name="hangzhou-metro", values=values[:, :, None], mask=mask, start="2019-01-01 00:00",
        interval_minutes=10, adjacency=a, kind="flow", units="passengers/10min",
        node_ids=[labels[k] for k in keep], channels=["inflow"], source=source_string("hangzhou-metro"),
    )


BUILDERS: dict[str, Callable[..., City]] = {
    "la-loop": build_la_loop,
    "nyc-taxi": build_nyc_taxi,
    "montevideo-bus": build_montevideo_bus,
    "melbourne-ped": build_melbourne_ped,
    "hangzhou-metro": build_hangzhou_metro,
}


# --------------------------------------------------------------------------- PROVENANCE.md
def _table(city: str, sums: dict[str, str]) -> str:
    lines = ["| field | value |", "|---|---|"]
    for repo, commit, path, lic in ORIGIN[city]:
        lines.append(f"| source | `{repo}` @ `{commit}`, `{path}` |")
        lines.append(f"| licence | {lic} |")
    for rel in RAW_FILES[city]:
        lines.append(f"| SHA256 `{rel}` | `{sums[rel]}` |")
    return "\n".join(lines)


def _final(c: City, size: int) -> str:
    return (f"Final: `values` {list(c.values.shape)} (T, N, C), {c.interval_minutes}-min steps from "
            f"{c.start:%Y-%m-%d %H:%M} to {c.end:%Y-%m-%d %H:%M}, {c.n_edges} non-zero off-diagonal "
            f"adjacency entries, {int((~c.mask).sum())} masked values "
            f"({100 * (~c.mask).mean():.2f} %); file `{c.name}.city` {size:,} bytes.")


def provenance(cities: dict[str, City], notes: dict[str, dict], sums: dict[str, str],
               sizes: dict[str, int]) -> str:
    la, tx, mv, mb, hz = (notes[k] for k in BUILDERS)
    total = sum(sizes.values())
    out = [
        "# Bundled cities: provenance",
        "",
        "Generated by `scripts/build_bundle.py` from the raw files in `../shared/data` (each checked",
        "against `SHA256SUMS` before use). Re-running the script reproduces these files byte for byte.",
        f"Total bundle size: {total:,} bytes ({total / 2**20:.2f} MiB) in {len(sizes)} files.",
        "",
        "Conventions for every city: `values[T, N, C]` with channel 0 the target, `mask[T, N]` True",
        "where channel 0 was observed, values set to 0 where masked, a regular time axis (naive",
        "local time), counts stored as integers by `City.save`.",
        "",
        "| city | T | N | C | interval | start | kind | units | file bytes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in cities.items():
        out.append(f"| `{name}` | {c.n_steps} | {c.n_nodes} | {c.n_channels} | {c.interval_minutes} min "
                   f"| {c.start:%Y-%m-%d %H:%M} | {c.kind} | {c.units} | {sizes[name]:,} |")

    out += ["", "## la-loop", "", _table("la-loop", sums), "",
            "- Series: `los_speed.csv` (2016 x 207, mph), one channel `speed`; 5-min steps from "
            "2012-03-01 00:00 (T-GCN: 2012-03-01 .. 03-07).",
            "- Node order and ids: the header row of `los_speed.csv` holds the 207 METR-LA sensor ids; "
            "it equals the id list of DCRNN's `adj_mx.pkl` (and `graph_sensor_ids.txt`) in the same order. "
            f"`los_adj.csv` equals `max(adj_mx, adj_mx.T)` entry by entry (max |diff| {la['adj_diff']:.1e}, "
            f"float32 rounding): `adj_mx.pkl` has {la['adj_mx_nnz']} non-zeros and is not symmetric "
            f"({la['asym_pairs']} asymmetric entries), `los_adj.csv` has {la['adj_nnz']}. So the order is "
            "established; node ids = sensor ids, coords = (latitude, longitude) from "
            "`graph_sensor_locations.csv` (`coord_kind` latlon).",
            "- Adjacency: `los_adj.csv` weights unchanged (Gaussian-kernel weights, diagonal 1, symmetric). "
            f"{len(la['isolated'])} sensor(s) have no neighbour besides themselves "
            f"({', '.join(la['isolated'])}); kept as published.",
            f"- Missing values: METR-LA rule, speed 0 = missing. The file has {la['zeros']} zeros and "
            f"{la['nonfinite']} non-finite values (gaps were interpolated upstream), so {la['masked']} values "
            "are masked.",
            "- Values are stored as float32 (speeds are averages, not integers).",
            "- " + _final(cities["la-loop"], sizes["la-loop"]),
            ]

    dead = ", ".join(tx["dead_hours"][:1] + ["..."] + tx["dead_hours"][-1:]) if len(tx["dead_hours"]) > 2 else ""
    out += ["", "## nyc-taxi", "", _table("nyc-taxi", sums), "",
            f"- Year: {tx['year']}. Every yearly file (2010-2014) spans 1 Jan 00:00 .. 31 Dec 23:00 and every "
            "one lacks 2-30 September (696 hours) and has no pickups on 1 September, so no year is complete "
            f"and none is better covered; {tx['year']} is the most recent. Its duplicated hours are handled "
            "exactly (below).",
            "- Channels: `data[:, 0]` is the ReadMe's *new-flow* (trips starting in the cell) -> channel 0 "
            "`inflow` (the target); `data[:, 1]` *end-flow* -> channel 1 `outflow`.",
            f"- De-duplication on `date`: the file has {tx['file_rows']} rows for {tx['unique_hours']} distinct "
            f"hours; {tx['dup_hours']} hours occur twice. The two copies are **not** identical: in every pair "
            "one copy has zero new-flow in all 128 cells and a few end-flows (almost all at hour 00), i.e. it "
            "holds the drop-offs of trips that began before midnight and were counted from the previous monthly "
            "trip file. Its end-flows are missing from the other copy (out/in ratio at 00:00 on those days is "
            "0.84-0.85 without them vs. 1.02-1.13 on ordinary days, and 1.06-1.09 with them, checked on 2010). "
            f"The spill-over copy comes first in {tx['dup_first_empty']} pairs (all of 2014-07-01) and second in "
            f"{tx['dup_second_empty']} (2014-03-24 .. 06-30, where it is nearly empty). We therefore **sum** the "
            f"two copies ({tx['spill_trips']} end-flow trips added in total; new-flow unchanged) instead of "
            "keeping the first, which would have replaced 2014-07-01 by an all-zero day.",
            f"- Calendar: regular hourly axis {tx['year']}-01-01 00:00 .. {tx['year']}-12-31 23:00 "
            f"({tx['calendar_hours']} hours). {tx['absent_hours']} hours are absent from the file (2-30 Sep) "
            "and get value 0, mask False.",
            f"- Also masked (value 0 in both channels): the {len(tx['dead_hours'])} hours whose new-flow is 0 "
            f"in every cell ({dead}): all of 2014-09-01 (the September trip file is absent upstream; the day "
            "holds only the August spill-over) and 2014-03-09 02:00, the non-existent hour of the DST change. "
            f"Total masked hours: {tx['masked_hours']} (x 128 cells). DST fall-back (2014-11-02 01:00) is one "
            "slot holding two clock hours; left as is.",
            "- Zeros in observed cells are real (no trips) and stay observed: "
            f"{100 * tx['zero_frac']:.1f} % of observed channel-0 (inflow) values and "
            f"{100 * tx['zero_frac_both']:.1f} % of all observed values (both channels) are 0 (the data README's "
            "56-70 % is over the raw rows of the yearly files, both channels, spill-over copies included).",
            "- Nodes: 16 x 8 grid cells in row-major order, node id `r{row}c{col}`, index `row * 8 + col`. "
            "Coords: cell centre `(x, y) = (col + 0.5, row + 0.5)` in grid-cell units (`coord_kind` xy; the "
            "cell size and the grid's orientation are not documented upstream).",
            "- Adjacency: 4-neighbour grid, weight 1, no self loops (symmetric, 232 undirected edges).",
            "- " + _final(cities["nyc-taxi"], sizes["nyc-taxi"]),
            ]

    out += ["", "## montevideo-bus", "", _table("montevideo-bus", sums), "",
            "- Series: node field `y` (744 hourly boarding counts per bus stop; `X.y` is identical), one "
            "channel `inflow`; all values observed (counts, zeros are real: "
            f"{100 * mv['zero_frac']:.1f} % zeros). Node order = JSON order; node ids = `bus_stop` (= `id`).",
            "- Start 2020-10-01 00:00: the JSON has no timestamps; the data README says October 2020, hourly, "
            "and 744 = 31 x 24. Checks: the mean daily profile is lowest at 01:00-04:00 and peaks at 08:00, "
            "so step 0 is midnight; daily totals dip on days 3-4, 10-11, 17-18, 24-25, 31 "
            "(= Sat/Sun when day 1 is Thursday 1 Oct 2020) and on day 12 (Mon 12 Oct, a public holiday in Uruguay).",
            "- Coords: the `lat`/`lon` fields are projected metres (e.g. lat 6151987, lon 589196; UTM zone "
            "21S-like), stored as `(x, y) = (lon field, lat field)` = (easting, northing), `coord_kind` xy. "
            "Link road distances agree with these coordinates (median road/straight ratio 1.00).",
            f"- Adjacency: the {mv['n_links']} directed links carry road distance d in metres "
            f"({mv['dist_min']:.1f} .. {mv['dist_max']:.1f}, mean {mv['dist_mean']:.1f}). Weight "
            f"w = exp(-(d / sigma)^2) with sigma = population std of the link distances = {mv['sigma']:.2f} m; "
            f"then symmetrised A = max(W, W^T) (there are {mv['reciprocal']} reciprocal links, so this is "
            "W + W^T). No threshold, no self loops. Note: the kernel is steep: median link weight "
            f"{mv['w_median']:.3f}, {mv['w_lt_01']} links below 0.1, and {mv['w_zero_f32']} links (d > ~1.8 km) "
            f"underflow to 0 in float32 and vanish; {mv['isolated']} stops end up with no neighbour.",
            "- " + _final(cities["montevideo-bus"], sizes["montevideo-bus"]),
            ]

    out += ["", "## melbourne-ped", "", _table("melbourne-ped", sums), "",
            f"- Series: `Node.TrafficNode` (16056 x 55, int16 hourly counts), whole period kept: hourly from "
            f"`TimeRange` start {mb['start']} to {mb['stop']} (exclusive; `TimeFitness` = 60). Node ids = "
            "`StationInfo` sensor id, coords = (lat, lon) from `StationInfo` (`coord_kind` latlon); one channel "
            "`count`.",
            "- Masking rules (mask False, value 0), applied in this order:",
            f"  1. value -1 (UCTB's missing marker; mostly whole days): {mb['flagged']} values.",
            f"  2. before the sensor's install date: {mb['before_install']} values (the last install date is "
            f"{mb['last_install']}, before the start).",
            f"  3. hours where all 55 sensors read 0: {', '.join(mb['dst_hours'])}, the non-existent 02:00 of "
            f"the DST change: {mb['dst_values']} values.",
            f"  4. runs of exact zeros that mean the sensor was off: a run of >= {MELB_RUN_DAY} consecutive zero "
            f"hours, or a run of >= {MELB_RUN_MIN} hours whose reference level is >= {MELB_REF_RATE:g} "
            "pedestrians/h, where the reference level is the median, over the same hours 1 and 2 weeks "
            "earlier and later (where those are fully observed), of the mean count over the run. Using "
            "nearby weeks (not a global median) keeps the genuinely empty nights of the 2021 lockdowns "
            f"observed. {mb['off_runs']} runs, {mb['off_values']} values.",
            f"  Total masked: {mb['masked']} values ({100 * mb['masked_frac']:.2f} %). Shorter zero runs "
            "(quiet night hours) stay observed. DST fall-back hours (one slot holding two clock hours) are "
            "left as is. No sensor is entirely missing, none dropped.",
            f"- Adjacency: haversine distance between sensors (Earth radius 6371.0088 km); for each sensor its "
            f"k = {MELB_K} nearest other sensors; sigma = population std of those {MELB_K} x 55 kNN distances "
            f"= {mb['sigma_km'] * 1000:.1f} m (kNN distances {mb['knn_d_min'] * 1000:.1f} .. "
            f"{mb['knn_d_max'] * 1000:.1f} m); w = exp(-(d / sigma)^2) on kNN pairs, symmetrised with "
            f"max(W, W^T), weights < {MELB_THRESHOLD} set to 0 except each sensor's link to its nearest neighbour, which "
            f"is always kept ({mb['rescued']} such weak links kept; without this the most isolated sensors, e.g. "
            "Errol20_T at 636 m from its nearest neighbour, would have no neighbour at all), no self loops. "
            f"Result: {mb['edges']} undirected "
            f"edges, degree {mb['deg_min']} .. {mb['deg_max']}, {mb['components']} connected component(s).",
            "- " + _final(cities["melbourne-ped"], sizes["melbourne-ped"]),
            ]

    br = ", ".join(f"{i}-{j}" for i, j in hz["bridged"]) or "none"
    out += ["", "## hangzhou-metro", "", _table("hangzhou-metro", sums), "",
            f"- Series: `tensor` {list(hz['raw_shape'])} (stations, days, slots), uint16 inflow per 10 min; one "
            "channel `inflow`.",
            "- Service-day start: 06:00. The source's sister READMEs (peterchen96/LRTC-TMCP, LRTC_DeepPnP, same "
            "tensor) state that 0:00-6:00, when there is no service, was discarded, leaving 108 slots; "
            f"108 x 10 min = 06:00-24:00. Plausibility: the last slot (23:50-24:00) totals {hz['last_slot_total']} "
            f"entries over 80 stations and 25 days, i.e. ~0 (service over); the first slot (06:00-06:10) totals "
            f"{hz['first_slot_total']} (stations just opened). A 05:30 start would put {hz['first_slot_total']} "
            "entries before the first trains; peaks fall at 08:00-08:10 and 17:40-17:50.",
            "- Calendar start 2019-01-01 00:00 (Tianchi data, 1-25 Jan 2019): daily totals dip on days 5-6, "
            "12-13, 19-20 = Sat/Sun when day 1 is Tuesday 1 Jan 2019.",
            f"- Regular 24-hour calendar: 144 slots/day x 25 days. Slots 00:00-05:50 (36 per day, "
            f"{hz['night_masked']} values) get value 0 and mask False: the metro is closed, nothing was "
            "measured, and filling true zeros would teach models 6-hour blocks of exact zeros that the "
            "source never recorded; the mask keeps them out of losses and metrics while the time axis stays "
            "regular. Zeros inside service hours are observed "
            f"({100 * hz['zero_frac']:.1f} % of observed values).",
            f"- Graph: `graph.csv` is 81 x 81 (0/1, symmetric, {hz['edges_raw']} undirected edges) with stations "
            "labelled 0..80 (Tianchi station ids); the tensor has 80 rows, taken to be the same ids in "
            f"increasing order without station {hz['dropped']}, which has no series. Station {hz['dropped']} is "
            "the station the Tianchi data has no records for (transdim author's note: \"trips at station #54 "
            "are missing for the entire period\"). Caveat: that note numbers lines from 1, which would make "
            "it id 53 instead; both 53 and 54 are interior stations of line 2 with degree 2 on the chain "
            "52-53-54-55, so after dropping either one and bridging its neighbours the 80 x 80 adjacency is "
            "identical; only the id label of series row 53 ('54' vs '53') depends on the choice. The data "
            "cannot tell them apart (neighbour-correlation scores are flat across candidates).",
            f"- Dropped station {hz['dropped']} (neighbours {', '.join(hz['dropped_neighbours'])}); its neighbours "
            f"were connected ({br}) so line 2 stays connected: trains run through the station. Result: "
            f"{hz['edges']} undirected edges (PVCGN's 80-station HZMetro graph also has 84 + 80 self loops "
            "= 248 directed entries). No self loops added. Node ids = graph.csv labels of the 80 kept stations.",
            "- No coordinates in the source.",
            "- " + _final(cities["hangzhou-metro"], sizes["hangzhou-metro"]),
            ]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", type=Path, default=DEFAULT_RAW, help="raw data folder (default: %(default)s)")
    ap.add_argument("--out", type=Path, default=BUNDLED, help="output folder (default: %(default)s)")
    ap.add_argument("--only", nargs="+", choices=sorted(BUILDERS), help="build only these cities")
    args = ap.parse_args(argv)
    names = args.only or list(BUILDERS)
    try:
        sums = verify(args.raw, sorted({p for n in names for p in RAW_FILES[n]}))
    except ChecksumError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    cities: dict[str, City] = {}
    notes: dict[str, dict] = {}
    sizes: dict[str, int] = {}
    for name in names:
        notes[name] = {}
        city = BUILDERS[name](args.raw, notes[name])
        path = city.save(args.out / f"{name}.city")
        path.chmod(0o644)  # atomic_write_bytes' temp file is 0600; package data must be world-readable
        sizes[name] = path.stat().st_size
        cities[name] = city
        print(f"{name:16s} {str(list(city.values.shape)):18s} {sizes[name]:>10,} bytes  {path}")
    print(f"{'total':16s} {'':18s} {sum(sizes.values()):>10,} bytes")
    if set(names) == set(BUILDERS):
        prov = args.out / "PROVENANCE.md"
        prov.write_text(provenance(cities, notes, sums, sizes))
        prov.chmod(0o644)
        print(f"wrote {prov}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
