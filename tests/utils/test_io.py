"""What a stage leaves on disk and who may write it: stage locks between processes, resume
checkpoints dropped when a stage finishes, a full disk, folder sizes (gpdiff.experiment.stages, gpdiff.utils.io);
and what a long stage prints where there is no terminal (gpdiff.utils.progress)."""

from __future__ import annotations

import errno
import fnmatch
import io
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from filelock import FileLock

from gpdiff.experiment.stages import CHECKPOINTS, Run, human_size
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import atomic_write_text, load_tensors, read_yaml
from gpdiff.utils.progress import PLAIN_INTERVAL_S, progress_bar

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
    from gpdiff.zoo.nodetrain import CHECKPOINT

    sharded = CHECKPOINT.replace(".safetensors", ".rank1-of-4.safetensors")  # NodeTrainer.checkpoint_path
    for name in (CHECKPOINT, sharded, "checkpoint.safetensors"):  # the last: the denoiser's (diffusion.train)
        assert fnmatch.fnmatch(name, CHECKPOINTS), name
    for name in ("zoo.safetensors", "output.safetensors", "ema.safetensors", "model.safetensors"):
        assert not fnmatch.fnmatch(name, CHECKPOINTS), name


def _fail_writes(monkeypatch, code: int, where: str = "") -> None:
    """Make every atomic write whose path contains ``where`` fail at its fsync with ``code``, as a
    full disk or a spent quota does (often only at flush time on network file systems)."""
    import gpdiff.utils.io

    real = os.fsync

    def fsync(fd: int) -> None:
        if where in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(code, os.strerror(code))
        real(fd)

    monkeypatch.setattr(gpdiff.utils.io.os, "fsync", fsync)


needs_proc = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="names open files through /proc")


@needs_proc
def test_a_full_disk_when_recording_a_stage_keeps_its_checkpoints(tmp_path, monkeypatch):
    """stage.yaml is written before the checkpoints go: a stage that could not be recorded is unfinished
    and still has its resume state."""
    with monkeypatch.context() as m:
        _fail_writes(m, errno.ENOSPC, where="stage.yaml")
        with pytest.raises(GpdiffError, match="stage.yaml: No space left on device"):
            _train(Run(tmp_path))
    assert (tmp_path / "s" / "checkpoint.safetensors").read_text() == "resume state"
    assert not (tmp_path / "s" / "stage.yaml").exists()
    with Run(tmp_path).stage("s", {"a": 1}) as st:
        assert not st.cached and (st.path / "checkpoint.safetensors").exists()  # resumes in its folder


@needs_proc
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_is_one_line_naming_the_file_and_the_old_file_survives(tmp_path, monkeypatch, code):
    target = tmp_path / "report.md"
    atomic_write_text(target, "finished before")
    _fail_writes(monkeypatch, code)
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


@needs_proc
def test_a_run_that_fills_the_disk_stops_in_one_line_and_resumes(tmp_path, monkeypatch):
    """The disk fills while the zoo stage writes: one line, no traceback; the anchor stage finished before
    is intact, and the same command then reuses it and finishes."""
    from gpdiff.cli import main
    from gpdiff.utils.io import write_yaml
    from tests.conftest import TINY, tiny_cities

    data = tiny_cities(tmp_path / "data")
    config = write_yaml(tmp_path / "tiny.yaml", {**TINY, "target": "alpha", "data_dir": str(data),
                                                  "methods": {"seasonal_naive": {}, "transfer": {}}})
    args = ["run", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]
    with monkeypatch.context() as m:
        _fail_writes(m, errno.ENOSPC, where=f"{os.sep}zoo{os.sep}")
        r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    error = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(error) == 1 and f"{tmp_path / 'run' / 'zoo'}" in error[0] and "No space left on device" in error[0]
    assert "Traceback" not in r.output
    anchor = read_yaml(tmp_path / "run" / "anchor" / "stage.yaml")
    assert anchor["key"] and not (tmp_path / "run" / "zoo" / "stage.yaml").exists()
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "[anchor] reusing" in r.output and "[zoo] training" in r.output
    last = r.output.strip().splitlines()[-1]
    assert f"on disk: {tmp_path / 'run'} " in last and last.endswith("B)")


