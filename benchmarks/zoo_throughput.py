"""Zoo training throughput: a per-node Python loop against the batched zoo trainer.

Both train the same nodes of the bundled flow cities (nyc-taxi, montevideo-bus, melbourne-ped,
hangzhou-metro) from the same shared initialisation, on the same training windows (the trainer's
own draws), for the same number of Adam steps with the same batch size:

- loop: for every node, one eager ``nn.Module`` (the model's plain reference version, which runs
  every ego slot through every layer like the released GPD code) and its own ``torch.optim.Adam``;
- batched: :class:`gpdiff.zoo.nodetrain.NodeTrainer` (what :func:`gpdiff.zoo.train.train_zoo` trains with), all
  nodes as one stacked parameter tensor per weight.

It prints training windows per second for both, at 100 nodes and at all source nodes, their
ratio, and the achieved FLOP/s (matmul FLOPs of one forward + backward counted with torch's
FlopCounterMode, so each side counts the work it actually does) next to this machine's measured
fp32 matmul peak. Validation and checkpointing are not timed. Then (unless ``--no-full``) it trains
the whole zoo of the flow cities to convergence and reports the wall time: default training
settings from one shared random init at lr 0.01 (the setting recorded in BENCHMARKS.md), or
``--init anchor --lr 0.003`` for today's default zoo (the anchor is trained first, not timed).

    python benchmarks/zoo_throughput.py                 # stgcn small, 2 threads (torch default here)
    python benchmarks/zoo_throughput.py --compile       # batched step through torch.compile
    python benchmarks/zoo_throughput.py --loop-nodes 200 --no-full   # quicker
"""

from __future__ import annotations

import argparse
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from gpdiff.data import load_city
from gpdiff.data.catalog import FLOW_CITIES
from gpdiff.data.city import City
from gpdiff.data.splits import SourceSplit
from gpdiff.data.windows import WindowConfig
from gpdiff.experiment.report import table
from gpdiff.models.config import BaseModelConfig
from gpdiff.utils.device import resolve_device
from gpdiff.zoo.anchor import AnchorConfig, fit_anchor
from gpdiff.zoo.checkpoint import TrainState
from gpdiff.zoo.nodetrain import NodeTrainer, masked_node_mae
from gpdiff.zoo.sourcepool import prepare_cities
from gpdiff.zoo.train import INITS, ZooConfig, train_zoo


