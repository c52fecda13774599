"""User-facing errors.

A :class:`GpdiffError` is something the user caused (bad path, wrong shape, too little data).
The CLI prints its message on one line and exits non-zero, with no traceback. Anything else is
a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import errno
import os
from collections.abc import Iterable


class GpdiffError(Exception):
    """An error the user can fix; the message names the problem and the fix."""


def unknown_name(what: str, name: str, known: Iterable[str]) -> GpdiffError:
    """Error for an unknown registry name, suggesting close matches."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return GpdiffError(f"unknown {what} {name!r}.{hint} Known: {', '.join(known)}.")


DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})  # "No space left on device", "Disk quota exceeded"


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an ``OSError`` saying that the disk is full or the user's quota is spent."""
    return isinstance(exc, OSError) and exc.errno in DISK_FULL


def disk_full(path: str | os.PathLike[str] | None, exc: OSError) -> GpdiffError:
    """The one-line error for a write that failed with ``ENOSPC`` / ``EDQUOT``: the file, and the fix
    (free space, rerun the same command; every write is atomic, so what was finished is intact and
    the rerun resumes from it)."""
    what = f"cannot write {os.fspath(path)}" if path is not None else "cannot write a file"
    reason = exc.strerror or os.strerror(exc.errno or errno.ENOSPC)
    return GpdiffError(f"{what}: {reason} (the disk is full or your quota is spent); free space there and rerun "
                       "the same command, which keeps what was finished and resumes.")
