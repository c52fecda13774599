"""Writing files: a full disk is one line naming the file and the old file survives (also through the CLI);
other OS errors are not called a full disk; saved tensors are the same bytes in every process."""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import atomic_write_text, link_if_same, load_tensors
from tests.conftest import fail_writes, needs_proc


@needs_proc
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_one_line_naming_the_file_and_the_old_file_survives(tmp_path, monkeypatch, code):
    target = tmp_path / "report.md"
    atomic_write_text(target, "finished before")
    fail_writes(monkeypatch, code)
    with pytest.raises(GpdiffError) as info:
        atomic_write_text(target, "new text")
    message = str(info.value)
    assert message.startswith(f"cannot write {target}: {os.strerror(code)}") and "\n" not in message
    assert "free space" in message and "rerun the same command" in message
    assert target.read_text() == "finished before" and os.listdir(tmp_path) == ["report.md"]  # no temporary left


def test_other_os_errors_are_not_called_a_full_disk(tmp_path, monkeypatch):
    import gpdiff.utils.io

    def fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(gpdiff.utils.io.os, "fsync", fsync)
    with pytest.raises(OSError) as info:
        atomic_write_text(tmp_path / "x.txt", "text")
    assert not isinstance(info.value, GpdiffError) and info.value.errno == errno.EIO
    assert os.listdir(tmp_path) == []


def test_the_cli_turns_a_full_disk_anywhere_into_one_line(monkeypatch):
    """A write outside gpdiff.utils.io (a library's own file, a folder): the CLI still says it in one line."""
    import gpdiff.cli

    @click.command()
    def boom() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "/runs/x/plot.png")

    monkeypatch.setattr(gpdiff.cli._Main, "_load", staticmethod(lambda name: boom))
    r = CliRunner().invoke(gpdiff.cli.main, ["run"])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        ("error: cannot write /runs/x/plot.png: No space left on device (the disk is full or your quota is spent); "
         "free space there and rerun the same command, which keeps what was finished and resumes.")]


def test_saved_tensors_are_the_same_bytes_in_every_process(tmp_path):
    """safetensors writes its metadata from a Rust HashMap (a per-process order); save_tensors sorts
    it, so the same tensors and metadata are the same bytes (the shipped model's rebuild compares bytes)."""
    import hashlib
    import json

    import torch

    code = ("import sys, torch; from gpdiff.utils.io import save_tensors; save_tensors(sys.argv[1], "
            "{'b': torch.arange(5.0), 'a': torch.ones(3, dtype=torch.int64)}, "
            "{'zeta': 1, 'alpha': [1, 2], 'name': 'x', 'format': 'f', 'mid': {'q': 'é'}})")
    paths = [tmp_path / f"t{i}.safetensors" for i in range(4)]
    for p in paths:
        subprocess.run([sys.executable, "-c", code, str(p)], check=True)
    assert len({hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}) == 1
    data = paths[0].read_bytes()
    header = json.loads(data[8:8 + int.from_bytes(data[:8], "little")])
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    tensors, meta = load_tensors(paths[0])
    assert meta == {"zeta": 1, "alpha": [1, 2], "name": "x", "format": "f", "mid": {"q": "é"}}
    assert torch.equal(tensors["b"], torch.arange(5.0)) and torch.equal(tensors["a"], torch.ones(3, dtype=torch.int64))


def test_link_if_same_links_equal_files_only_and_a_rewrite_parts_them(tmp_path):
    a, b, c = (atomic_write_text(tmp_path / n, t) for n, t in (("a", "weights"), ("b", "weights"), ("c", "other")))
    assert link_if_same(a, b) and os.path.samefile(a, b) and os.stat(a).st_nlink == 2
    assert link_if_same(a, b)  # already one file
    assert not link_if_same(a, c) and c.read_text() == "other" and os.stat(c).st_nlink == 1
    assert not link_if_same(a, tmp_path / "missing") and not (tmp_path / "missing").exists()
    atomic_write_text(b, "rewritten")  # every gpdiff write is a rename: the other name keeps its bytes
    assert a.read_text() == "weights" and b.read_text() == "rewritten"
    a.unlink()
    assert not link_if_same(tmp_path / "a", b)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary link left


def test_link_if_same_keeps_the_copy_where_no_link_can_be_made(tmp_path, monkeypatch):
    a, b = atomic_write_text(tmp_path / "a", "weights"), atomic_write_text(tmp_path / "b", "weights")

    def refuse(src, dst):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", refuse)
    assert not link_if_same(a, b)
    assert b.read_text() == "weights" and not os.path.samefile(a, b)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]
