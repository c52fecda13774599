"""`gpdiff zoo ...`: train the node-level model zoo of source cities, and summarise one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

# The names in gpdiff.models.MODELS, spelled out so `--help` need not import torch (a test keeps them equal).
MODEL_NAMES = ("stgcn", "gwn", "stid")


@click.group()
def zoo() -> None:
    """Train and inspect model zoos (one base model per source node)."""


@zoo.command("train")
@click.option("--cities", required=True, help="Comma-separated source cities (names or paths).")
@click.option("--model", type=str, default=None, help=f"Base model: {', '.join(MODEL_NAMES)} (default stgcn).")
@click.option("--preset", type=str, default=None, help="Size preset: small (CPU) or paper (default small).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (zoo.safetensors, config.yaml, checkpoint); rerun to resume.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="YAML file with ZooConfig fields; the flags below override it.")
@click.option("--history", type=int, default=None, help="Input steps (default 12).")
@click.option("--horizon", type=int, default=None, help="Forecast steps (default 6).")
@click.option("--k", type=int, default=None, help="Neighbours per ego-graph (default 7).")
@click.option("--batch-size", type=int, default=None, help="Training windows per node per step (default 32).")
@click.option("--lr", type=float, default=None, help="Adam learning rate (default 0.01).")
@click.option("--lr-decay", type=float, default=None, help="Learning rate factor per epoch (default 0.9).")
@click.option("--max-epochs", type=int, default=None, help="Most epochs (default 60).")
@click.option("--patience", type=int, default=None, help="Epochs without improvement before a node stops (default 3).")
@click.option("--steps-per-epoch", type=int, default=None, help="Adam steps per epoch (default 25).")
@click.option("--seed", type=int, default=None, help="Random seed (default 0).")
@click.option("--independent-init", is_flag=True, default=False,
              help="Draw every node's initial parameters independently (ablation; default: one shared init).")
@click.option("--device", type=str, default=None, help="auto, cpu or cuda (default auto).")
@click.option("--compile/--no-compile", "compile_", default=None,
              help="torch.compile the batched step (falls back to eager on failure; default off).")
@click.option("--quiet", is_flag=True, default=False, help="No progress bar.")
def train(cities: str, model: str | None, preset: str | None, out_dir: Path, config_file: Path | None,
          history: int | None, horizon: int | None, k: int | None, batch_size: int | None, lr: float | None,
          lr_decay: float | None, max_epochs: int | None, patience: int | None, steps_per_epoch: int | None, seed: int | None,
          independent_init: bool, device: str | None, compile_: bool | None, quiet: bool) -> None:
    """Train one base model per node of every source city, all nodes at once."""
    from gpdiff.data import load_city
    from gpdiff.io import read_yaml
    from gpdiff.zoo import ZooConfig, train_zoo

    fields: dict[str, Any] = dict(read_yaml(config_file) or {}) if config_file else {}
    flags = {"model": model, "preset": preset, "history": history, "horizon": horizon, "k": k,
             "batch_size": batch_size, "lr": lr, "lr_decay": lr_decay, "max_epochs": max_epochs, "patience": patience,
             "steps_per_epoch": steps_per_epoch, "seed": seed, "device": device, "compile": compile_}
    fields.update({key: value for key, value in flags.items() if value is not None})
    if independent_init:
        fields["shared_init"] = False
    config = ZooConfig.from_dict(fields)
    names = [c.strip() for c in cities.split(",") if c.strip()]
    collection = train_zoo([load_city(n) for n in names], config, out_dir, progress=not quiet)
    click.echo(f"zoo: {len(collection)} node models ({collection.model}, {collection.params.shape[1]} parameters "
               f"each) in {out_dir}")
    click.echo(summary_table(collection))


@zoo.command("show")
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--markdown", is_flag=True, default=False, help="Print a Markdown table.")
def show(out_dir: Path, markdown: bool) -> None:
    """Per-city summary of a trained zoo: validation MAE against seasonal naive, parameter norms."""
    from gpdiff.params import ParamCollection

    collection = ParamCollection.load(out_dir)
    cfg = collection.config
    click.echo(f"{collection.model} ({collection.model_config.get('preset', '?')}), "
               f"{collection.params.shape[1]} parameters per node, {len(collection)} nodes; "
               f"history {cfg.get('history')}, horizon {cfg.get('horizon')}, seed {cfg.get('seed')}")
    click.echo(summary_table(collection, fmt="github" if markdown else "simple"))


def summary_rows(collection) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """One row per city (and a total): nodes, mean per-node validation MAE of the zoo and of the
    seasonal-naive forecast, their ratio, the share of nodes beating naive, mean parameter norm."""
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
    return rows


def summary_table(collection, fmt: str = "simple") -> str:  # type: ignore[no-untyped-def]
    from gpdiff.report import table

    return table(summary_rows(collection), fmt=fmt)
