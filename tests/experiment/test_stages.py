"""Stage bookkeeping (gpdiff.experiment.stages): reuse, recompute on a key change, resume, damaged outputs;
stage locks between processes, resume checkpoints dropped when a stage finishes, folder sizes."""

from __future__ import annotations

import errno
import fnmatch
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from filelock import FileLock

from gpdiff.experiment.stages import CHECKPOINTS, Run, folder_size, human_size
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.hashing import hash_file
from gpdiff.utils.io import atomic_write_text, read_yaml
from tests.conftest import fail_writes, needs_proc


def _compute(run: Run, config: dict, text: str = "result") -> tuple[bool, Path]:
    with run.stage("s", config) as st:
        if not st.cached:
            (st.path / "out.txt").write_text(text)
            (st.path / "sub").mkdir(exist_ok=True)
            (st.path / "sub" / "part.bin").write_bytes(b"1234")
    return st.cached, st.path


def test_a_finished_stage_is_reused_and_lists_its_files(tmp_path):
    run = Run(tmp_path)
    assert _compute(run, {"a": 1}) == (False, tmp_path / "s")
    files = read_yaml(tmp_path / "s" / "stage.yaml")["files"]
    assert files == {"out.txt": {"bytes": 6, "sha256": hash_file(tmp_path / "s" / "out.txt")},
                     "sub/part.bin": {"bytes": 4, "sha256": hash_file(tmp_path / "s" / "sub" / "part.bin")}}
    assert _compute(Run(tmp_path), {"a": 1})[0] is True
    assert _compute(Run(tmp_path), {"a": 2})[0] is False  # another key: computed again


@pytest.mark.parametrize("damage", ["delete", "truncate", "same_size", "garbage_record"])
def test_a_finished_stage_missing_an_output_is_computed_again(tmp_path, damage):
    """Following "delete it and rerun" (or a truncated copy) recomputes the stage instead of failing on
    the missing file; nothing of the damaged folder is kept."""
    _compute(Run(tmp_path), {"a": 1})
    (tmp_path / "s" / "stale.tmp").write_text("left over")
    if damage == "delete":
        (tmp_path / "s" / "out.txt").unlink()
    elif damage == "truncate":
        (tmp_path / "s" / "sub" / "part.bin").write_bytes(b"12")
    elif damage == "same_size":  # changed in place, e.g. a copy gone wrong or an edit: the content hash tells
        (tmp_path / "s" / "sub" / "part.bin").write_bytes(b"4321")
    else:
        (tmp_path / "s" / "stage.yaml").write_text(": not yaml [")
    cached, path = _compute(Run(tmp_path), {"a": 1}, "again")
    assert cached is False and (path / "out.txt").read_text() == "again"
    assert (path / "sub" / "part.bin").read_bytes() == b"1234" and not (path / "stale.tmp").exists()
    assert _compute(Run(tmp_path), {"a": 1})[0] is True


