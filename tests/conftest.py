"""Fixtures and helpers shared by several test modules: thread settings, small synthetic cities, the tiny run
config of the end-to-end tests and a toy zoo with its prompts. Test modules import the helpers from here
(``from tests.conftest import TINY``); tests/ is a package, so modules of the same name in two folders can
sit side by side."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from gpdiff.cli import main
from gpdiff.data.city import City
from gpdiff.data.formats.city_folder import write_city_folder
from gpdiff.data.splits import source_split
from gpdiff.data.synthetic import synthetic_city
from gpdiff.data.windows import CityData
from gpdiff.diffusion import DiffusionConfig
from gpdiff.models.base import ParamSpec
from gpdiff.prompts import PromptSet
from gpdiff.utils.config import merge
from gpdiff.zoo.params import ParamCollection

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread: these tensors are tiny, and on a shared CPU extra threads only wait."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def two_channel(city: City) -> City:
    """The same city with an extra input channel (cities with different channels share one zoo)."""
    values = np.concatenate([city.values, city.values * 0.5], axis=2)
    return City(name=city.name, values=values, mask=city.mask, start=city.start,
                interval_minutes=city.interval_minutes, adjacency=city.adjacency, kind=city.kind,
                units=city.units, node_ids=city.node_ids, channels=["target", "half"], coords=city.coords,
                coord_kind=city.coord_kind)


@pytest.fixture(scope="session")
def two_source_cities() -> list[City]:
    """Two tiny source cities of different size, interval (1 h, 30 min) and channel count (1, 2)."""
    return [synthetic_city("alpha", n_nodes=6, days=8, seed=0, k=3),
            two_channel(synthetic_city("beta", n_nodes=5, days=6, interval_minutes=30, seed=1, k=2))]


@pytest.fixture(scope="session")
def small_city() -> City:
    """A tiny hourly city (5 nodes, 3 days, 72 steps) with about 7 % of its values missing.
    Shared by the whole session: do not modify it."""
    return synthetic_city("small", n_nodes=5, days=3, missing=0.1)


@pytest.fixture
def month_city() -> City:
    """A 4-node hourly city of 20 days, long enough for a few-shot target split (days of training,
    a validation day, a test period). A fresh copy per test, so a test may modify it."""
    return synthetic_city("month", n_nodes=4, days=20, seed=1)


# ------------------------------------------------------------------ the end-to-end tests' tiny run
METHODS = ["seasonal_naive", "historical_average", "target_only", "transfer_zero_shot", "transfer", "mean_params",
           "retrieval", "knn_residual", "reptile", "gpd_zero_shot", "gpd"]
TINY = dict(
    target_days=3, seed=0, device="cpu",
    window={"history": 12, "horizon": 3, "n_neighbors": 3},
    anchor={"max_steps": 6, "eval_every": 3, "nodes_per_step": 8, "batch_size": 8, "val_nodes": 16},
    zoo={"max_epochs": 2, "steps_per_epoch": 3, "batch_size": 16},
    prompts={"temporal": "stats"},
    diffusion={"max_steps": 30, "batch_size": 16, "warmup": 5, "denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2}},
    generate={"num_inference_steps": 5},
    finetune={"max_epochs": 2, "steps_per_epoch": 2, "batch_size": 8},
    blend={"naive": []},  # each method alone; test_blend_... turns the default blend on
    methods={**{m: {} for m in METHODS}, "knn_residual": {"ks": [1, 2], "shrinkages": [0.0, 0.5]},
             "reptile": {"max_steps": 2, "inner_steps": 2}},
)


def tiny_cities(root: Path, target_scale: float = 1.0) -> Path:
    """Three tiny synthetic city folders (alpha 6 nodes, beta 8, gamma 5; 12 days) under ``root``; alpha's test
    period scaled by ``target_scale``."""
    for name, seed, n in (("alpha", 1, 6), ("beta", 2, 8), ("gamma", 3, 5)):
        c = synthetic_city(name, n_nodes=n, days=12, seed=seed)
        if name == "alpha" and target_scale != 1.0:
            test_start = c.n_steps - int(round(0.2 * c.n_steps))
            c.values[test_start:] *= target_scale
        write_city_folder(c, root / name)
    return root


# ------------------------------------------------------------------ a toy zoo and its prompts
SPEC = [ParamSpec("gc.w", (6, 5), "spatial"), ParamSpec("t.w", (12, 4), "temporal"), ParamSpec("t.b", (4,), "temporal"),
        ParamSpec("out", (4, 3), "temporal")]
N_PARAMS = sum(s.numel for s in SPEC)


def toy(n: int = 40, seed: int = 0, city: str = "c") -> tuple[ParamCollection, PromptSet]:
    """Parameters that are a smooth function of 3-d prompt latents."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 3, generator=g)
    params = torch.tanh(z @ torch.randn(3, 8, generator=g)) @ torch.randn(8, N_PARAMS, generator=g)
    ids = [f"n{i}" for i in range(n)]
    zoo = ParamCollection(params, ids, [city] * n, "toy", {"preset": "small", "history": 12}, SPEC)
    prompts = PromptSet(torch.tanh(z[:, :2] @ torch.randn(2, 5, generator=g)), torch.tanh(z @ torch.randn(3, 7, generator=g)),
                        ids, [city] * n, {"temporal_encoder": "test"})
    return zoo, prompts


