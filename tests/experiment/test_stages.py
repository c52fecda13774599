"""Stage bookkeeping (gpdiff.experiment.stages): reuse, recompute on a key change, resume, damaged outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpdiff.experiment.stages import Run
from gpdiff.utils.hashing import hash_file
from gpdiff.utils.io import read_yaml


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
