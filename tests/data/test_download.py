"""The downloader against a local HTTP server serving a tiny METR-LA in the DCRNN layout."""

from __future__ import annotations

import functools
import hashlib
import pickle
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gpdiff.data import download as dl
from gpdiff.data.catalog import load_city
from gpdiff.utils.errors import GpdiffError

IDS = ["773869", "767541", "767542", "717447"]


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder) of a local server holding metr-la.h5 and adj_mx.pkl."""
    root = tmp_path / "www"
    root.mkdir()
    times = pd.date_range("2012-03-01", periods=48, freq="5min")
    values = np.random.default_rng(0).uniform(30, 70, size=(48, len(IDS)))
    pd.DataFrame(values, index=times, columns=IDS).to_hdf(root / "metr-la.h5", key="df")
    with (root / "adj_mx.pkl").open("wb") as f:
        pickle.dump([IDS, {s: i for i, s in enumerate(IDS)}, np.eye(len(IDS), dtype=np.float32)], f, protocol=2)
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _register(monkeypatch: pytest.MonkeyPatch, base: str, root: Path, h5_sha: str | None = "auto",
              h5_urls: tuple[str, ...] | None = None) -> None:
    h5, pkl = root / "metr-la.h5", root / "adj_mx.pkl"
    monkeypatch.setitem(dl.REGISTRY, "metr-la", (
        dl.RemoteFile("metr-la.h5", h5_urls or (f"{base}/metr-la.h5",), _sha(h5) if h5_sha == "auto" else h5_sha,
                      h5.stat().st_size),
        dl.RemoteFile("adj_mx.pkl", (f"{base}/adj_mx.pkl",), _sha(pkl), pkl.stat().st_size),
    ))


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GPDIFF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(dl.MIRROR_ENV, raising=False)
    return tmp_path / "cache"


def test_download_verifies_and_converts(served: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
                                        _cache: Path) -> None:
    base, root = served
    _register(monkeypatch, base, root)
    city_path = dl.download("metr-la", progress=False)
    raw = _cache / "raw" / "metr-la"
    assert city_path == _cache / "cities" / "metr-la.city" and city_path.is_file()
    assert _sha(raw / "metr-la.h5") == _sha(root / "metr-la.h5")
    assert _sha(raw / "adj_mx.pkl") == _sha(root / "adj_mx.pkl")
    assert not list(raw.glob(".*part"))
    city = load_city("metr-la")
    assert city.node_ids == IDS and city.n_steps == 48 and city.interval_minutes == 5 and city.kind == "speed"
    assert base in city.source
    # already converted: no network needed
    (root / "metr-la.h5").unlink()
    assert dl.download("metr-la", progress=False) == city_path


def test_wrong_checksum_leaves_nothing(served: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
                                       _cache: Path) -> None:
    base, root = served
    _register(monkeypatch, base, root, h5_sha="0" * 64)
    with pytest.raises(GpdiffError, match=r"metr-la\.h5.*checksum mismatch.*--data-dir"):
        dl.download("metr-la", progress=False)
    raw = _cache / "raw" / "metr-la"
    assert not (raw / "metr-la.h5").exists() and list(raw.iterdir()) == []
    assert not (_cache / "cities" / "metr-la.city").exists()


def test_mirror_env_and_fallback_urls(served: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
                                      _cache: Path) -> None:
    base, root = served
    # the first registry URL is dead; the second one works
    _register(monkeypatch, base, root, h5_urls=(f"{base}/gone/metr-la.h5", f"{base}/metr-la.h5"))
    assert dl.download("metr-la", progress=False).is_file()
    # $GPDIFF_MIRROR replaces every URL
    _register(monkeypatch, "http://127.0.0.1:9/nothing-here", root)
    monkeypatch.setenv(dl.MIRROR_ENV, base + "/")
    out = dl.download("metr-la", dest=_cache / "elsewhere", progress=False, force=True)
    assert (_cache / "elsewhere" / "metr-la.h5").is_file() and out.is_file()


def test_network_error_names_url(served: tuple[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    base, root = served
    _register(monkeypatch, base, root, h5_urls=(f"{base}/missing/metr-la.h5",))
    with pytest.raises(GpdiffError) as err:
        dl.download("metr-la", progress=False)
    msg = str(err.value)
    assert f"{base}/missing/metr-la.h5" in msg and "404" in msg and "gpdiff run --data-dir" in msg


def test_unknown_checksum_is_reported(served: tuple[str, Path], monkeypatch: pytest.MonkeyPatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    base, root = served
    _register(monkeypatch, base, root, h5_sha=None)
    dl.download("metr-la", progress=False)
    err = capsys.readouterr().err
    assert "UNVERIFIED" in err and _sha(root / "metr-la.h5") in err


def test_unknown_name() -> None:
    with pytest.raises(GpdiffError, match=r"unknown downloadable dataset 'metr_la'.*'metr-la'"):
        dl.download("metr_la")


def test_registry_is_complete() -> None:
    for name, files in dl.REGISTRY.items():
        assert [f.filename.endswith(ext) for f, ext in zip(files, (".h5", ".pkl"))] == [True, True], name
        for f in files:
            assert f.urls and all(u.startswith("https://") for u in f.urls)
            assert f.sha256 is None or len(f.sha256) == 64


@pytest.mark.parametrize(("name", "raw"), [("metr-la", "metr-la_graph/adj_mx.pkl"),
                                           ("pems-bay", "pems-bay_graph/adj_mx_bay.pkl")])
def test_registry_pickle_hashes_match_published_files(name: str, raw: str) -> None:
    path = Path("/work/shared/data") / raw
    if not path.is_file():
        pytest.skip(f"{path} not available")
    pkl = dl.REGISTRY[name][1]
    assert (pkl.sha256, pkl.size) == (_sha(path), path.stat().st_size)
