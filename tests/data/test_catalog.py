"""The bundled cities: shapes, calendars, the quirks of each data set, and reproducibility.

The ``.city`` files are committed, so everything except the rebuild test runs without the raw
data. The rebuild test needs ``../shared/data`` (skipped when it is absent).
"""

from __future__ import annotations

import functools
import importlib.util
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpdiff.data.catalog import BUNDLED_DIR, bundled_names
from gpdiff.data.city import City

REPO = Path(__file__).resolve().parents[2]
RAW = REPO.parent / "shared" / "data"
NAMES = ["la-loop", "nyc-taxi", "montevideo-bus", "melbourne-ped", "hangzhou-metro"]

_cache: dict[str, City] = {}


def city(name: str) -> City:
    if name not in _cache:
        _cache[name] = City.load(BUNDLED_DIR / f"{name}.city")
    return _cache[name]


def observed_zero_fraction(c: City, channel: int = 0) -> float:
    return float((c.values[:, :, channel][c.mask] == 0).mean())


def test_all_cities_bundled_and_small():
    assert set(NAMES) <= set(bundled_names())
    total = sum((BUNDLED_DIR / f"{n}.city").stat().st_size for n in NAMES)
    assert total <= 15 * 2**20
    assert (BUNDLED_DIR / "PROVENANCE.md").is_file()


@functools.cache
def provenance() -> dict[str, dict[str, object]]:
    """What PROVENANCE.md states about every bundled city: its summary-table row, its source rows
    (as ``City.source`` spells them), its ``Final:`` line and the text of its section."""
    text = (BUNDLED_DIR / "PROVENANCE.md").read_text()
    out: dict[str, dict[str, object]] = {}
    for m in re.finditer(r"^\| `([\w-]+)` \| (\d+) \| (\d+) \| (\d+) \| (\d+) min \| ([\d-]+ [\d:]+) \| (\w+) \| "
                         r"(\S+) \| ([\d,]+) \|$", text, re.MULTILINE):
        name, t, n, c, interval, start, kind, units, size = m.groups()
        out[name] = {"shape": (int(t), int(n), int(c)), "interval": int(interval), "start": pd.Timestamp(start),
                     "kind": kind, "units": units, "bytes": int(size.replace(",", ""))}
    for section in re.split(r"^## ", text, flags=re.MULTILINE)[1:]:
        name = section.split("\n", 1)[0].strip()
        sources = re.findall(r"^\| source \| `([^`]+)` @ `(\w+)`, `([^`]+)` \|$", section, re.MULTILINE)
        final = re.search(r"^- Final: `values` \[(\d+), (\d+), (\d+)\] \(T, N, C\), (\d+)-min steps from "
                          r"([\d-]+ [\d:]+) to ([\d-]+ [\d:]+), (\d+) non-zero off-diagonal adjacency entries, "
                          r"(\d+) masked values \(([\d.]+) %\); file `([\w-]+)\.city` ([\d,]+) bytes\.$",
                          section, re.MULTILINE)
        assert final, f"PROVENANCE.md: no parsable 'Final:' line for {name}"
        t, n, c, interval, start, end, edges, masked, share, file, size = final.groups()
        out.setdefault(name, {}).update(
            section=section, source="; ".join(f"{repo}@{commit}:{paths}" for repo, commit, paths in sources),
            final={"shape": (int(t), int(n), int(c)), "interval": int(interval), "start": pd.Timestamp(start),
                   "end": pd.Timestamp(end), "edges": int(edges), "masked": int(masked), "share": float(share),
                   "file": file, "bytes": int(size.replace(",", ""))})
    return out


# Channel names as PROVENANCE.md's "Series"/"Channels" notes give them (channel 0 = target).
CHANNELS = {"la-loop": ["speed"], "nyc-taxi": ["inflow", "outflow"], "montevideo-bus": ["inflow"],
            "melbourne-ped": ["count"], "hangzhou-metro": ["inflow"]}


