"""Flags bound to the run config tree: each names a real field, shows that field's default from the tree
(typed nowhere else), and only the flags given become settings."""
from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from gpdiff.cli.options import ConfigOption, config_assignments, config_default, config_option
from gpdiff.cli.run import run
from gpdiff.cli.zoo import train
from gpdiff.experiment.runconfig import RunConfig


def test_config_default_reads_the_tree() -> None:
    cfg = RunConfig()
    assert config_default("zoo.lr") == cfg.zoo.lr and config_default("model.name") == cfg.model.name
    assert config_default("generate.num_inference_steps") == cfg.generate.num_inference_steps
    with pytest.raises(AttributeError):
        config_default("zoo.nope")


@pytest.mark.parametrize("command", [run, train], ids=["run", "zoo train"])
def test_every_config_flag_names_a_field_and_shows_its_default(command: click.Command) -> None:
    flags = [p for p in command.params if isinstance(p, ConfigOption)]
    assert len(flags) >= 10
    for flag in flags:
        value = config_default(flag.config_path)  # raises for a path the tree does not have
        assert f"({flag.config_path}; default " in (flag.help or ""), flag.name
        if flag.config_path != "sources" and value is not None and not isinstance(value, list):
            assert f"default {value})" in (flag.help or ""), flag.name


def test_only_the_flags_given_become_settings() -> None:
    seen: dict[str, object] = {}

    @click.command()
    @config_option("--lr", path="zoo.lr", type=float, help="Adam learning rate")
    @config_option("--seed", path="seed", type=int, help="Seed")
    @click.option("--other")
    def cmd(**values: object) -> None:
        seen.update(config_assignments(click.get_current_context(), values))

    result = CliRunner().invoke(cmd, ["--lr", "0.01", "--other", "x"])
    assert result.exit_code == 0, result.output
    assert seen == {"zoo.lr": 0.01}
    assert f"(zoo.lr; default {RunConfig().zoo.lr})" in CliRunner().invoke(cmd, ["--help"]).output
