"""Config dataclasses from plain mappings (YAML files, CLI flags), with one error for unknown keys."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from gpdiff.errors import GpdiffError

T = TypeVar("T")


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, what: str, where: str = "") -> T:
    """``cls(**data)``, after naming every key of ``data`` that is not a field of the dataclass ``cls``.

    ``what`` names the config in the error ("zoo config"); ``where``, when given, prefixes it (a file).
    """
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - known)
    if unknown:
        prefix = f"{where}: " if where else ""
        raise GpdiffError(f"{prefix}unknown {what} field(s) {unknown}; known: {sorted(known)}.")
    return cls(**data)
