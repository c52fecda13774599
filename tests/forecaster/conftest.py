"""Pretrained folders on tiny synthetic sources (beta, gamma), shared by the forecaster tests: one without
the zoo (as ``gpdiff pretrain --sources`` writes it) and one with it (``--with-zoo``), from the same stages."""

from pathlib import Path

import pytest

from gpdiff.data.formats.city_folder import write_city_folder
from gpdiff.data.synthetic import synthetic_city
from gpdiff.experiment.pipeline import pretrain_sources
from gpdiff.experiment.runconfig import RunConfig
from tests.conftest import TINY


@pytest.fixture(scope="session")
def pretrain_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("pretrain")
    for name, seed, n in (("beta", 2, 8), ("gamma", 3, 5)):
        write_city_folder(synthetic_city(name, n_nodes=n, days=12, seed=seed), root / "data" / name)
    return root


def pretrain_config(root: Path) -> RunConfig:
    return RunConfig.from_dict({**TINY, "sources": ["beta", "gamma"], "data_dir": str(root / "data")})


@pytest.fixture(scope="session")
def pretrained(pretrain_root) -> Path:
    """A pretrained folder without the zoo (with pooled_linear's ridge)."""
    pretrain_sources(pretrain_config(pretrain_root), pretrain_root / "gpd", pretrain_root / "stages", progress=False,
                     log=lambda m: None)
    return pretrain_root / "gpd"


@pytest.fixture(scope="session")
def pretrained_zoo(pretrain_root, pretrained) -> Path:
    """The same sources' pretrained folder with the zoo (its stages reused: only the zoo fits are new)."""
    pretrain_sources(pretrain_config(pretrain_root), pretrain_root / "gpd-zoo", pretrain_root / "stages",
                     progress=False, log=lambda m: None, with_zoo=True)
    return pretrain_root / "gpd-zoo"