def test_provenance_documents_every_bundled_city():
    assert sorted(provenance()) == sorted(NAMES) == bundled_names()
    total = re.search(r"Total bundle size: ([\d,]+) bytes .* in (\d+) files", (BUNDLED_DIR / "PROVENANCE.md").read_text())
    assert total, "PROVENANCE.md: no 'Total bundle size' line"
    assert int(total.group(2)) == len(NAMES)
    assert int(total.group(1).replace(",", "")) == sum((BUNDLED_DIR / f"{n}.city").stat().st_size for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_loads_and_validates(name):
    """Each bundled file is the city PROVENANCE.md describes: size on disk, shape, calendar, kind,
    units, channels, source, graph and missing values."""
    c, doc = city(name), provenance()[name]
    final = doc["final"]
    # the summary table and the section's Final line agree with each other ...
    assert final["file"] == name
    for key in ("shape", "interval", "start", "bytes"):
        assert doc[key] == final[key], key
    # ... and with the file
    assert (BUNDLED_DIR / f"{name}.city").stat().st_size == doc["bytes"]
    assert c.name == name
    assert c.values.shape == doc["shape"]
    assert c.interval_minutes == doc["interval"]
    assert c.start == doc["start"] and c.end == final["end"]
    assert c.kind == doc["kind"] and c.units == doc["units"]
    assert c.channels == CHANNELS[name]
    assert all(f"`{ch}`" in doc["section"] for ch in c.channels)
    assert c.source == doc["source"] and "@" in c.source
    assert c.n_edges == final["edges"]
    # missing values: the stated count and share, a sensible share, stored as 0
    missing = int((~c.mask).sum())
    assert missing == final["masked"]
    assert round(100 * missing / c.mask.size, 2) == pytest.approx(final["share"], abs=0.005)
    assert missing / c.mask.size <= 0.25  # the most: hangzhou-metro's closed night hours
    assert c.mask.mean(axis=0).min() > 0.5  # every node is observed most of the time
    assert np.all(c.values[:, :, 0][~c.mask] == 0)  # missing values are stored as 0
    assert np.all(np.isfinite(c.values))  # every channel, not just observed channel-0 values


@pytest.mark.parametrize("name", NAMES)
def test_adjacency_symmetric_and_no_isolated_nodes(name):
    a = city(name).adjacency
    np.testing.assert_array_equal(a, a.T)
    off = a.copy()
    np.fill_diagonal(off, 0)
    isolated = int(((off > 0).sum(axis=1) == 0).sum())
    # los_adj.csv is kept as published: one METR-LA sensor has no neighbour above its threshold
    assert isolated == (1 if name == "la-loop" else 0)


def test_la_loop():
    c = city("la-loop")
    assert c.values.shape == (2016, 207, 1)
    assert c.interval_minutes == 5 and c.kind == "speed" and c.units == "mph"
    assert c.start == pd.Timestamp("2012-03-01 00:00") and c.end == pd.Timestamp("2012-03-07 23:55")
    assert c.node_ids[:3] == ["773869", "767541", "767542"]  # METR-LA sensor ids, adj_mx.pkl order
    assert c.coord_kind == "latlon" and c.coords.shape == (207, 2)
    assert np.all((c.coords[:, 0] > 33.9) & (c.coords[:, 0] < 34.4))  # Los Angeles latitudes
    assert np.all((c.coords[:, 1] > -118.6) & (c.coords[:, 1] < -118.1))
    assert c.mask.all()  # no zeros (= missing in speed data)
    assert (c.values[:, :, 0] > 0).all()
    assert np.allclose(np.diag(c.adjacency), 1)  # los_adj.csv kept as published


def test_nyc_taxi():
    c = city("nyc-taxi")
    assert c.values.shape == (8760, 128, 2)  # one whole year on a regular hourly calendar
    assert c.interval_minutes == 60 and c.channels == ["inflow", "outflow"]
    assert c.start == pd.Timestamp("2014-01-01 00:00") and c.end == pd.Timestamp("2014-12-31 23:00")
    assert c.timestamps.is_unique
    assert c.node_ids[0] == "r0c0" and c.node_ids[-1] == "r15c7" and c.coord_kind == "xy"
    # whole-grid hours are observed or not: September (file absent upstream) and the DST hour
    assert (c.mask.all(axis=1) | ~c.mask.any(axis=1)).all()
    missing = c.timestamps[~c.mask[:, 0]]
    assert len(missing) == 721
    assert ((missing.month == 9) | (missing == pd.Timestamp("2014-03-09 02:00"))).all()
    assert np.all(c.values[~c.mask] == 0)
    both = float((c.values[c.mask] == 0).mean())
    assert 0.56 <= both <= 0.70  # the taxi grid is mostly zeros
    assert 0.56 <= observed_zero_fraction(c) <= 0.75
    # 2014-07-01 had its duplicated hours resolved to real data, not the empty spill-over copy
    jul1 = c.timestamps.normalize() == pd.Timestamp("2014-07-01")
    assert c.values[jul1, :, 0].sum() > 100_000
    # 4-neighbour grid: corners 2, edges 3, interior 4 neighbours
    deg = (c.adjacency > 0).sum(axis=1)
    assert sorted(set(deg.tolist())) == [2, 3, 4] and deg.sum() == 2 * 232


def test_montevideo_bus():
    c = city("montevideo-bus")
    assert c.values.shape == (744, 675, 1)
    assert c.interval_minutes == 60 and c.start == pd.Timestamp("2020-10-01 00:00")
    assert c.kind == "flow" and c.units == "passengers/h" and c.coord_kind == "xy"
    assert c.mask.all()
    assert 0.75 <= observed_zero_fraction(c) <= 0.85  # ~80 % zeros
    assert c.coords[:, 0].min() > 5e5 and c.coords[:, 1].min() > 6e6  # projected metres (x, y)
    assert c.adjacency.max() <= 1 and np.count_nonzero(np.diag(c.adjacency)) == 0


def test_melbourne_ped():
    c = city("melbourne-ped")
    assert c.values.shape == (16056, 55, 1)
    assert c.interval_minutes == 60 and c.start == pd.Timestamp("2021-01-01 00:00")
    assert c.coord_kind == "latlon" and np.all(np.abs(c.coords[:, 0] + 37.81) < 0.05)
    assert (c.values >= 0).all()  # the -1 missing markers are masked
    assert 0.005 < (~c.mask).mean() < 0.05
    # the non-existent DST hours are masked for every sensor
    for t in ("2021-10-03 02:00", "2022-10-02 02:00"):
        k = c.timestamps.get_loc(pd.Timestamp(t))
        assert not c.mask[k].any()
    assert np.count_nonzero(np.diag(c.adjacency)) == 0


def test_hangzhou_metro():
    c = city("hangzhou-metro")
    assert c.values.shape == (3600, 80, 1)
    assert c.interval_minutes == 10 and c.steps_per_day == 144
    assert c.start == pd.Timestamp("2019-01-01 00:00") and c.end == pd.Timestamp("2019-01-25 23:50")
    assert "54" not in c.node_ids and len(c.node_ids) == 80
    m = c.mask.reshape(25, 144, 80)
    v = c.values[:, :, 0].reshape(25, 144, 80)
    assert not m[:, :36].any() and (v[:, :36] == 0).all()  # night 00:00-05:50 closed, masked
    assert m[:, 36:].all()  # service slots 06:00-23:50 observed
    assert 0.0 < observed_zero_fraction(c) < 0.1
    assert np.array_equal(np.unique(c.adjacency), [0, 1])
    assert int(np.triu(c.adjacency, 1).sum()) == 84


def _load_script():
    spec = importlib.util.spec_from_file_location("build_bundle", REPO / "scripts" / "build_bundle.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_build_is_deterministic_and_matches_bundle():
    if not (RAW / "SHA256SUMS").is_file():
        pytest.skip(f"raw data folder {RAW} not available")
    mod = _load_script()
    first = mod.build_hangzhou_metro(RAW).to_bytes()
    second = mod.build_hangzhou_metro(RAW).to_bytes()
    assert first == second
    assert first == (BUNDLED_DIR / "hangzhou-metro.city").read_bytes()


def test_checksum_mismatch_names_the_file(tmp_path):
    if not (RAW / "SHA256SUMS").is_file():
        pytest.skip(f"raw data folder {RAW} not available")
    mod = _load_script()
    (tmp_path / "hangzhou-metro").mkdir()
    (tmp_path / "hangzhou-metro" / "graph.csv").write_text("tampered\n")
    (tmp_path / "SHA256SUMS").write_text((RAW / "SHA256SUMS").read_text())
    with pytest.raises(mod.ChecksumError, match="hangzhou-metro/graph.csv"):
        mod.verify(tmp_path, ["hangzhou-metro/graph.csv"])
