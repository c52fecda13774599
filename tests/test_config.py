"""Config trees: where a wrong setting came from (the file, --set, a suite's base, experiment or grid)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gpdiff.bench import load_suite
from gpdiff.cli import main
from gpdiff.config import origin_of, path_origins
from gpdiff.errors import GpdiffError
from gpdiff.runconfig import RunConfig


def _yaml(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


def test_origin_is_the_longest_listed_prefix_of_whole_components():
    origins = {"zoo": "file", "zoo.lr": "--set zoo.lr=1"}
    assert origin_of("zoo.lr", origins) == "--set zoo.lr=1"
    assert origin_of("zoo.lr_decay", origins) == "file"  # zoo.lr is not a prefix of zoo.lr_decay
    assert origin_of("window.history", origins, "default") == "default"
    assert path_origins({"zoo": {"lr": 1, "model": "stid"}, "methods": {"gpd": {}}, "seed": 0}, "x") == {
        "zoo.lr": "x", "zoo.model": "x", "methods.gpd": "x", "seed": "x"}


@pytest.mark.parametrize("assignment,message", [
    ("steps=3", "--set steps=3: run config setting 'steps' has moved to 'generate.num_inference_steps'"),
    ("zoo.k=3", "--set zoo.k=3: run config setting 'zoo.k' has moved to 'window.n_neighbors'"),
    ("zoo.lrr=0.1", "--set zoo.lrr=0.1: unknown run config field(s) ['zoo.lrr']"),
    ("zoo.lr=fast", "--set zoo.lr=fast: run config field zoo.lr must be a float"),
    ("zoo={lr: 0.1, k: 3}", "--set zoo={lr: 0.1, k: 3}: run config setting 'zoo.k' has moved"),
    ("window=5", "--set window=5: run config field window must be a mapping"),
])
def test_a_wrong_set_next_to_a_config_file_is_blamed_on_set(tmp_path, assignment, message):
    path = _yaml(tmp_path / "run.yaml", {"zoo": {"lr": 0.01}, "window": {"history": 12}})
    with pytest.raises(GpdiffError) as err:
        RunConfig.from_yaml(path, assignments=[assignment])
    assert str(err.value).startswith(message) and str(path) not in str(err.value)


def test_a_wrong_key_in_the_file_is_still_blamed_on_the_file(tmp_path):
    path = _yaml(tmp_path / "run.yaml", {"zoo": {"lr": 0.01, "lrr": 1}, "steps": 5})
    with pytest.raises(GpdiffError, match=rf"^{path}: run config setting 'steps' has moved"):
        RunConfig.from_yaml(path, assignments=["zoo.lr=0.1"])
    path = _yaml(tmp_path / "run.yaml", {"zoo": {"lr": 0.01, "lrr": 1}})
    with pytest.raises(GpdiffError, match=rf"^{path}: unknown run config field\(s\) \['zoo.lrr'\]"):
        RunConfig.from_yaml(path, {"zoo": {"model": "stid"}}, ["zoo.lr=0.1"])  # overrides of a sibling key too
    with pytest.raises(GpdiffError, match=rf"^--set zoo.bad=1: unknown run config field\(s\) \['zoo.bad'\];"):
        RunConfig.from_yaml(path, assignments=["zoo.bad=1"])  # one place per message: the --set key first


def test_cli_run_blames_set_not_the_config_file(tmp_path):
    path = _yaml(tmp_path / "run.yaml", {"zoo": {"lr": 0.01}})
    r = CliRunner().invoke(main, ["run", "--config", str(path), "--set", "steps=3", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "--set steps=3: run config setting 'steps' has moved" in r.output
    assert str(path) not in r.output and r.output.count("\n") == 1 and not (tmp_path / "r").exists()


@pytest.mark.parametrize("doc,message", [
    ({"base": {"steps": 5}, "experiments": [{"target": "a"}]},
     "suite.yaml: base: run config setting 'steps' has moved"),
    ({"base": {"zoo": {"lr": 0.1}}, "experiments": [{"target": "a", "zoo": {"lrr": 1}}]},
     "suite.yaml: experiments[0]: unknown run config field(s) ['zoo.lrr']"),
    ({"base": {"zoo": {"lrr": 0.1}}, "experiments": [{"target": "a", "zoo": {"lr": 1}}]},
     "suite.yaml: base: unknown run config field(s) ['zoo.lrr']"),
    ({"base": {"zoo.lr": "x"}, "experiments": [{"target": "a"}, {"target": "b", "zoo.lr": 0.1}]},
     "suite.yaml: base: run config field zoo.lr must be a float"),
    ({"experiments": [{"target": "a"}], "grid": {"zoo.k": [3]}},
     "suite.yaml: grid (zoo.k=3): run config setting 'zoo.k' has moved"),
])
def test_a_suite_blames_base_experiment_or_grid(tmp_path, doc, message):
    path = _yaml(tmp_path / "suite.yaml", doc)
    with pytest.raises(GpdiffError) as err:
        load_suite(path, tmp_path / "out")
    assert str(err.value).startswith(f"{tmp_path}/{message}"), str(err.value)
