"""Download METR-LA / PEMS-BAY from public mirrors and convert them to cached ``.city`` files.

``download("metr-la")`` fetches the DCRNN release files (speed ``.h5`` + graph pickle) into
``cache_dir()/raw/<name>/``, checks size and SHA-256, and writes ``cache_dir()/cities/<name>.city``
so that ``load_city("metr-la")`` finds it. ``$GPDIFF_MIRROR`` replaces every URL by
``$GPDIFF_MIRROR/<file name>`` (a private mirror, or a local server in tests).

Checksums: the graph pickles are pinned to the DCRNN repository at commit 602afd9. The ``.h5``
hashes are the ones independent users report for the files of the DCRNN Google Drive folder;
the PEMS-BAY one is also the Git LFS object id in DL-Traff-Graph. A file whose registry hash is
``None`` is accepted unverified: its computed SHA-256 is printed with a warning.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from gpdiff import __version__
from gpdiff.data.catalog import cache_dir
from gpdiff.utils.errors import GpdiffError, unknown_name

MIRROR_ENV = "GPDIFF_MIRROR"
CHUNK = 1 << 20
TIMEOUT_S = 60

_DCRNN = "https://raw.githubusercontent.com/liyaguang/DCRNN/602afd9d767d3aa1c9b3eac51710d6aeee12c227/data/sensor_graph"
_DLTRAFF = "https://github.com/deepkashiwa20/DL-Traff-Graph/raw"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: where to get it and what it must be (``None`` = not known)."""

    filename: str
    urls: tuple[str, ...]
    sha256: str | None
    size: int | None


#: name -> (speed .h5, graph pickle). URLs are tried in order.
REGISTRY: dict[str, tuple[RemoteFile, RemoteFile]] = {
    "metr-la": (
        RemoteFile(
            "metr-la.h5",
            ("https://huggingface.co/datasets/jimmygao3218/METRLA/resolve/main/metr-la.h5",
             f"{_DLTRAFF}/main/METRLA/metr-la.h5"),
            "64784b76d6fb8ec9bff4b6decafb354da2bb37840468fdccee5044e511277c05", 57_038_056,
        ),
        RemoteFile(
            "adj_mx.pkl", (f"{_DCRNN}/adj_mx.pkl",),
            "a35687c6e15aa228dc45027b0ed2a0ea0f4ec78f573deb992c595092d12f61b3", 680_459,
        ),
    ),
    "pems-bay": (
        RemoteFile(
            "pems-bay.h5",
            (f"{_DLTRAFF}/ccc038aeef05ffd43fab42e0752c8f94b90163a7/PEMSBAY/pems-bay.h5",
             "https://huggingface.co/datasets/jimmygao3218/PEMSBAY/resolve/main/PEMS-BAY.h5"),
            "65d69fb0a2323dba9867179eb7af47c8b814186bc459ff0a4937d21614153c8f", 135_930_936,
        ),
        RemoteFile(
            "adj_mx_bay.pkl", (f"{_DCRNN}/adj_mx_bay.pkl",),
            "116275f5704d0d492018e14c047f7ae5004385b450aa907f88424055a4a97370", 1_681_480,
        ),
    ),
}


def download(name: str, dest: str | os.PathLike[str] | None = None, progress: bool = True,
             force: bool = False) -> Path:
    """Fetch dataset ``name`` (``metr-la`` or ``pems-bay``) and return its converted ``.city`` path.

    Raw files go to ``dest`` (default ``cache_dir()/raw/<name>/``); files already there with the
    right checksum are reused. The city is written to ``cache_dir()/cities/<name>.city``; if that
    exists it is returned at once unless ``force``. Each file is written to a temporary file and
    renamed only after its size and SHA-256 check out, so a failed download leaves nothing behind.
    """
    if name not in REGISTRY:
        raise unknown_name("downloadable dataset", name, REGISTRY)
    city_path = cache_dir() / "cities" / f"{name}.city"
    if city_path.is_file() and not force:
        return city_path
    raw_dir = Path(dest) if dest is not None else cache_dir() / "raw" / name
    raw_dir.mkdir(parents=True, exist_ok=True)
    h5_file, pkl_file = REGISTRY[name]
    used = [fetch(f, raw_dir, progress=progress) for f in (h5_file, pkl_file)]

    from gpdiff.data.formats.dcrnn import load_dcrnn  # local import: pulls in h5py

    city = load_dcrnn(raw_dir / h5_file.filename, raw_dir / pkl_file.filename, name=name)
    city.source = f"{name}: DCRNN release ({', '.join(used)}), converted by gpdiff {__version__}; " + city.source
    city.save(city_path)
    return city_path


def fetch(remote: RemoteFile, folder: Path, progress: bool = True) -> str:
    """Make ``folder/remote.filename`` a verified copy; returns the URL used (or ``"cached"``)."""
    target = folder / remote.filename
    if target.is_file() and (remote.sha256 is None or sha256_file(target) == remote.sha256):
        return "cached"
    mirror = os.environ.get(MIRROR_ENV, "").strip()
    urls = (f"{mirror.rstrip('/')}/{remote.filename}",) if mirror else remote.urls
    problems = []
    for url in urls:
        try:
            digest = _fetch_url(url, target, remote, progress)
        except _FetchError as exc:
            problems.append(f"{url}: {exc}")
            continue
        if remote.sha256 is None:
            print(f"warning: {remote.filename} from {url} is UNVERIFIED (no known checksum); "
                  f"its sha256 is {digest}", file=sys.stderr)
        return url
    raise GpdiffError(
        f"could not download {remote.filename} ({'; '.join(problems)}); download it manually into a folder "
        f"(see the DCRNN README: https://github.com/liyaguang/DCRNN) and use `gpdiff run --data-dir FOLDER`."
    )


class _FetchError(Exception):
    """A mirror failed (network, size or checksum); the next one is tried."""


def _fetch_url(url: str, target: Path, remote: RemoteFile, progress: bool) -> str:
    request = urllib.request.Request(url, headers={"User-Agent": f"gpdiff/{__version__}"})
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            total = int(response.headers.get("Content-Length") or 0) or remote.size
            with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=remote.filename,
                      disable=not progress, leave=False) as bar:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if remote.size is not None and size != remote.size:
            raise _FetchError(f"got {size} bytes, expected {remote.size}")
        hexdigest = digest.hexdigest()
        if remote.sha256 is not None and hexdigest != remote.sha256:
            raise _FetchError(f"checksum mismatch: sha256 {hexdigest}, expected {remote.sha256}")
        os.replace(tmp, target)
        return hexdigest
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        if isinstance(exc, urllib.error.HTTPError):
            raise _FetchError(f"HTTP {exc.code} {exc.reason}") from None
        reason = getattr(exc, "reason", None) or exc
        raise _FetchError(f"{type(exc).__name__}: {reason}") from None
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()
