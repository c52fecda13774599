"""PNG figures: matplotlib headless (Agg), each written atomically."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from gpdiff.utils.io import atomic_write_bytes


def _figure(*args: Any, **kwargs: Any):  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig: Any, path: str | os.PathLike[str], dpi: int = 110) -> Path:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")  # "tight": room for legends outside the axes
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
