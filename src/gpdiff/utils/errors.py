"""User-facing errors.

A :class:`GpdiffError` is something the user caused (bad path, wrong shape, too little data).
The CLI prints its message on one line and exits non-zero, with no traceback. Anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class GpdiffError(Exception):
    """An error the user can fix; the message names the problem and the fix."""


def unknown_name(what: str, name: str, known: Iterable[str]) -> GpdiffError:
    """Error for an unknown registry name, suggesting close matches."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return GpdiffError(f"unknown {what} {name!r}.{hint} Known: {', '.join(known)}.")
