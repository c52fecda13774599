#!/usr/bin/env python
"""Build the pretrained GPD that ships in the package (``src/gpdiff/forecaster/bundled/``).

It is GPD pretrained with the run-config defaults (base model STID, small presets, seed 0) on all
five bundled cities, which is what ``gpdiff fit`` uses when no ``--pretrained`` is given. Every
bundled city is among its sources, so ``gpdiff fit`` refuses them as targets (leave-one-out needs
``gpdiff pretrain --sources ...`` without the target).

The build is deterministic on one machine (seeded, single process): the tensor files and the
configs come out byte for byte the same. Only the model card's wall time and the code fingerprint
(``gpd.yaml`` ``card.wall_time`` / ``card.code`` and the card's lines for them) and the denoiser's
training seconds (``denoiser/config.yaml`` ``info.train_seconds``, the encoders' ``seconds``) record the build itself;
``--check`` compares everything else byte for byte.

Usage::

    python scripts/build_pretrained.py              # rebuild the bundled folder (about 5 minutes on 2 cores)
    python scripts/build_pretrained.py --check      # rebuild into a temporary folder and compare
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import yaml

from gpdiff.data.catalog import bundled_names
from gpdiff.diffusion.pretrained import bundled_path
from gpdiff.experiment.pipeline import pretrain_sources
from gpdiff.experiment.runconfig import RunConfig

VOLATILE_CARD = ("wall_time", "code")  # what records the build rather than the model


def build(out: Path, work: Path) -> None:
    cfg = RunConfig.from_dict({"sources": bundled_names(), "seed": 0, "device": "cpu"})
    pretrain_sources(cfg, out, work, progress=False, log=print)


def _stable(path: Path) -> bytes:
    """A file's bytes without the build's own record (VOLATILE_CARD, the denoiser's training seconds)."""
    if path.name == "gpd.yaml":
        doc = yaml.safe_load(path.read_text())
        for key in VOLATILE_CARD:
            doc.get("card", {}).pop(key, None)
        return yaml.safe_dump(doc, sort_keys=True).encode()
    if path.name == "config.yaml" and path.parent.name == "denoiser":
        doc = yaml.safe_load(path.read_text())
        doc.get("info", {}).pop("train_seconds", None)
        return yaml.safe_dump(doc, sort_keys=True).encode()
    if path.name == "config.yaml" and path.parent.parent.name == "encoders":  # the encoder's training seconds
        doc = yaml.safe_load(path.read_text())
        for section in doc.values():
            if isinstance(section, dict):
                section.pop("seconds", None)
        return yaml.safe_dump(doc, sort_keys=True).encode()
    if path.name == "README.md" and path.parent.name != "encoders":
        return b"\n".join(ln for ln in path.read_bytes().splitlines() if b"wall time" not in ln and b"(code " not in ln)
    return path.read_bytes()


def compare(a: Path, b: Path) -> list[str]:
    files = sorted({p.relative_to(a) for p in a.rglob("*") if p.is_file()} | {p.relative_to(b) for p in b.rglob("*") if p.is_file()})
    return [str(f) for f in files if not (a / f).is_file() or not (b / f).is_file() or _stable(a / f) != _stable(b / f)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="rebuild into a temporary folder and compare with the bundle")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpdiff-pretrained-") as tmp:
        if args.check:
            fresh = Path(tmp) / "gpd"
            build(fresh, Path(tmp) / "stages")
            diff = compare(bundled_path(), fresh)
            print("identical (apart from the build's wall time and code fingerprint)" if not diff else
                  f"differs: {', '.join(diff)}")
            return 1 if diff else 0
        build(bundled_path(), Path(tmp) / "stages")
    size = sum(p.stat().st_size for p in bundled_path().rglob("*") if p.is_file())
    print(f"{bundled_path()}: {size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
