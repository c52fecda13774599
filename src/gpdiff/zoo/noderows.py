"""Rows keyed by ``(city, node id)``: what a parameter collection and a prompt set have in common.

A zoo holds one parameter vector per source node, a prompt set one spatial and one temporal prompt
per node; both are looked up, reordered and filtered by ``(city, node id)``. :class:`NodeRows` does
that once; a subclass only says how to take rows by index (:meth:`NodeRows._take`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TypeVar

import torch

from gpdiff.utils.errors import GpdiffError

R = TypeVar("R", bound="NodeRows")


class NodeRows:
    """Mixin for row collections with ``node_ids`` and ``cities`` lists (one entry per row)."""

    node_ids: list[str]
    cities: list[str]

    def keys(self) -> list[tuple[str, str]]:
        """``(city, node_id)`` of every row, in order."""
        return list(zip(self.cities, self.node_ids))

    def city_names(self) -> list[str]:
        """The cities of the rows, in order of first appearance."""
        return list(dict.fromkeys(self.cities))

    def take(self: R, index: torch.Tensor | Sequence[int]) -> R:
        """The rows at positions ``index`` (a ``[k]`` tensor or a list of ints), in that order."""
        return self._take(torch.as_tensor(index, dtype=torch.long))

    def _take(self: R, index: torch.Tensor) -> R:
        """:meth:`take` for a ``[k]`` long tensor; each collection copies its own fields."""
        raise NotImplementedError

    def index_of(self, keys: Iterable[tuple[str, str]]) -> torch.Tensor:
        """Row indices ``[k]`` of ``keys``; :class:`GpdiffError` naming the keys this collection lacks."""
        keys = [(str(c), str(n)) for c, n in keys]
        where = {k: i for i, k in enumerate(self.keys())}
        missing = [k for k in keys if k not in where]
        if missing:
            shown = ", ".join(f"{c}/{n}" for c, n in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise GpdiffError(f"no {self.noun()} for {len(missing)} node(s): {shown}{more} (this one covers "
                              f"cities {self.city_names()}); compute them for cities "
                              f"{sorted({c for c, _ in missing})} from the same data and settings.")
        return torch.tensor([where[k] for k in keys], dtype=torch.long)

    def noun(self) -> str:
        """What a row holds, for messages ("prompts", "parameters")."""
        return "rows"

    def select(self: R, keys: Iterable[tuple[str, str]]) -> R:
        """The rows of ``keys``, in that order."""
        return self.take(self.index_of(keys))

    def of_city(self: R, city: str) -> R:
        """The rows of one city."""
        if city not in self.cities:
            raise GpdiffError(f"no {self.noun()} for city {city!r}; have {self.city_names()}.")
        return self.select([k for k in self.keys() if k[0] == city])
