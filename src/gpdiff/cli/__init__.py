"""The ``gpdiff`` command line. Each command group lives in its own module of this package."""

from __future__ import annotations

import importlib
import sys

import click

from gpdiff import __version__
from gpdiff.errors import GpdiffError

# (module, attribute): every module defines one click command or group.
COMMANDS = (
    ("gpdiff.cli.data", "data"),
    ("gpdiff.cli.zoo", "zoo"),
    ("gpdiff.cli.prompts", "prompts"),
    ("gpdiff.cli.diffusion", "pretrain"),
    ("gpdiff.cli.diffusion", "generate"),
    ("gpdiff.cli.run", "run"),
    ("gpdiff.cli.bench", "bench"),
)


class _Main(click.Group):
    """Loads command modules lazily (fast ``--help``) and turns user errors into one line."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for _, name in COMMANDS if self._load(name) is not None]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return self._load(name)

    @staticmethod
    def _load(name: str) -> click.Command | None:
        for module, attr in COMMANDS:
            if attr == name:
                try:
                    return getattr(importlib.import_module(module), attr)
                except ModuleNotFoundError as exc:
                    if exc.name == module:  # command group not written yet
                        return None
                    raise
        return None

    def invoke(self, ctx: click.Context):  # type: ignore[no-untyped-def]
        try:
            return super().invoke(ctx)
        except GpdiffError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("\ninterrupted; finished stages are kept, rerun the same command to resume.", err=True)
            sys.exit(130)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="gpdiff")
def main() -> None:
    """gpdiff: few-shot spatio-temporal forecasting by diffusion-generated model parameters (GPD)."""
