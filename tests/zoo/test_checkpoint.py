"""gpdiff.zoo.checkpoint: a training state's file, resumed only by the same training."""

from __future__ import annotations

import pytest
import torch

from gpdiff.utils.errors import GpdiffError
from gpdiff.zoo.checkpoint import CHECKPOINT, Checkpoint, CheckpointWriter, TrainState

CPU = torch.device("cpu")
IDENTITY = {"config": {"lr": 0.01, "batch_size": 8}, "seed": 0, "cities": ["a"], "nodes": [3]}


def _saved(tmp_path, identity=IDENTITY) -> TrainState:
    state = TrainState.fresh({"w": torch.arange(6.0).reshape(3, 2)})
    state.epoch, state.step = 2, 10
    state.best_val[:] = torch.tensor([0.5, 0.25, 1.0])
    writer = CheckpointWriter()
    ckpt = Checkpoint(tmp_path, identity)
    writer.submit(state, ckpt.path, ckpt.meta)
    writer.close()
    return state


def test_the_same_training_resumes_the_saved_state(tmp_path) -> None:
    state = _saved(tmp_path)
    again = Checkpoint(tmp_path, IDENTITY).resume(CPU)
    assert again is not None and (again.epoch, again.step) == (2, 10)
    assert torch.equal(again.params["w"], state.params["w"]) and torch.equal(again.best_val, state.best_val)


def test_no_file_or_a_damaged_one_starts_over(tmp_path) -> None:
    assert Checkpoint(tmp_path, IDENTITY).resume(CPU) is None
    _saved(tmp_path)
    path = tmp_path / CHECKPOINT
    path.write_bytes(path.read_bytes()[:100])
    assert Checkpoint(tmp_path, IDENTITY).resume(CPU) is None and not path.exists()


def test_another_training_is_refused_naming_what_changed(tmp_path) -> None:
    _saved(tmp_path)
    other = {**IDENTITY, "seed": 1, "config": {**IDENTITY["config"], "lr": 0.1}}
    with pytest.raises(GpdiffError, match=r"different setup \(seed: 0 -> 1; lr: 0.01 -> 0.1\)"):
        Checkpoint(tmp_path, other).resume(CPU)


def test_a_sharded_training_has_one_file_per_rank_and_refuses_another_count(tmp_path) -> None:
    assert Checkpoint(tmp_path, IDENTITY, rank=1, world=3).path.name == "checkpoint.rank1-of-3.safetensors"
    _saved(tmp_path)
    with pytest.raises(GpdiffError, match=r"another number of processes \(checkpoint.safetensors\)"):
        Checkpoint(tmp_path, IDENTITY, rank=0, world=2).resume(CPU)
