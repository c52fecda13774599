"""`gpdiff zoo ...`: train the node-level model zoo of source cities, and summarise one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gpdiff.cli import progress_bars
from gpdiff.cli.options import config_assignments, config_option
from gpdiff.data.windows import CONTEXTS
from gpdiff.models import MODELS
from gpdiff.models.base import RESIDUALS
from gpdiff.zoo.params import ParamCollection
from gpdiff.zoo.train import INITS


@click.group()
def zoo() -> None:
    """Train and inspect model zoos (one base model per source node)."""


@zoo.command("train")
@click.option("--cities", required=True, help="Comma-separated source cities (names or paths).")
@config_option("--model", path="model.name", help=f"Base model: {', '.join(MODELS)}")
@config_option("--preset", path="model.preset", help="Size preset: small (CPU) or paper")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (zoo.safetensors, config.yaml, checkpoint); rerun to resume.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="A run config YAML (configs/default.yaml); its window, model, source_split, anchor, zoo, seed "
                   "and device are used. The flags below override it.")
@click.option("--set", "assignments", multiple=True, metavar="PATH=VALUE",
              help="Override any field of the run config tree, e.g. --set zoo.val_windows=64 (repeatable).")
@config_option("--history", path="window.history", type=int, help="Input steps")
@config_option("--horizon", path="window.horizon", type=int, help="Forecast steps")
@config_option("--n-neighbors", path="window.n_neighbors", type=int, help="Graph neighbours per ego-graph")
@config_option("--context", path="window.context", type=click.Choice(list(CONTEXTS)),
               help="Seasonal context: the target one day / week earlier as an input")
@config_option("--residual", path="model.residual", type=click.Choice(RESIDUALS),
               help="seasonal: forecast the correction to the seasonal context (needs --context)")
@config_option("--batch-size", path="zoo.batch_size", type=int, help="Training windows per node per step")
@config_option("--lr", path="zoo.lr", type=float, help="Adam learning rate")
@config_option("--lr-decay", path="zoo.lr_decay", type=float, help="Learning rate factor per epoch")
@config_option("--max-epochs", path="zoo.max_epochs", type=int, help="Most epochs")
@config_option("--patience", path="zoo.patience", type=int, help="Epochs without improvement before a node stops")
@config_option("--steps-per-epoch", path="zoo.steps_per_epoch", type=int, help="Adam steps per epoch")
@config_option("--seed", path="seed", type=int, help="Random seed")
@config_option("--init", path="zoo.init", type=click.Choice(list(INITS)),
               help="Where every node starts: anchor (a model trained on all source nodes), shared_random (the "
                    "GPD paper's zoo) or independent (ablation)")
@config_option("--trainable", path="zoo.trainable", type=str,
               help="Tensors every member trains, comma-separated names or globs (e.g. fc or 'tc3.*,fc'); the "
                    "others stay at the init (the anchor); none listed: all")
@config_option("--device", path="device", type=str, help="auto, cpu or cuda")
@config_option("--compile/--no-compile", "compile_", path="zoo.compile",
               help="torch.compile the batched step (falls back to eager on failure)")
@click.option("--quiet", is_flag=True, default=False, help="No progress bar.")
def train(cities: str, out_dir: Path, config_file: Path | None, assignments: tuple[str, ...], quiet: bool,
          **flags: Any) -> None:
    """Train one base model per node of every source city, all nodes at once.

    With ``--init anchor`` (the default) the anchor is trained first (OUT/anchor.safetensors; the run
    config's ``anchor`` section) and every node is fine-tuned from it. Started by
    ``torchrun --nproc_per_node=N -m gpdiff zoo train ...``, the nodes are split across the N
    processes (the result equals a single-process run); the anchor trains on rank 0."""
    from gpdiff.data import load_city
    from gpdiff.experiment.runconfig import RunConfig
    from gpdiff.utils import distributed
    from gpdiff.utils.device import resolve_device
    from gpdiff.zoo.anchor import fit_anchor
    from gpdiff.zoo.train import train_zoo

    if config_file is not None:
        _check_layout(config_file)
    given = config_assignments(click.get_current_context(), flags)
    if "zoo.trainable" in given:
        given["zoo.trainable"] = "[" + ", ".join(repr(t.strip()) for t in given["zoo.trainable"].split(",")
                                                 if t.strip()) + "]"
    sets = [f"{k}={v}" for k, v in given.items()]
    cfg = RunConfig.from_yaml(config_file, assignments=[*sets, *assignments])
    names = [c.strip() for c in cities.split(",") if c.strip()]
    loaded = [load_city(n) for n in names]
    distributed.init(resolve_device(cfg.device))  # under torchrun: join the ranks (no-op otherwise)
    anchor = None
    if cfg.zoo.init == "anchor":  # one anchor, trained on rank 0 and sent to every rank
        if distributed.is_main():
            anchor = fit_anchor(loaded, cfg.anchor, model=cfg.model, window=cfg.window, split=cfg.source_split,
                                seed=cfg.seed, device=cfg.device, progress=progress_bars(quiet), workdir=out_dir).params
        anchor = distributed.broadcast_object(anchor)
    collection = train_zoo(loaded, cfg.zoo, model=cfg.model, window=cfg.window, split=cfg.source_split, anchor=anchor,
                           seed=cfg.seed, device=cfg.device, progress=progress_bars(quiet), workdir=out_dir)
    if collection is None:  # another rank than 0: its nodes went to rank 0
        return
    click.echo(f"zoo: {len(collection)} node models ({collection.model}, {collection.params.shape[1]} parameters "
               f"each) in {out_dir}")
    click.echo(summary_table(collection))


def _check_layout(path: Path) -> None:
    """One clear line for a flat zoo config of the earlier layout (``lr: 0.01`` at the top level)."""
    from gpdiff.experiment.runconfig import RunConfig
    from gpdiff.utils.config import field_names
    from gpdiff.utils.errors import GpdiffError
    from gpdiff.utils.io import read_yaml
    from gpdiff.zoo.train import ZooConfig

    doc = read_yaml(path)
    if not isinstance(doc, dict):
        return
    flat = sorted(k for k in doc if k not in field_names(RunConfig) and k in field_names(ZooConfig))
    if flat:
        raise GpdiffError(f"{path}: {flat} are zoo settings of the earlier flat layout; --config takes a run config "
                          "now: nest them under `zoo:` (history/horizon under `window:`), as in configs/default.yaml.")


@zoo.command("show")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--markdown", is_flag=True, default=False, help="Print a Markdown table.")
def show(out_dir: Path, markdown: bool) -> None:
    """Per-city summary of a trained zoo: validation MAE against seasonal naive, parameter norms."""
    collection = ParamCollection.load(out_dir)
    mc = collection.model_config
    click.echo(f"{collection.model} ({mc.get('preset', '?')}), {collection.params.shape[1]} parameters per node, "
               f"{len(collection)} nodes; history {mc.get('history')}, horizon {mc.get('horizon')}, "
               f"seasonal context {mc.get('context', 'none')} (residual {mc.get('residual', 'none')}), "
               f"init {collection.config.get('init', 'shared_random')}, "
               f"seed {collection.config.get('seed')}")
    click.echo(summary_table(collection, fmt="github" if markdown else "simple"))


def summary_rows(collection: ParamCollection) -> list[dict[str, Any]]:
    """One row per city (and a total): nodes, mean per-node validation MAE of the zoo and of the
    seasonal-naive forecast, their ratio, the share of nodes beating naive, mean parameter norm;
    with several members per node, the mean validation MAE of members 1 and up."""
    import numpy as np

    cities = np.array(collection.cities)
    norms = collection.params.norm(dim=1).numpy()
    mae = collection.metrics["val_mae"].numpy() if "val_mae" in collection.metrics else np.full(len(cities), np.nan)
    naive = collection.metrics["naive_mae"].numpy() if "naive_mae" in collection.metrics else np.full(len(cities), np.nan)
    rows = []
    groups = [(c, cities == c) for c in collection.city_names()]
    if len(groups) > 1:
        groups.append(("all", np.ones(len(cities), dtype=bool)))
    for name, sel in groups:
        m, n = float(np.nanmean(mae[sel])), float(np.nanmean(naive[sel]))
        rows.append({"city": name, "nodes": int(sel.sum()), "val MAE": m, "naive MAE": n,
                     "ratio": m / n if n > 0 else float("nan"),
                     "beats naive": f"{np.mean(mae[sel] < naive[sel]):.0%}",
                     "param norm": float(norms[sel].mean())})
        if "members_val_mae" in collection.metrics:  # zoo.members > 1: the other members' mean
            rows[-1][f"members 1-{collection.n_members - 1} val MAE"] = float(
                np.nanmean(collection.metrics["members_val_mae"].numpy()[sel]))
    return rows


def summary_table(collection: ParamCollection, fmt: str = "simple") -> str:
    from gpdiff.experiment.report import table

    return table(summary_rows(collection), fmt=fmt)
