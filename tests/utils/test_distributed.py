"""torchrun with two CPU processes (gloo): the sharded zoo equals the single-process zoo bit for bit,
and the data-parallel denoiser trains, resumes exactly after an interruption, and generates."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from gpdiff.data.splits import SourceSplit
from gpdiff.data.synthetic import synthetic_city
from gpdiff.diffusion.sample import generate_tensors
from gpdiff.diffusion.train import DiffusionModel
from gpdiff.models.config import BaseModelConfig
from gpdiff.utils import distributed
from gpdiff.utils.io import load_tensors
from gpdiff.zoo.nodelayout import BLOCK_CHUNKS
from gpdiff.zoo.nodetrain import NodeTrainConfig, NodeTrainer
from gpdiff.zoo.params import ParamCollection
from gpdiff.zoo.sourcepool import prepare_cities
from gpdiff.zoo.train import ZooConfig, train_zoo
from tests.conftest import REPO
from tests.distributed_worker import WINDOW, ZOO

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not built")]
WORKER = REPO / "tests" / "distributed_worker.py"


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """Two source cities saved to files, and the worker's outputs after one two-process torchrun."""
    root = tmp_path_factory.mktemp("distributed")
    cities = [synthetic_city("alpha", n_nodes=9, days=8, seed=0, k=3), synthetic_city("beta", n_nodes=7, days=8, seed=1, k=3)]
    for city in cities:
        city.save(root / f"{city.name}.city")
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           str(WORKER), str(root), str(root / "out")], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, failure(done)
    return cities, root / "out"


def failure(done: subprocess.CompletedProcess) -> str:
    """What a failed torchrun printed: every rank's gpdiff error line first (another rank's traceback
    can fill the tail of stderr), then the tails of stdout and stderr."""
    errors = [line for line in done.stderr.splitlines() if "error:" in line]
    return "\n".join(errors) + "\n" + done.stdout[-3000:] + done.stderr[-3000:]


def test_sharded_zoo_equals_the_single_process_zoo_bit_for_bit(two_process_run, tmp_path):
    cities, out = two_process_run
    sharded = ParamCollection.load(out / "zoo")
    single = train_zoo(cities, ZooConfig(max_epochs=4, **ZOO), window=WINDOW, workdir=tmp_path, seed=0, device="cpu", progress=False)
    assert torch.equal(sharded.params, single.params)
    for key in ("val_loss", "best_epoch", "epochs", "val_mae"):
        assert torch.equal(sharded.metrics[key], single.metrics[key]), key
    # each rank trained (and checkpointed) its own blocks of nodes: 16 nodes, blocks of 2 x BLOCK_CHUNKS
    for rank in (0, 1):
        tensors, meta = load_tensors(out / "zoo" / f"checkpoint.rank{rank}-of-2.safetensors")
        assert meta["epoch"] == 4 and meta["identity"]["shard"] == [rank, 2]
        assert 0 < tensors["best_val"].numel() < 16


def test_two_process_denoiser_resumes_exactly_and_generates(two_process_run):
    _, out = two_process_run
    full, resumed = DiffusionModel.load(out / "denoiser_full", "cpu"), DiffusionModel.load(out / "denoiser_resumed", "cpu")
    assert full.info["ranks"] == 2 and full.info["iterations"] == 30
    for a, b in ((full.denoiser, resumed.denoiser), (full.ema, resumed.ema)):
        for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
            assert torch.equal(x, y), name
    assert not (out / "denoiser_resumed" / "checkpoint.safetensors").exists()
    n = 3
    params = generate_tensors(resumed, torch.zeros(n, resumed.spatial_dim), torch.zeros(n, resumed.temporal_dim),
                              num_inference_steps=5)
    assert params.shape == (n, resumed.tokenizer.n_params) and torch.isfinite(params).all()


