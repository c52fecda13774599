"""MethodResult files: what a method stage keeps, and files of older versions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gpdiff.methods import MethodResult
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import load_tensors, save_tensors


def _result() -> MethodResult:
    rng = np.random.default_rng(0)
    return MethodResult(pred=rng.normal(size=(3, 5, 2)).astype(np.float32), params=torch.randn(3, 7),
                        notes={"k": 2}, blend=False)


def test_a_result_round_trips_with_its_forecasts(tmp_path):
    r = _result()
    back = MethodResult.load(r.save(tmp_path / "out.safetensors"))
    assert back.pred.tobytes() == r.pred.tobytes() and torch.equal(back.params, r.params)
    assert (back.notes, back.blend, back.val_pred) == ({"k": 2}, False, None)


def test_a_result_saved_without_forecasts_gets_them_back_from_its_parameters(tmp_path):
    r = _result()
    f = r.save(tmp_path / "out.safetensors", forecasts=False)
    tensors, meta = load_tensors(f)
    assert set(tensors) == {"params"} and meta["forecasts"] == "recomputed"
    seen = []

    def recompute(params):
        seen.append(params)
        return r.pred.copy()

    back = MethodResult.load(f, recompute)
    assert back.pred.tobytes() == r.pred.tobytes() and torch.equal(seen[0], r.params)
    with pytest.raises(GpdiffError, match="holds no test forecasts and they cannot be recomputed here"):
        MethodResult.load(f)
    with pytest.raises(GpdiffError, match="holds no test forecasts"):
        MethodResult.load(f, lambda params: None)  # a method whose forecasts are not a function of what is kept


def test_a_result_file_of_an_older_version_with_forecasts_and_init_loads(tmp_path):
    """Before the start of fine-tuning stopped being kept, every file held ``init`` and ``pred``."""
    r = _result()
    f = save_tensors(tmp_path / "old.safetensors", {"pred": torch.from_numpy(r.pred), "params": r.params,
                                                     "init": torch.zeros(3, 7)},
                     {"format": "gpdiff.method_result", "notes": {"k": 2}, "blend": True})

    def never(params):
        raise AssertionError("the stored forecasts are read, not recomputed")

    back = MethodResult.load(f, never)
    assert back.pred.tobytes() == r.pred.tobytes() and torch.equal(back.params, r.params) and back.blend
    assert not hasattr(back, "init")
    assert "init" not in load_tensors(back.save(tmp_path / "new.safetensors"))[0]
