"""`gpdiff run`'s settings checked before any stage: each bad setting is one line naming it; config files that are
not UTF-8 or not YAML; an unknown target city."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import one_line_error, run_cli

BAD_RUN_SETTINGS = [
    pytest.param(["--data-dir", "{tmp}/nowhere"], ["--data-dir", "is not a folder"], id="data-dir-missing"),
    pytest.param(["--set", "target_days=.nan"], ["target_days must be a number of days > 0, got nan"],
                 id="target-days-nan"),
    pytest.param(["--set", "test_fraction=1.5"], ["test_fraction must be between 0 and 1"], id="test-fraction-over-1"),
    pytest.param(["--methods", ""], ["no methods to run"], id="no-methods"),
    pytest.param(["--sources", "nyc-taxi,nyc-taxi"], ["sources list 'nyc-taxi' more than once"],
                 id="source-twice"),
    pytest.param(["--set", "methods.reptile.meta_stepz=5"], ["methods.reptile.meta_stepz", "known at methods.reptile"],
                 id="method-setting-misspelt"),
    pytest.param(["--set", "methods.reptile.max_steps=-5"],
                 ["methods.reptile.max_steps must be at least 1, got -5"], id="method-setting-negative"),
    pytest.param(["--set", "methods.gpd_zero_shot.lr=0.1"], ["method 'gpd_zero_shot' takes no settings"], id="method-without-settings"),
    pytest.param(["--set", "methods.gpd.lr=0.1"], ["unknown run config field(s) ['methods.gpd.lr']", "shrinkages"],
                 id="method-unknown-setting"),
    pytest.param(["--set", "methods.reptile.inner_lr=.nan"], ["inner_lr and meta_lr must be numbers > 0"],
                 id="method-lr-nan"),
    pytest.param(["--set", "methods=5"], ["methods must be a list of method names or a mapping"],
                 id="methods-not-a-list"),
    pytest.param(["--methods", "gpd,gpd"], ["methods list 'gpd' more than once"], id="method-twice"),
    pytest.param(["--methods", "seasonal_naive", "--set", "methods.reptile.max_steps=3"],
                 ["sets a method that --methods leaves out"], id="settings-of-a-method-left-out"),
]


@pytest.mark.parametrize("args, needles", BAD_RUN_SETTINGS)
def test_run_settings_are_checked_before_any_stage(tmp_path: Path, args: list[str], needles: list[str]) -> None:
    out = str(tmp_path / "run")
    one_line_error(run_cli("run", "--out", out, *[a.format(tmp=tmp_path) for a in args]), *needles)
    assert not (tmp_path / "run").exists()


def test_an_unknown_target_city_names_the_cities_of_the_data_dir(tmp_path: Path) -> None:
    out = str(tmp_path / "run")
    (tmp_path / "empty").mkdir()
    one_line_error(run_cli("run", "--out", out, "--data-dir", str(tmp_path / "empty"), "--target", "nope"),
                   "unknown city 'nope': not in --data-dir", "(empty)")
    (tmp_path / "cities" / "mine").mkdir(parents=True)
    one_line_error(run_cli("run", "--out", out, "--data-dir", str(tmp_path / "cities"), "--target", "nope"),
                   "unknown city 'nope': not in --data-dir", "(mine)", "melbourne-ped")


def test_config_files_that_are_not_utf8_or_not_yaml_are_named(tmp_path: Path) -> None:
    (tmp_path / "bytes.yaml").write_bytes(b"\xff\xfeseed: 1\n")
    one_line_error(run_cli("run", "--config", str(tmp_path / "bytes.yaml")), "is not UTF-8 text")
    (tmp_path / "list.yaml").write_text("- seed: 1\n")
    one_line_error(run_cli("run", "--config", str(tmp_path / "list.yaml"), "--methods", "gpd"),
                    "a run config must be a mapping of settings, got list")
    (tmp_path / "syntax.yaml").write_text("seed: 1\nzoo: {lr: 0.1\nout: x\n")
    one_line_error(run_cli("run", "--config", str(tmp_path / "syntax.yaml")), "not valid YAML (line 3, column")