def test_gpdiff_run_under_torchrun_shards_the_zoo_and_writes_one_report(tmp_path):
    import yaml

    from gpdiff.experiment.pipeline import run_pipeline
    from gpdiff.experiment.runconfig import RunConfig
    from tests.conftest import TINY, tiny_cities

    data = tiny_cities(tmp_path / "data")
    settings = {**TINY, "target": "alpha", "data_dir": str(data), "methods": {"seasonal_naive": {}, "gpd": {}},
                "zoo": {**TINY["zoo"], "node_chunk": 1}}
    single = run_pipeline(RunConfig.from_dict({**settings, "out": str(tmp_path / "single")}), progress=False,
                          log=lambda m: None)
    # keep the finished zoo's resume checkpoints: they show that each rank trained its own shard
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({**settings, "out": str(tmp_path / "two"), "keep_checkpoints": True}))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                           "gpdiff", "run", "--config", str(tmp_path / "run.yaml"), "--quiet"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, failure(done)
    assert done.stdout.count("report:") == 1  # rank 0 reports, rank 1 only trains
    two = tmp_path / "two"
    assert torch.equal(ParamCollection.load(two / "zoo").params, ParamCollection.load(single.out / "zoo").params)
    assert sorted(p.name for p in (two / "zoo").glob("checkpoint*")) == [
        "checkpoint.rank0-of-2.safetensors", "checkpoint.rank1-of-2.safetensors"]
    assert DiffusionModel.load(two / "diffusion", "cpu").info["ranks"] == 2
    assert (two / "report.md").is_file() and (two / "results.csv").is_file()


def test_shards_cover_every_node_once_in_whole_blocks(two_source_cities, tmp_path):
    model = BaseModelConfig().build(WINDOW)
    data = prepare_cities(two_source_cities, WINDOW, SourceSplit(), model)
    init = model.init(11, seed=0)
    config = NodeTrainConfig(node_chunk=1)
    shards = [NodeTrainer(model, data, config, init, tmp_path, shard=(r, 3)) for r in range(3)]
    rows = np.concatenate([t.rows for t in shards])
    assert sorted(rows.tolist()) == list(range(11))
    assert [len(t.blocks) for t in shards] == [1, 1, 1]  # blocks of BLOCK_CHUNKS nodes, dealt round robin
    assert max(b.size for t in shards for b in t.blocks) == BLOCK_CHUNKS
    assert shards[2].checkpoint_path().name == "checkpoint.rank2-of-3.safetensors"
    assert NodeTrainer(model, data, config, init, tmp_path).checkpoint_path().name == "checkpoint.safetensors"


def test_checkpoints_of_another_process_count_are_named_not_ignored(two_source_cities, tmp_path):
    from gpdiff.utils.errors import GpdiffError

    model = BaseModelConfig().build(WINDOW)
    data = prepare_cities(two_source_cities, WINDOW, SourceSplit(), model)
    (tmp_path / "checkpoint.rank1-of-2.safetensors").write_bytes(b"")
    trainer = NodeTrainer(model, data, NodeTrainConfig(max_epochs=1), model.init(11, seed=0), tmp_path, progress=False)
    with pytest.raises(GpdiffError, match="another number of processes.*rank1-of-2"):
        trainer.run()


def test_single_process_helpers_are_no_ops():
    assert not distributed.active() and distributed.rank() == 0 and distributed.world_size() == 1
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    rows = torch.tensor([2, 0, 1])
    got = distributed.gather_rows({"x": torch.tensor([[20.0], [0.0], [10.0]])}, rows, 3)
    assert got is not None and got["x"].flatten().tolist() == [0.0, 10.0, 20.0]
    with pytest.raises(AssertionError, match="cover"):
        distributed.gather_rows({"x": torch.zeros(2, 1)}, torch.tensor([0, 0]), 2)


def test_half_set_environment_names_torchrun(monkeypatch):
    from gpdiff.utils.errors import GpdiffError

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    with pytest.raises(GpdiffError, match="torchrun"):
        distributed.init(torch.device("cpu"))
