"""Graph pickles of the DCRNN family (DCRNN, Graph WaveNet, BasicTS and the repositories built on them).

Two contents are in use: the DCRNN 3-sequence ``(sensor_ids, sensor_id_to_ind, adj [N, N])``, and a
bare ``[N, N]`` matrix (several published repositories ship only that; BasicTS reads both). Old
protocol-0 pickles are text, and a Windows checkout (``git config core.autocrlf``) turns their
line ends into CRLF, which unpickling refuses; those are read with the line ends restored.

**Unpickling can run code: only load pickles you trust.** The formats require it.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from gpdiff.utils.errors import GpdiffError


def load_pickle(path: Path, what: str = "the adj_mx.pkl from the DCRNN repository") -> Any:
    """Unpickle ``path`` (latin1 for Python 2 pickles; CRLF line ends of protocol-0 text restored).

    Raises :class:`GpdiffError` naming the file when it cannot be read."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise GpdiffError(f"{path} cannot be read ({exc}); check the file.") from None
    attempts = [data]
    if not data.startswith(b"\x80") and b"\r\n" in data:  # protocol 0/1 text whose line ends were converted
        attempts.insert(0, data.replace(b"\r\n", b"\n"))
    error: Exception | None = None
    for raw in attempts:
        try:
            return pickle.loads(raw, encoding="latin1")  # noqa: S301 - the format is a pickle
        except Exception as exc:  # noqa: BLE001 - any failure means "not a readable pickle"
            error = error or exc
    raise GpdiffError(f"{path} is not a readable pickle ({type(error).__name__}: {error}); use {what}.")


def read_graph_pickle(path: Path, columns: list[str]) -> tuple[np.ndarray, str]:
    """Adjacency ``[N, N]`` float64 in the order of ``columns`` (the series' node ids), and a note
    for ``City.source`` ('' when the pickle names its nodes).

    A 3-sequence is reordered by sensor id; a bare matrix must have ``len(columns)`` rows and is
    taken in column order (the note says so). Raises :class:`GpdiffError` for any other content,
    a size or id mismatch, or non-finite weights.
    """
    obj = load_pickle(path)
    n = len(columns)
    if isinstance(obj, (tuple, list)) and len(obj) == 3:
        ids = [id_str(i) for i in obj[0]]
        adj = _matrix(obj[2], path)
        if adj.shape[0] != len(ids):
            raise GpdiffError(f"{path}: adjacency shape {adj.shape} does not match its {len(ids)} sensor ids; "
                              "the pickle is damaged, download it again.")
        pos = {s: i for i, s in enumerate(ids)}
        missing = [c for c in columns if c not in pos]
        if missing or len(ids) != n:
            extra = sorted(set(ids) - set(columns))
            raise GpdiffError(
                f"{path}: sensor ids do not match the speed file ({len(missing)} speed columns not in the graph, "
                f"e.g. {missing[:3]}; {len(extra)} graph ids not in the speed file, e.g. {extra[:3]}); "
                "use the graph pickle that belongs to this dataset."
            )
        order = [pos[c] for c in columns]
        return adj[np.ix_(order, order)], ""
    if _is_matrix(obj):
        adj = _matrix(obj, path)
        if adj.shape[0] != n:
            raise GpdiffError(f"{path} holds a bare {adj.shape[0]}x{adj.shape[1]} matrix but the series has {n} "
                              "nodes; use the graph pickle that belongs to this dataset.")
        return adj, f"{path.name} is a bare matrix: node order assumed to be the series' column order"
    raise GpdiffError(f"{path} holds a {type(obj).__name__}, neither (sensor_ids, sensor_id_to_ind, adj_mx) nor an "
                      "N x N matrix; use the adj_mx.pkl from the DCRNN repository.")


def read_graph_pickle_by_order(path: Path, n: int) -> tuple[np.ndarray, list[str] | None]:
    """For data without node ids (BasicTS): adjacency ``[n, n]`` in the pickle's own order, and the
    pickle's sensor ids when it names them (else None). Raises :class:`GpdiffError` as
    :func:`read_graph_pickle` does."""
    obj = load_pickle(path)
    named = isinstance(obj, (tuple, list)) and len(obj) == 3
    if not named and not _is_matrix(obj):
        raise GpdiffError(f"{path} holds a {type(obj).__name__}, neither (sensor_ids, sensor_id_to_ind, adj_mx) nor "
                          "an N x N matrix; use the adj_mx.pkl of this dataset.")
    adj = _matrix(obj[2] if named else obj, path)
    ids = [id_str(i) for i in obj[0]] if named else None
    if adj.shape[0] != n or (ids is not None and len(ids) != n):
        raise GpdiffError(f"{path}: a {adj.shape[0]}-node graph for a series of {n} nodes; use the adj_mx.pkl of "
                          "this dataset.")
    return adj, ids


def _is_matrix(obj: Any) -> bool:
    if hasattr(obj, "toarray"):  # a scipy sparse matrix
        return True
    try:
        arr = np.asarray(obj)
    except (ValueError, TypeError):
        return False
    return arr.ndim == 2 and arr.dtype.kind in "fiub"


def _matrix(obj: Any, path: Path) -> np.ndarray:
    try:
        adj = np.asarray(obj.toarray() if hasattr(obj, "toarray") else obj, dtype=np.float64)
    except (ValueError, TypeError):
        raise GpdiffError(f"{path}: the adjacency is not a numeric matrix; the pickle is damaged.") from None
    if adj.ndim != 2 or adj.shape[0] != adj.shape[1]:
        raise GpdiffError(f"{path}: adjacency shape {adj.shape} is not square; the pickle is damaged.")
    if not np.all(np.isfinite(adj)):
        raise GpdiffError(f"{path}: the adjacency contains NaN or inf; fix or replace the graph file.")
    return adj


def id_str(v: Any) -> str:
    """A node id as text: bytes decoded, integral floats without '.0'."""
    if isinstance(v, (bytes, np.bytes_)):
        return bytes(v).decode("utf-8", "replace").strip()
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    return str(v).strip()