def test_human_size():
    assert [human_size(n) for n in (0, 999, 1000, 27_149_000, 1_234_000_000, 5_600_000_000_000)] == [
        "0 B", "999 B", "1.0 kB", "27.1 MB", "1.2 GB", "5600.0 GB"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_without_a_terminal_is_plain_lines_with_percent_elapsed_and_estimate():
    out = io.StringIO()
    bar = progress_bar(range(4), file=out, mininterval=0, desc="zoo stid/small", unit="epoch")
    for i in bar:
        bar.set_postfix(val_loss=f"{1 / (i + 1):.2f}")
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text and "|" not in text  # no redraws, no bar
    lines = text.splitlines()
    assert lines[0] == "zoo stid/small: 0% (0/4 epoch) elapsed 00:00, about ? left"
    assert re.fullmatch(r"zoo stid/small: 100% \(4/4 epoch\) elapsed 00:0\d, about 00:00 left, val_loss=0\.25",
                        lines[-1]), lines[-1]
    assert all(re.match(r"zoo stid/small: \d+% \(\d/4 epoch\) elapsed \d\d:\d\d, about (\?|\d\d:\d\d) left", ln)
               for ln in lines)


def test_plain_progress_lines_come_at_the_interval_not_at_every_step():
    out = io.StringIO()
    bar = progress_bar(total=200, file=out, desc="pretrain", unit="it")  # default interval: 30 s
    for _ in range(200):
        bar.update(1)
        bar.set_postfix(loss="0.1")  # a new postfix does not force a line
    bar.close()
    assert PLAIN_INTERVAL_S >= 10
    assert [ln.split(" elapsed")[0] for ln in out.getvalue().splitlines()] == [
        "pretrain: 0% (0/200 it)", "pretrain: 100% (200/200 it)"]


def test_progress_on_a_terminal_is_tqdms_bar():
    out = _Terminal()
    for _ in progress_bar(range(3), file=out, desc="reptile"):
        pass
    assert "\r" in out.getvalue() and "reptile" in out.getvalue()


def test_a_training_loop_without_a_terminal_prints_progress_lines(two_source_cities, tmp_path, monkeypatch):
    """The per-node trainer (zoo, fine-tuning) under nohup or CI: its progress reaches a non-terminal
    stderr as plain lines (the CLI no longer turns progress off there)."""
    import gpdiff.utils.progress
    from gpdiff.cli import progress_bars
    from gpdiff.data.splits import source_split
    from gpdiff.data.windows import CityData
    from gpdiff.models import ModelConfig, get_model
    from gpdiff.zoo.nodetrain import NodeTrainConfig, NodeTrainer

    city = two_source_cities[0]
    model = get_model("stid", ModelConfig(history=12, horizon=3, ego_size=4))
    data = CityData(city, source_split(city.n_steps), history=12, horizon=3, n_neighbors=3)
    cfg = NodeTrainConfig(max_epochs=3, patience=5, steps_per_epoch=1, batch_size=4, val_windows=8)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(gpdiff.utils.progress, "PLAIN_INTERVAL_S", 0.0)  # a line at every epoch
    assert progress_bars(quiet=False) and not progress_bars(quiet=True)
    NodeTrainer(model, [data], cfg, model.init(city.n_nodes, seed=0, shared=True), tmp_path, seed=0,
                progress=progress_bars(quiet=False), desc="zoo stid").run()
    lines = err.getvalue().splitlines()
    assert "\r" not in err.getvalue()
    steps = [re.match(r"zoo stid: (\d+)% \((\d)/3 epoch\) elapsed", ln).groups() for ln in lines]
    assert list(dict.fromkeys(steps)) == [("0", "0"), ("33", "1"), ("67", "2"), ("100", "3")]  # closing: 100% again
    assert "training=" in lines[-1] and "val_loss=" in lines[-1]


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
