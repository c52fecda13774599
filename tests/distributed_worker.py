"""Run by tests/utils/test_distributed.py under ``torchrun --nproc_per_node=2`` (gloo, CPU): the sharded zoo
(trained, then resumed from every rank's checkpoint) and the data-parallel denoiser (interrupted
right after a checkpoint, resumed, and trained without interruption for comparison).

Usage: torchrun --standalone --nproc_per_node=2 tests/distributed_worker.py CITY_DIR OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from gpdiff.data import load_city
from gpdiff.data.windows import WindowConfig
from gpdiff.diffusion import train as diffusion_train
from gpdiff.diffusion.train import DiffusionConfig, fit
from gpdiff.utils import distributed
from gpdiff.zoo.train import ZooConfig, train_zoo

WINDOW = WindowConfig(n_neighbors=3)
ZOO = {"init": "shared_random", "steps_per_epoch": 3, "batch_size": 8, "val_windows": 16, "node_chunk": 2}
DENOISER = {"max_steps": 30, "checkpoint_every": 10, "batch_size": 4, "warmup": 5,
            "denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2}}


class Interrupted(Exception):
    """Stands for a kill right after the first checkpoint."""


def main(city_dir: Path, out: Path) -> None:
    torch.set_num_threads(1)
    distributed.init(torch.device("cpu"))
    cities = [load_city(city_dir / f"{name}.city") for name in ("alpha", "beta")]
    # the zoo: 2 epochs, then resumed from each rank's checkpoint to 4
    for epochs in (2, 4):
        zoo = train_zoo(cities, ZooConfig(max_epochs=epochs, **ZOO), window=WINDOW, workdir=out / "zoo", seed=0, device="cpu",
                        progress=False)
    assert (zoo is None) == (distributed.rank() != 0)
    zoo = distributed.broadcast_object(zoo)
    spatial = torch.linspace(-1, 1, len(zoo) * 3).reshape(len(zoo), 3)
    temporal = torch.cos(torch.arange(len(zoo) * 2, dtype=torch.float32)).reshape(len(zoo), 2)
    config = DiffusionConfig.from_dict(DENOISER)
    fit(zoo, spatial, temporal, config, out / "denoiser_full", progress=False, seed=0, device="cpu")
    # interrupted after the checkpoint of iteration 10 (every rank stops), then resumed
    checkpoint, gather = diffusion_train._checkpoint, distributed.all_gather_object

    def checkpoint_then_stop(*args, **kwargs):  # type: ignore[no-untyped-def]
        checkpoint(*args, **kwargs)
        raise Interrupted

    def gather_then_stop(obj):  # type: ignore[no-untyped-def]
        got = gather(obj)
        if distributed.rank() != 0:
            raise Interrupted
        return got

    diffusion_train._checkpoint, distributed.all_gather_object = checkpoint_then_stop, gather_then_stop
    try:
        fit(zoo, spatial, temporal, config, out / "denoiser_resumed", progress=False, seed=0, device="cpu")
    except Interrupted:
        pass
    else:
        raise AssertionError("the interruption did not happen")
    diffusion_train._checkpoint, distributed.all_gather_object = checkpoint, gather
    distributed.barrier()
    assert (out / "denoiser_resumed" / "checkpoint.safetensors").is_file()
    fit(zoo, spatial, temporal, config, out / "denoiser_resumed", progress=False, seed=0, device="cpu")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
