"""Config helpers: the origin of a dotted setting is its longest listed prefix of whole components."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest

from gpdiff.utils.config import from_mapping, origin_of, path_origins
from gpdiff.utils.errors import GpdiffError


def test_origin_is_the_longest_listed_prefix_of_whole_components():
    origins = {"zoo": "file", "zoo.lr": "--set zoo.lr=1"}
    assert origin_of("zoo.lr", origins) == "--set zoo.lr=1"
    assert origin_of("zoo.lr_decay", origins) == "file"  # zoo.lr is not a prefix of zoo.lr_decay
    assert origin_of("window.history", origins, "default") == "default"
    assert path_origins({"zoo": {"lr": 1, "model": "stid"}, "methods": {"gpd": {}}, "seed": 0}, "x") == {
        "zoo.lr": "x", "zoo.model": "x", "methods.gpd": "x", "seed": "x"}


# ------------------------------------------------------------------ renamed fields (one word for a loop's length)
@dataclasses.dataclass
class _Inner:
    RENAMED: ClassVar[dict[str, str]] = {"iters": "max_steps"}
    max_steps: int = 5
    lr: float = 0.1


@dataclasses.dataclass
class _Outer:
    inner: _Inner = dataclasses.field(default_factory=_Inner)


def test_an_old_name_given_by_a_user_names_the_new_one_in_one_line():
    with pytest.raises(GpdiffError, match=r"^my.yaml: run config setting 'inner.iters' is now called 'inner.max_steps'"):
        from_mapping(_Outer, {"inner": {"iters": 3}}, "run config", "my.yaml")


def test_a_file_written_by_an_older_version_is_read_under_the_new_name():
    assert from_mapping(_Outer, {"inner": {"iters": 3, "lr": 1}}, "config", upgrade=True) == _Outer(_Inner(3, 1.0))


@pytest.mark.parametrize("path, old, new", [("gpdiff.diffusion.train.DiffusionConfig", "iters", "max_steps"),
                                            ("gpdiff.prompts.temporal.MaskedPatchConfig", "train_steps", "max_steps"),
                                            ("gpdiff.methods.reptile.ReptileConfig", "meta_steps", "max_steps")])
def test_every_step_counted_training_loop_calls_its_length_max_steps(path, old, new):
    import importlib

    module, name = path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    assert cls.RENAMED[old] == new and new in {f.name for f in dataclasses.fields(cls)}
    assert getattr(from_mapping(cls, {old: 7}, "config", upgrade=True), new) == 7