def matmul_peak(n: int = 1024, reps: int = 20) -> float:
    """Measured fp32 matmul FLOP/s (best of ``reps`` square ``n x n`` products)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def build_trainer(cities: list[City], arch: BaseModelConfig, window: WindowConfig, config: ZooConfig, out_dir: Path,
                  device: str, seed: int = 0) -> NodeTrainer:
    """The batched trainer :func:`gpdiff.zoo.train.train_zoo` would build for ``cities`` (shared init of ``seed``)."""
    dev = resolve_device(device)
    model = arch.build(window)
    data = prepare_cities(cities, window, SourceSplit(), model, dev)
    init = model.init(sum(d.n_nodes for d in data), seed=seed, shared=True, device=dev)
    return NodeTrainer(model, data, config, init, out_dir, seed=seed, progress=False, desc=f"zoo {model.name}")


def origins_for(trainer: NodeTrainer, rows: np.ndarray) -> list[torch.Tensor]:
    return list(trainer.epoch_origins(rows, epoch=0))


@contextmanager
def only(trainer: NodeTrainer, rows: np.ndarray) -> Iterator[None]:
    """Train ``rows`` as a zoo of just these nodes would: one block, chunked as usual (the trainer's
    own blocks hold ``BLOCK_CHUNKS x node_chunk`` nodes of the whole zoo, a subset would be spread)."""
    blocks = trainer.blocks
    if rows.size < trainer.rows.size:
        trainer.blocks = [rows]
    try:
        yield
    finally:
        trainer.blocks = blocks


def run_batched(trainer: NodeTrainer, rows: np.ndarray) -> float:
    """Seconds for ``steps_per_epoch`` batched steps of ``rows`` (after one warm-up epoch)."""
    state = TrainState.fresh(trainer.init)
    trainer._train_epoch(state, rows)  # warm-up (and compilation, if any)
    state = TrainState.fresh(trainer.init)
    t = time.perf_counter()
    trainer._train_epoch(state, rows)
    return time.perf_counter() - t


def run_loop(trainer: NodeTrainer, rows: np.ndarray, origins: list[torch.Tensor]) -> float:
    """Seconds to train ``rows`` one after another, each with its own module and optimizer."""
    model, cfg = trainer.model, trainer.config
    init = {k: v[0] for k, v in model.init(1, seed=trainer.seed).items()}
    warm = model.reference(init)
    step_node(warm, torch.optim.Adam(warm.parameters(), lr=cfg.lr), trainer, rows[0], origins[0][:1])
    t = time.perf_counter()
    for i, row in enumerate(rows):
        net = model.reference(init)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
        for o in origins:
            step_node(net, opt, trainer, row, o[i:i + 1])
    return time.perf_counter() - t


def node_batch(trainer: NodeTrainer, row: int, origins: torch.Tensor):  # type: ignore[no-untyped-def]
    c = int(trainer.layout.node_city[row])
    local = torch.tensor([row - int(trainer.layout.offsets[c])], device=trainer.device)
    return trainer.data[c].batch(local, origins)


def step_node(net: torch.nn.Module, opt: torch.optim.Optimizer, trainer: NodeTrainer, row: int,
              origins: torch.Tensor) -> None:
    batch = node_batch(trainer, row, origins)
    pred = net.forward_batch(batch, 0)
    loss = masked_node_mae(pred[None], batch.y, batch.y_mask).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()


def flops_per_window(trainer: NodeTrainer, rows: np.ndarray, origins: torch.Tensor) -> tuple[float, float]:
    """Matmul FLOPs of one training window (forward + backward): batched trainer (one step over all
    ``rows``, so every chunk's trimmed ego-graph counts), per-node module (one node)."""
    steps, loss_fn = trainer.config.steps_per_epoch, trainer.loss_fn
    trainer.config.steps_per_epoch = 1
    trainer.loss_fn = lambda p, b: masked_node_mae(trainer.model.forward(p, b), b.y, b.y_mask).sum()  # eager
    state = TrainState.fresh(trainer.init)
    with FlopCounterMode(display=False) as fc:
        trainer._train_epoch(state, rows)
    trainer.config.steps_per_epoch, trainer.loss_fn = steps, loss_fn
    batched = fc.get_total_flops() / (rows.size * origins.shape[1])
    net = trainer.model.reference()
    batch = node_batch(trainer, int(rows[0]), origins[:1])
    with FlopCounterMode(display=False) as fc:
        masked_node_mae(net.forward_batch(batch, 0)[None], batch.y, batch.y_mask).sum().backward()
    return batched, fc.get_total_flops() / origins.shape[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="stgcn")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--steps", type=int, default=10, help="Adam steps per node in the timed runs")
    ap.add_argument("--batch-size", type=int, default=ZooConfig().batch_size)
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the batched step")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--loop-nodes", type=int, default=0,
                    help="time the loop on this many of the nodes (0: all); its rate is per node anyway")
    ap.add_argument("--no-full", action="store_true", help="skip the full zoo run to convergence")
    ap.add_argument("--out", default="runs/bench/zoo-throughput", help="folder for the full zoo run")
    ap.add_argument("--init", choices=INITS, default="shared_random",
                    help="the full run's zoo.init (anchor: the anchor is trained first, not timed)")
    ap.add_argument("--lr", type=float, default=0.01, help="the full run's zoo.lr (0.003 is the anchored default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    cities = [load_city(c) for c in FLOW_CITIES]
    window = WindowConfig()
    arch = BaseModelConfig(args.model, args.preset)
    config = ZooConfig(batch_size=args.batch_size, steps_per_epoch=args.steps, compile=args.compile)
    trainer = build_trainer(cities, arch, window, config, Path(args.out), args.device)
    everything = trainer._order(np.arange(trainer.n_nodes))
    hundred = trainer._order(np.linspace(0, trainer.n_nodes - 1, 100).round().astype(np.int64))
    peak = matmul_peak()
    print(f"# zoo throughput: {args.model} ({args.preset}, {trainer.model.n_params} parameters), batch "
          f"{args.batch_size}, {args.steps} steps, {torch.get_num_threads()} threads, device {trainer.device}, "
          f"compile={args.compile}")
    print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}; "
          f"measured fp32 matmul peak {peak / 1e9:.1f} GFLOP/s")

    rows_out = []
    for label, rows in (("100 nodes", hundred), (f"all {trainer.n_nodes} nodes", everything)):
        origins = origins_for(trainer, rows)
        with only(trainer, rows):
            f_batched, f_loop = flops_per_window(trainer, rows, origins[0])
            t_batched = run_batched(trainer, rows)
        windows = rows.size * args.steps * args.batch_size
        pick = np.arange(rows.size)
        if args.loop_nodes and args.loop_nodes < rows.size:
            pick = np.linspace(0, rows.size - 1, args.loop_nodes).round().astype(np.int64)
        t_loop = run_loop(trainer, rows[pick], [o[torch.from_numpy(pick)] for o in origins]) * rows.size / pick.size
        wb, wl = windows / t_batched, windows / t_loop
        rows_out.append({"nodes": label, "loop win/s": round(wl), "batched win/s": round(wb), "ratio": wb / wl,
                         "loop GFLOP/s": wl * f_loop / 1e9, "batched GFLOP/s": wb * f_batched / 1e9,
                         "peak GFLOP/s": peak / 1e9, "batched MFLOP/window": f_batched / 1e6,
                         "loop MFLOP/window": f_loop / 1e6})
        print(table(rows_out[-1:], floatfmt=".3g"))
    print()
    print(table(rows_out, fmt="github", floatfmt=".3g"))

    if not args.no_full:
        out = Path(args.out)
        if out.exists():
            shutil.rmtree(out)
        full = ZooConfig(compile=args.compile, init=args.init, lr=args.lr)
        anchor = (fit_anchor(cities, AnchorConfig(), model=arch, window=window, device=args.device, workdir=out)
                  if args.init == "anchor" else None)
        t = time.perf_counter()
        col = train_zoo(cities, full, model=arch, window=window, anchor=anchor, device=args.device, workdir=out)
        assert col is not None
        wall = time.perf_counter() - t
        epochs = col.metrics["epochs"]
        print(f"\nfull zoo of {', '.join(FLOW_CITIES)}: {len(col)} nodes to convergence in {wall:.0f} s "
              f"(epochs per node: median {float(epochs.median()):.0f}, max {float(epochs.max()):.0f}; "
              f"{col.metrics['val_mae'].lt(col.metrics['naive_mae']).float().mean():.0%} of nodes beat seasonal naive)")


if __name__ == "__main__":
    main()
