"""Graph pickles: protocol 0 with CRLF line ends, a bare matrix."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from gpdiff.data.formats.dcrnn import load_dcrnn
from gpdiff.utils.errors import GpdiffError
from tests.conftest import dcrnn_h5


def test_protocol0_pickle_with_crlf_line_ends(tmp_path: Path) -> None:
    h5, ids, _ = dcrnn_h5(tmp_path / "d")
    adj = np.arange(9, dtype=np.float32).reshape(3, 3)
    rev = ids[::-1]
    raw = pickle.dumps([rev, {s: i for i, s in enumerate(rev)}, adj], protocol=0)
    (h5.parent / "adj_mx.pkl").write_bytes(raw.replace(b"\n", b"\r\n"))
    city = load_dcrnn(h5)
    np.testing.assert_array_equal(city.adjacency, adj[::-1, ::-1])


def test_bare_matrix_pickle(tmp_path: Path) -> None:
    h5, ids, _ = dcrnn_h5(tmp_path / "d")
    adj = np.random.default_rng(1).uniform(0, 1, (3, 3)).astype(np.float32)
    (h5.parent / "adj_mx.pkl").write_bytes(pickle.dumps(adj))
    city = load_dcrnn(h5)
    np.testing.assert_allclose(city.adjacency, adj)
    assert "node order assumed" in city.source
    (h5.parent / "adj_mx.pkl").write_bytes(pickle.dumps(np.ones((4, 4))))
    with pytest.raises(GpdiffError, match=r"adj_mx\.pkl holds a bare 4x4 matrix but the series has 3 nodes"):
        load_dcrnn(h5)
