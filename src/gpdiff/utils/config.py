"""Configs as data: nested dataclasses built from plain mappings (YAML files, ``--set`` flags).

Every config of gpdiff is a dataclass with defaults. A config that holds another config does so as
a field whose type is that dataclass (``RunConfig.zoo: ZooConfig``), so a run's settings form one
tree and each setting lives in exactly one place (the diffusers pattern: configs are data, written
next to what they made). :func:`from_mapping` builds such a tree from nested dicts, naming the full
dotted path of every unknown key; :func:`to_mapping` turns it back into plain dicts;
:func:`set_path` applies one ``dotted.path=value`` override.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import yaml

from gpdiff.utils.errors import GpdiffError

T = TypeVar("T")


@functools.cache
def _nested_types(cls: type) -> dict[str, type]:
    """Fields of dataclass ``cls`` whose declared type is itself a dataclass: name -> class."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)
            if isinstance(hints.get(f.name), type) and dataclasses.is_dataclass(hints[f.name])}


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, what: str, where: str = "",
                 moved: Mapping[str, str] | None = None, _path: str = "",
                 origins: Mapping[str, str] | None = None, upgrade: bool = False) -> T:
    """``cls(**data)``, recursing into fields that are dataclasses.

    Raises :class:`GpdiffError` naming every key of ``data`` (with its dotted path) that is not a
    field of ``cls``. ``moved`` maps dotted paths of settings that moved to their new path; such a key
    gets one line naming where it lives now (a setting that became a section, ``model: stid`` ->
    ``model.name``, only when given as a value, not as the section's mapping). ``what`` names the
    config ("run config"); ``where``, when given, prefixes the message (a file). A value that is already an instance of a nested
    config class is taken as it is. A class with a ``preset_defaults(data) -> dict`` classmethod
    (a config with named size presets) gets those values under ``data`` before anything else.

    A class may list renamed fields in ``RENAMED`` (old name -> new name): given by a user, an old name
    gets one line naming the new one; with ``upgrade`` (reading a file an older gpdiff wrote) its value
    is taken under the new name.

    ``origins`` maps dotted paths to where the settings under them were given when that is not
    ``where`` (``{"zoo.lr": "--set zoo.lr=fast"}``, a bench suite's ``base``): a wrong key or
    value is blamed on the origin of its longest listed prefix (:func:`origin_of`), so a key given with
    ``--set`` next to ``--config`` is not blamed on the file. An empty origin names no place.
    """
    if isinstance(data, cls):
        return data
    if data is not None and not isinstance(data, Mapping):
        field_ = f" field {_path.rstrip('.')}" if _path else ""
        place = origin_of(_path.rstrip("."), origins or {}, where) if _path else where
        raise GpdiffError(f"{place + ': ' if place else ''}{what}{field_} must be a mapping of settings, got "
                          f"{type(data).__name__} ({data!r}).")
    data = _renamed(cls, dict(data or {}), what, origin_of(_path.rstrip("."), origins or {}, where), _path, upgrade)
    presets = getattr(cls, "preset_defaults", None)
    if presets is not None:
        data = merge(presets(data), data)
    origins = origins or {}

    def prefix(key: str) -> str:
        place = origin_of(f"{_path}{key}", origins, where)
        return f"{place}: " if place else ""

    moved = moved or {}
    nested = _nested_types(cls)  # type: ignore[arg-type]
    for key in data:
        full = f"{_path}{key}"
        # a setting that became a section (``model: stid`` -> ``model.name``) moved only when given as a value
        if full in moved and not (key in nested and isinstance(data[key], Mapping | nested[key])):
            raise GpdiffError(f"{prefix(key)}{what} setting {full!r} has moved to {moved[full]!r}; rename it there.")
    known = field_names(cls)  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(known))
    if unknown:
        first = prefix(unknown[0])  # one place per message: the keys given there
        shown = [f"{_path}{k}" for k in unknown if prefix(k) == first]
        raise GpdiffError(f"{first}unknown {what} field(s) {shown}; known at "
                          f"{_path.rstrip('.') or 'the top level'}: {sorted(known)}.")
    scalars = _scalar_types(cls)  # type: ignore[arg-type]
    for name, value in data.items():
        if name in nested:
            data[name] = from_mapping(nested[name], value, what, where, moved, f"{_path}{name}.", origins, upgrade)
        elif name in scalars:
            data[name] = _coerce(value, scalars[name], f"{prefix(name)}{what} field {_path}{name}")
    return cls(**data)


def _renamed(cls: type, data: dict[str, Any], what: str, place: str, path: str, upgrade: bool) -> dict[str, Any]:
    """``data`` with ``cls.RENAMED``'s old names under their new ones (``upgrade``), else :class:`GpdiffError`
    naming the first old name found and its new name (see :func:`from_mapping`)."""
    for old, new in getattr(cls, "RENAMED", {}).items():
        if old not in data:
            continue
        if not upgrade:
            raise GpdiffError(f"{place + ': ' if place else ''}{what} setting {path + old!r} is now called "
                              f"{path + new!r} (every training loop's length is max_steps, or max_epochs when it "
                              "counts epochs); rename it.")
        data[new] = data.pop(old)
    return data