def tiny_config(**kw) -> DiffusionConfig:  # type: ignore[no-untyped-def]
    """The small diffusion preset shrunk to seconds; ``kw`` nested like ``DiffusionConfig.to_dict()``."""
    base = {"denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2, "token_dim": 16}, "max_steps": 20,
            "batch_size": 16, "checkpoint_every": 10}
    return DiffusionConfig.from_dict(merge(base, kw))


# ------------------------------------------------------------------ a full disk
needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names open files through /proc")


def fail_writes(monkeypatch, code: int, where: str = "") -> None:
    """Make every atomic write whose path contains ``where`` fail at its fsync with ``code``, as a
    full disk or a spent quota does (often only at flush time on network file systems)."""
    import gpdiff.utils.io

    real = os.fsync

    def fsync(fd: int) -> None:
        if where in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(gpdiff.utils.io.os, "fsync", fsync)


# ------------------------------------------------------------------ user input: small city folders, the CLI
SERIES_IDS = ["a", "b", "c"]


STAMPS = list(pd.date_range("2024-01-01", periods=48, freq="h").strftime("%Y-%m-%d %H:%M"))


def series_folder(d: Path, stamps: list[str], values: np.ndarray | None = None, sep: str = ",", decimal: str = ".",
            header: str = "timestamp") -> Path:
    """A city folder: series.csv with the given timestamp texts, an edges.csv over SERIES_IDS."""
    d.mkdir(parents=True, exist_ok=True)
    values = values if values is not None else np.arange(len(stamps) * 3, dtype=float).reshape(-1, 3) + 1.5
    lines = [sep.join([header, *SERIES_IDS])]
    for s, row in zip(stamps, values):
        lines.append(sep.join([s, *(f"{v:g}".replace(".", decimal) for v in row)]))
    (d / "series.csv").write_text("\n".join(lines) + "\n")
    pd.DataFrame([["a", "b"], ["b", "c"]], columns=["from", "to"]).to_csv(d / "edges.csv", index=False)
    return d


def run_cli(*args: str):
    return CliRunner().invoke(main, list(args))


def one_line_error(r, *needles: str) -> None:
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    for n in needles:
        assert n in lines[0], lines[0]




@pytest.fixture(scope="module")
def context_data(two_source_cities) -> CityData:
    """The first source city with the daily seasonal context (6 nodes, 8 days, hourly)."""
    city = two_source_cities[0]
    return CityData(city, source_split(city.n_steps), n_neighbors=7, context="daily")


@pytest.fixture(scope="module")
def context_batch(context_data):
    """Five training windows of every node of ``context_data``."""
    n = context_data.n_nodes
    return context_data.batch(torch.arange(n), torch.from_numpy(context_data.origins("train")[:5]).expand(n, -1))


def dcrnn_h5(d: Path, n: int = 3, key: str = "df") -> tuple[Path, list[str], np.ndarray]:
    """A small h5 file of the DCRNN layout (``d/metr-la.h5``: 60 five-minute steps of ``n`` sensors),
    its sensor ids and values."""
    d.mkdir(parents=True, exist_ok=True)
    ids = [f"7{i:05d}" for i in range(n)]
    vals = np.random.default_rng(0).uniform(20, 70, (60, n))
    pd.DataFrame(vals, index=pd.date_range("2012-03-01", periods=60, freq="5min"), columns=ids).to_hdf(
        d / "metr-la.h5", key=key, format="fixed")
    return d / "metr-la.h5", ids, vals
