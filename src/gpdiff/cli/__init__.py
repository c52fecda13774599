"""The ``gpdiff`` command line. Each command group lives in its own module of this package."""

from __future__ import annotations

import importlib
import sys

import click

from gpdiff import __version__
from gpdiff.utils.errors import GpdiffError, disk_full, is_disk_full

# (module, attribute, the line `gpdiff --help` shows): every module defines one click command or
# group. The lines are here so that `gpdiff --help` imports no command module (they import torch);
# a test checks each against its command's own help.
COMMANDS = (
    ("gpdiff.cli.data", "data", "List, inspect and download cities."),
    ("gpdiff.cli.zoo", "zoo", "Train and inspect model zoos (one base model per source node)."),
    ("gpdiff.cli.prompts", "prompts",
     "Spatial and temporal node prompts (the conditioning of the parameter generator)."),
    ("gpdiff.cli.diffusion", "pretrain",
     "Train the diffusion model that generates a node's parameters from its prompts."),
    ("gpdiff.cli.diffusion", "generate",
     "Generate base-model parameters for every node of a prompt set (zoo collection format)."),
    ("gpdiff.cli.run", "run",
     "Few-shot transfer to a target city: zoo -> prompts -> diffusion -> generation -> every method -> report."),
    ("gpdiff.cli.bench", "bench",
     "Run SUITE (a YAML file, or a bundled suite such as `loco`) and write one scoreboard."),
    ("gpdiff.cli.forecast", "fit", "Fit a forecaster on all of CITY's data (the last day validates), and save it to --out."),
    ("gpdiff.cli.forecast", "forecast",
     "Forecast the next steps of every node with a saved FORECASTER: a table timestamp, node, step, forecast."),
    ("gpdiff.cli.forecast", "update",
     "Add the new days of --data to FORECASTER and save them as a new version."),
    ("gpdiff.cli.backtest", "backtest",
     "Replay CITY's first days: fit every method on --start-days days, forecast the next day, score it, update."),
)


def progress_bars(quiet: bool) -> bool:
    """Whether a command shows progress: not with ``--quiet``. On a terminal it is a bar; in a log file,
    under ``nohup`` or in CI one plain line per stage every 30 s, no carriage returns (:mod:`gpdiff.utils.progress`)."""
    return not quiet


class _Main(click.Group):
    """Loads command modules lazily (fast ``--help``) and turns user errors into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for _, name, _ in COMMANDS]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, line) for _, name, line in COMMANDS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._load(name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        for module, attr, _ in COMMANDS:
            if attr == name:
                return getattr(importlib.import_module(module), attr)
        return None

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except GpdiffError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)
        except OSError as exc:  # a path the user gave that cannot be used: a file in the way, no permission
            if is_disk_full(exc):  # a write outside gpdiff.utils.io (which names its file itself): a library's, a folder
                click.secho(f"error: {disk_full(exc.filename, exc)}", fg="red", err=True)
                sys.exit(2)
            if exc.filename is None:
                raise
            click.secho(f"error: cannot use {exc.filename}: {exc.strerror}; choose another path.", fg="red", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("\ninterrupted; finished stages are kept, rerun the same command to resume.", err=True)
            sys.exit(130)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpdiff")
def main() -> None:
    """gpdiff: few-shot spatio-temporal forecasting by diffusion-generated model parameters (GPD)."""