def origin_of(path: str, origins: Mapping[str, str], default: str = "") -> str:
    """Where the setting at dotted ``path`` was given: the origin of its longest prefix in ``origins``
    (whole path components only: ``zoo.lr`` is not a prefix of ``zoo.lr_decay``), else ``default``."""
    parts = path.split(".")
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in origins:
            return origins[key]
    return default


def path_origins(data: Any, origin: str, _path: str = "") -> dict[str, str]:
    """The dotted path of every leaf of nested mapping ``data`` (a value that is not a non-empty mapping)
    -> ``origin``: the origins of one source of settings that is merged over others (:func:`merge`), for
    :func:`from_mapping` (later sources update earlier ones)."""
    out: dict[str, str] = {}
    if isinstance(data, Mapping):
        for key, value in data.items():
            if isinstance(value, Mapping) and value:
                out.update(path_origins(value, origin, f"{_path}{key}."))
            else:
                out[f"{_path}{key}"] = origin
    return out


@functools.cache
def _scalar_types(cls: type) -> dict[str, type]:
    """Fields of dataclass ``cls`` declared as exactly ``int``, ``float``, ``bool`` or ``str``."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if hints.get(f.name) in (int, float, bool, str)}


def _coerce(value: Any, kind: type, what: str) -> Any:
    """``value`` as ``kind`` when it is a plain spelling of one (``"1e-3"`` -> 0.001, ``1`` -> 1.0 for a
    float, ``"true"`` -> True); :class:`GpdiffError` naming the field otherwise."""
    if isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        return value
    try:
        if kind is bool:
            if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "1", "0"):
                return value.strip().lower() in ("true", "yes", "1")
        elif kind is float and not isinstance(value, bool):
            return float(value)
        elif kind is int and not isinstance(value, bool) and float(value) == int(float(value)):
            return int(float(value))
        elif kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    except (TypeError, ValueError, OverflowError):
        pass
    article = "an" if kind is int else "a"
    raise GpdiffError(f"{what} must be {article} {kind.__name__}, got {value!r}.")


def to_mapping(config: Any) -> dict[str, Any]:
    """A config tree as plain nested dicts (what YAML files and stage keys hold)."""
    return dataclasses.asdict(config)


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``override``, recursively for values that are mappings on both sides."""
    out = dict(base)
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else v
    return out


def name_list(value: str | Sequence[str] | None) -> list[str]:
    """A list of names given as a list, a comma-separated string (a CLI flag) or ``None`` (none)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    return [str(s) for s in value]


def first_repeated(values: Sequence[Any]) -> Any | None:
    """The smallest value that occurs more than once in ``values`` (for a one-line error), or ``None``."""
    repeated = [v for v in values if values.count(v) > 1]
    return min(repeated) if repeated else None


def require_at_least_one(config: Any, names: Sequence[str], where: str = "") -> None:
    """:class:`GpdiffError` naming the first field of ``config`` in ``names`` that is below 1 (a count)."""
    for name in names:
        if getattr(config, name) < 1:
            raise GpdiffError(f"{where}{name} must be at least 1, got {getattr(config, name)}.")


def require_range(config: Any, names: Sequence[str], where: str = "", *, above: float | None = None,
                  at_least: float | None = None, below: float | None = None, at_most: float | None = None) -> None:
    """:class:`GpdiffError` naming the first field of ``config`` in ``names`` that is not a finite number
    in the given bounds (``above``/``below``: strict; ``at_least``/``at_most``: inclusive), e.g.
    ``require_range(self, ("lr",), "diffusion.", above=0)`` -> "diffusion.lr must be a number > 0, got -1.0."."""
    for name in names:
        value = getattr(config, name)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        ok = ok and (above is None or value > above) and (at_least is None or value >= at_least)
        ok = ok and (below is None or value < below) and (at_most is None or value <= at_most)
        if not ok:
            lo = f"> {above:g}" if above is not None else f">= {at_least:g}" if at_least is not None else ""
            hi = f"< {below:g}" if below is not None else f"<= {at_most:g}" if at_most is not None else ""
            bounds = " and ".join(b for b in (lo, hi) if b) or "finite"
            raise GpdiffError(f"{where}{name} must be a number {bounds}, got {value!r}.")


def parse_assignment(text: str) -> tuple[list[str], Any]:
    """``"zoo.lr=0.005"`` -> (``["zoo", "lr"]``, ``0.005``); the value is read as YAML (``[a, b]``, ``true``).

    Raises :class:`GpdiffError` when there is no ``=`` or no path.
    """
    path, sep, value = text.partition("=")
    path = path.strip()
    if not sep or not path or any(not p for p in path.split(".")):
        raise GpdiffError(f"--set {text!r}: expected dotted.path=value, e.g. --set zoo.lr=0.005.")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    return path.split("."), parsed


def set_path(data: dict[str, Any], path: list[str], value: Any) -> dict[str, Any]:
    """A copy of nested dict ``data`` with ``data[path[0]][path[1]]... = value`` (creating levels)."""
    out = dict(data)
    if len(path) == 1:
        out[path[0]] = value
        return out
    inner = out.get(path[0])
    out[path[0]] = set_path(dict(inner) if isinstance(inner, Mapping) else {}, path[1:], value)
    return out
