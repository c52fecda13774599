"""Command-line options that set a field of the run config tree (:mod:`gpdiff.experiment.runconfig`).

A flag such as ``--lr`` is a shortcut for ``--set zoo.lr=...``: :func:`config_option` declares it with
the dotted path it sets, and its help shows that path and the default read from the config tree itself
(``RunConfig()``), so no default is typed twice. :func:`config_assignments` turns the flags a user
gave into ``path=value`` assignments, applied like ``--set`` (before the ``--set`` flags themselves).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import click


class ConfigOption(click.Option):
    """A click option bound to the run-config field ``config_path``."""

    def __init__(self, *args: Any, config_path: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.config_path = config_path


@cache
def _defaults() -> Any:
    from gpdiff.experiment.runconfig import RunConfig

    return RunConfig()


def config_default(path: str) -> Any:
    """The default value of the run-config field at dotted ``path`` (``zoo.lr`` -> 0.003)."""
    value: Any = _defaults()
    for key in path.split("."):
        value = getattr(value, key)
    return value


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value)) if value else "none"
    return str(value)


def config_option(*decls: str, path: str, help: str, default_text: str | None = None,
                  **kwargs: Any) -> Callable[[Any], Any]:
    """A ``click.option`` that sets run-config field ``path``; ``help`` is completed with the path and its
    default from the config tree (``default_text``: words for a default the value alone does not explain,
    such as an empty list that means "every other city"). The option's own default is ``None`` (not
    given: the config decides)."""
    text = f"{help} ({path}; default {default_text or _shown(config_default(path))})."
    return click.option(*decls, cls=ConfigOption, config_path=path, default=None, help=text, **kwargs)


def config_assignments(ctx: click.Context, values: dict[str, Any]) -> dict[str, Any]:
    """``{dotted path: value}`` for every :func:`config_option` of the command ``ctx`` runs that the user
    gave (``values``: the command's keyword arguments)."""
    out: dict[str, Any] = {}
    for param in ctx.command.params:
        if isinstance(param, ConfigOption) and param.name is not None and values.get(param.name) is not None:
            value = values[param.name]
            out[param.config_path] = str(value) if isinstance(value, Path) else value
    return out