def test_an_interrupted_stage_resumes_in_its_folder(tmp_path):
    run = Run(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        with run.stage("s", {"a": 1}) as st:
            (st.path / "checkpoint.txt").write_text("half")
            raise KeyboardInterrupt
    with Run(tmp_path).stage("s", {"a": 1}) as st:
        assert not st.cached and (st.path / "checkpoint.txt").read_text() == "half"  # the trainer finds it
    with Run(tmp_path).stage("s", {"a": 2}) as st:
        assert not (st.path / "checkpoint.txt").exists()  # another key: its checkpoints do not apply


def test_a_shared_cache_holds_the_stages_and_stages_yaml_says_where(tmp_path):
    run = Run(tmp_path / "run", cache=tmp_path / "cache")
    cached, path = _compute(run, {"a": 1})
    assert not cached and path.parent.parent == tmp_path / "cache"
    assert read_yaml(tmp_path / "run" / "stages.yaml") == {"s": str(path)}
    assert _compute(Run(tmp_path / "other", cache=tmp_path / "cache"), {"a": 1}) == (True, path)
    Run(tmp_path / "run")  # the folder run again without the cache: its list of cached stages goes
    assert not (tmp_path / "run" / "stages.yaml").exists()


SRC = str(Path(__file__).resolve().parents[2] / "src")

# A second process: enters stage "s" of RUN, says so in RUN/holding, waits for RUN/go (or forever),
# then writes its output.
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from gpdiff.experiment.stages import Run
    root = Path(sys.argv[1])
    with Run(root).stage("s", {"a": 1}) as st:
        (st.path / "partial.txt").write_text("half")
        (root / "holding").write_text("yes")
        while not (root / "go").exists():
            time.sleep(0.02)
        (st.path / "out.txt").write_text("from the other process")
""")


def _holder(root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root)], env=env)
    deadline = time.monotonic() + 120
    while not (root / "holding").exists():
        assert proc.poll() is None, "the holding process died"
        assert time.monotonic() < deadline, "the holding process never entered the stage"
        time.sleep(0.05)
    return proc


def _train(run: Run, fail: bool = False) -> Path:
    """A stage whose 'trainer' writes resume checkpoints beside its output, as nodetrain and the denoiser do."""
    with run.stage("s", {"a": 1}) as st:
        if not st.cached:
            atomic_write_text(st.path / "checkpoint.safetensors", "resume state")
            atomic_write_text(st.path / "node" / "checkpoint.rank0-of-2.safetensors", "rank 0 state")
            if fail:
                raise KeyboardInterrupt
            atomic_write_text(st.path / "zoo.safetensors", "what later stages read")
    return st.path


def test_a_second_process_waits_for_the_stage_says_so_and_reuses_it(tmp_path):
    proc = _holder(tmp_path)
    lines: list[str] = []
    threading.Timer(0.5, (tmp_path / "go").touch).start()  # the first process finishes half a second later
    try:
        run = Run(tmp_path, log=lines.append)
        with run.stage("s", {"a": 1}) as st:
            assert st.cached, "computed a second time instead of waiting for the other process"
    finally:
        assert proc.wait(timeout=60) == 0
    assert (st.path / "out.txt").read_text() == "from the other process"
    assert run.waited == ["s"] and run.reused == ["s"] and run.computed == []
    assert "another gpdiff process is computing this stage" in lines[0] and "waiting" in lines[0]
    assert "reusing it" in lines[1]


def test_the_lock_of_a_killed_process_does_not_block(tmp_path):
    """filelock takes an OS lock (flock), which the kernel releases when its process dies, even by
    SIGKILL: a stale lock file is just a file. The stage resumes in its folder."""
    proc = _holder(tmp_path)
    lock = Run.lock_of(tmp_path / "s")
    with pytest.raises(TimeoutError):
        FileLock(lock).acquire(timeout=0.1)  # held while the process lives
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert lock.exists()  # the file stays; the lock on it does not
    lines: list[str] = []
    run = Run(tmp_path, log=lines.append)
    with run.stage("s", {"a": 1}) as st:
        assert not st.cached and (st.path / "partial.txt").read_text() == "half"  # its folder, to resume from
        (st.path / "out.txt").write_text("here")
    assert run.waited == [] and lines == []


def test_the_lock_lives_beside_the_stage_folder_in_a_cache_too(tmp_path):
    run = Run(tmp_path / "run", cache=tmp_path / "cache")
    with run.stage("methods/m", {"a": 1}) as st:
        lock = Run.lock_of(st.path)
        assert lock.parent == tmp_path / "cache" / "methods" / "m" and lock.name == f".{st.key}.lock"
        with pytest.raises(TimeoutError):
            FileLock(lock).acquire(timeout=0.05)  # held while the stage runs (another open file: refused)
    with FileLock(lock).acquire(timeout=0.05):  # released when it is done
        pass


def test_a_finished_stage_drops_its_resume_checkpoints(tmp_path):
    path = _train(Run(tmp_path))
    assert sorted(str(p.relative_to(path)) for p in path.rglob("*.safetensors")) == ["zoo.safetensors"]
    assert list(read_yaml(path / "stage.yaml")["files"]) == ["zoo.safetensors"]
    with Run(tmp_path).stage("s", {"a": 1}) as st:
        assert st.cached  # what it dropped is not missing


def test_keep_checkpoints_keeps_them_and_lists_them(tmp_path):
    path = _train(Run(tmp_path, keep_checkpoints=True))
    assert set(read_yaml(path / "stage.yaml")["files"]) == {"checkpoint.safetensors", "zoo.safetensors",
                                                            "node/checkpoint.rank0-of-2.safetensors"}


def test_an_interrupted_stage_keeps_its_checkpoints_to_resume_from(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _train(Run(tmp_path), fail=True)
    assert (tmp_path / "s" / "checkpoint.safetensors").read_text() == "resume state"
    assert (tmp_path / "s" / "node" / "checkpoint.rank0-of-2.safetensors").exists()


def test_every_trainer_names_its_checkpoints_so_a_finished_stage_drops_them():
    from gpdiff.zoo.checkpoint import CHECKPOINT

    sharded = CHECKPOINT.replace(".safetensors", ".rank1-of-4.safetensors")  # NodeTrainer.checkpoint_path
    for name in (CHECKPOINT, sharded, "checkpoint.safetensors"):  # the last: the denoiser's (diffusion.train)
        assert fnmatch.fnmatch(name, CHECKPOINTS), name
    for name in ("zoo.safetensors", "output.safetensors", "ema.safetensors", "model.safetensors"):
        assert not fnmatch.fnmatch(name, CHECKPOINTS), name


@needs_proc
def test_a_full_disk_when_recording_a_stage_keeps_its_checkpoints(tmp_path, monkeypatch):
    """stage.yaml is written before the checkpoints go: a stage that could not be recorded is unfinished
    and still has its resume state."""
    with monkeypatch.context() as m:
        fail_writes(m, errno.ENOSPC, where="stage.yaml")
        with pytest.raises(GpdiffError, match="stage.yaml: No space left on device"):
            _train(Run(tmp_path))
    assert (tmp_path / "s" / "checkpoint.safetensors").read_text() == "resume state"
    assert not (tmp_path / "s" / "stage.yaml").exists()
    with Run(tmp_path).stage("s", {"a": 1}) as st:
        assert not st.cached and (st.path / "checkpoint.safetensors").exists()  # resumes in its folder


def test_human_size():
    assert [human_size(n) for n in (0, 999, 1000, 27_149_000, 1_234_000_000, 5_600_000_000_000)] == [
        "0 B", "999 B", "1.0 kB", "27.1 MB", "1.2 GB", "5600.0 GB"]


def test_folder_size_counts_a_hard_linked_file_once(tmp_path):
    atomic_write_text(tmp_path / "stage" / "ema.safetensors", "x" * 1000)
    atomic_write_text(tmp_path / "other.txt", "y" * 10)
    assert folder_size(tmp_path) == 1010
    (tmp_path / "pretrained").mkdir()
    os.link(tmp_path / "stage" / "ema.safetensors", tmp_path / "pretrained" / "ema.safetensors")
    assert folder_size(tmp_path) == 1010 and folder_size(tmp_path / "pretrained") == 1000
    assert folder_size(tmp_path / "missing") == 0
