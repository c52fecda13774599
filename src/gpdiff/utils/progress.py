"""Progress of long stages, on a terminal and where there is none.

Every trainer's loop makes its bar with :func:`progress_bar` (a ``tqdm``). On a terminal it is the
usual bar redrawn in place (in a notebook, tqdm's widget). Where output goes to a file, a CI log or
``nohup`` (the stream is not a terminal), the same bar prints one plain line every
:data:`PLAIN_INTERVAL_S` seconds (tqdm's ``mininterval``) and when it ends: its name, the percent
done, the elapsed time and the estimate of the time left (tqdm's, from its smoothed rate), with no
carriage returns and no bar characters::

    zoo stid/small: 40% (8/20 epoch) elapsed 02:01, about 03:02 left, training=812/883, val_loss=0.4312
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable
from typing import IO, Any

from tqdm.auto import tqdm as auto_tqdm
from tqdm.std import tqdm

PLAIN_INTERVAL_S = 30.0  # seconds between two plain lines of one bar
PLAIN_FORMAT = "{desc}: {percentage:.0f}% ({n_fmt}/{total_fmt} {unit}) elapsed {elapsed}, about {remaining} left{postfix}"


class PlainLines(io.TextIOBase):
    """A text stream for tqdm that turns each redraw (``"\\r" + text + padding``) into one line of
    ``stream``; blank redraws and a repeat of the last line are dropped."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream
        self.last = ""

    def write(self, text: str) -> int:
        for part in text.replace("\r", "\n").split("\n"):
            line = part.rstrip()
            if line and line != self.last:
                self.stream.write(line + "\n")
                self.last = line
        self.stream.flush()
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


class PlainBar(tqdm):
    """tqdm writing plain lines (:class:`PlainLines`) only at its interval: a new postfix or
    description is shown with the next line instead of forcing one (tqdm's default redraw)."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        super().set_description(desc, refresh=False)


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is an interactive terminal (where a bar can redraw itself in place)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def progress_bar(iterable: Iterable[Any] | None = None, *, file: IO[str] | None = None,
                 mininterval: float | None = None, **kwargs: Any) -> tqdm:
    """A ``tqdm`` over ``iterable`` (or updated by hand, with ``total``) that writes to ``file``
    (default: ``sys.stderr`` when called): a bar on a terminal or in a notebook, plain lines every
    ``mininterval`` seconds (default :data:`PLAIN_INTERVAL_S`) elsewhere. Other keyword arguments go
    to tqdm (``total``, ``initial``, ``desc``, ``unit``, ``disable`` ...)."""
    stream = file if file is not None else sys.stderr
    if is_terminal(stream) or in_notebook():
        return auto_tqdm(iterable, file=stream, dynamic_ncols=True,
                         **({"mininterval": mininterval} if mininterval is not None else {}), **kwargs)
    interval = PLAIN_INTERVAL_S if mininterval is None else mininterval
    # maxinterval: tqdm's monitor thread redraws a slow bar after that long; not more often than the interval
    return PlainBar(iterable, file=PlainLines(stream), bar_format=PLAIN_FORMAT, ascii=True, mininterval=interval,
                    maxinterval=max(interval, 10.0), **kwargs)


def in_notebook() -> bool:
    """Whether tqdm draws widgets here (a Jupyter kernel with ipywidgets: ``tqdm.auto``'s choice)."""
    from tqdm.notebook import tqdm_notebook

    return issubclass(auto_tqdm, tqdm_notebook)
