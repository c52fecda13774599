"""`gpdiff zoo train` and `show` on the command line, and a flat zoo config of the earlier layout named."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gpdiff.cli import main
from gpdiff.data.city import City
from gpdiff.zoo.params import ParamCollection

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cities(two_source_cities) -> list[City]:
    return two_source_cities


def test_cli_train_and_show(cities, tmp_path):
    paths = []
    for city in cities:
        paths.append(str(city.save(tmp_path / f"{city.name}.city")))
    out = tmp_path / "zoo"
    runner = CliRunner()
    args = ["zoo", "train", "--cities", ",".join(paths), "--model", "stid", "--out", str(out), "--max-epochs", "1",
            "--steps-per-epoch", "2", "--batch-size", "8", "--n-neighbors", "3", "--device", "cpu", "--quiet"]
    res = runner.invoke(main, args)
    assert res.exit_code == 0, res.output
    assert "alpha" in res.output and "beta" in res.output
    res = runner.invoke(main, ["zoo", "show", str(out)])
    assert res.exit_code == 0, res.output
    assert "naive MAE" in res.output and "stid" in res.output
    assert len(ParamCollection.load(out)) == 11
    res = runner.invoke(main, ["zoo", "train", "--cities", paths[0], "--model", "nope", "--out", str(out)])
    assert res.exit_code == 2 and "unknown base model" in res.output


def test_cli_names_a_flat_zoo_config_of_the_earlier_layout(tmp_path):
    old = tmp_path / "zoo.yaml"
    old.write_text("lr: 0.01\nmax_epochs: 3\n")
    res = CliRunner().invoke(main, ["zoo", "train", "--cities", "nyc-taxi", "--out", str(tmp_path / "z"),
                                    "--config", str(old)])
    assert res.exit_code == 2 and "nest them under `zoo:`" in res.output and "'lr'" in res.output
    assert not (tmp_path / "z").exists()
