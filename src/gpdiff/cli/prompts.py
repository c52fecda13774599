"""`gpdiff prompts ...`: fit prompt encoders, compute, inspect and check node prompts."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import click

from gpdiff.cli import progress_bars
from gpdiff.data.splits import SourceSplit
from gpdiff.prompts import SPATIAL_ENCODERS, TEMPORAL_ENCODERS, PromptsConfig


@click.group()
def prompts() -> None:
    """Spatial and temporal node prompts (the conditioning of the parameter generator)."""


def _split_names(cities: str) -> list[str]:
    return [c.strip() for c in cities.split(",") if c.strip()]


@prompts.command("fit")
@click.option("--cities", required=True, help="Comma-separated source cities (names or paths).")
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: encoders (temporal/, spatial/, config.yaml) and prompts.safetensors.")
@click.option("--temporal", type=click.Choice(list(TEMPORAL_ENCODERS)), default=PromptsConfig.temporal, show_default=True,
              help="Temporal encoder.")
@click.option("--spatial", type=click.Choice(list(SPATIAL_ENCODERS)), default=PromptsConfig.spatial, show_default=True,
              help="Spatial encoder.")
@click.option("--days", type=float, default=TEMPORAL_ENCODERS["masked_patch"].config_class.days, show_default=True,
              help="Input length of the temporal prompt: a node's most recent DAYS days.")
@click.option("--max-steps", type=int, default=None,
              help=f"Training steps of the masked_patch encoder (default "
                   f"{TEMPORAL_ENCODERS['masked_patch'].config_class.max_steps}).")
@click.option("--spatial-dim", type=int, default=None,
              help="Project graph prompts to this width (default: the standardised features, ~21 columns).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="YAML with `temporal_config:` and `spatial_config:` field overrides; flags override it.")
@click.option("--train", "train_frac", type=float, default=SourceSplit.train, show_default=True,
              help="Training fraction of each source city (the only data read; the run's source_split.train).")
@click.option("--val", "val_frac", type=float, default=SourceSplit.val, show_default=True,
              help="Validation fraction (source_split.val).")
@click.option("--test", "test_frac", type=float, default=SourceSplit.test, show_default=True,
              help="Test fraction (source_split.test).")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--quiet", is_flag=True, default=False, help="No progress bar.")
def fit(cities: str, out_dir: Path, temporal: str, spatial: str, days: float, max_steps: int | None,
        spatial_dim: int | None, config_file: Path | None, train_frac: float, val_frac: float, test_frac: float,
        seed: int, quiet: bool) -> None:
    """Fit the encoders on the cities' training periods; write them and every node's prompts."""
    from gpdiff.data import load_city
    from gpdiff.prompts import PROMPTS_FILE, PromptsConfig, fit_prompts, source_segment
    from gpdiff.utils.config import field_names
    from gpdiff.utils.io import read_yaml

    doc: dict[str, Any] = dict(read_yaml(config_file) or {}) if config_file else {}
    tcfg = dict(doc.get("temporal_config") or {})
    scfg = dict(doc.get("spatial_config") or {})
    tcfg["days"] = days
    if max_steps is not None:
        if "max_steps" not in field_names(TEMPORAL_ENCODERS[temporal].config_class):
            raise click.UsageError(f"--max-steps applies to the masked_patch encoder, not {temporal!r}.")
        tcfg["max_steps"] = max_steps
    if spatial_dim is not None:
        scfg["dim"] = spatial_dim
    names = _split_names(cities)
    loaded = [load_city(n) for n in names]
    split = SourceSplit(train_frac, val_frac, test_frac)
    segs = [source_segment(c, split) for c in loaded]
    t0 = time.perf_counter()
    enc = fit_prompts(loaded, PromptsConfig(temporal, spatial, tcfg, scfg), segments=segs, seed=seed,
                      progress=progress_bars(quiet))
    fit_s = time.perf_counter() - t0
    enc.save(out_dir, extra={"cities": [c.name for c in loaded], "split": [train_frac, val_frac, test_frac],
                             "days": days, "seed": seed, "fit_seconds": round(fit_s, 1)})
    ps = enc.encode_many(loaded, segs)
    ps.save(out_dir / PROMPTS_FILE)
    click.echo(f"fitted {temporal} temporal + {spatial} spatial encoders on {len(ps)} nodes of "
               f"{len(loaded)} city(ies) in {fit_s:.1f} s")
    _summary(ps)
    click.echo(f"encoders: {out_dir}/  prompts: {out_dir / PROMPTS_FILE}")


@prompts.command("encode")
@click.argument("encoders", type=click.Path(file_okay=False, exists=True, path_type=Path))
@click.option("--city", required=True, help="City name or path.")
@click.option("--out", "out_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the prompts (.safetensors).")
@click.option("--target-days", type=float, default=None,
              help="Treat the city as a target: prompts from its N few-shot days only (default: a source, "
                   "prompts from its training period).")
@click.option("--val-days", type=float, default=1.0, show_default=True, help="Target validation days.")
@click.option("--test-fraction", type=float, default=0.2, show_default=True, help="Target test fraction.")
@click.option("--window", type=int, default=18, show_default=True,
              help="history + horizon: the few-shot days must hold one window.")
def encode(encoders: Path, city: str, out_file: Path, target_days: float | None, val_days: float,
           test_fraction: float, window: int) -> None:
    """Prompts of every node of one city, with encoders from `gpdiff prompts fit`."""
    from gpdiff.data import load_city
    from gpdiff.prompts import PromptEncoders, source_segment, target_segment

    enc = PromptEncoders.load(encoders)
    c = load_city(city)
    if target_days is None:
        fractions = PromptEncoders.read_config(encoders).get("split")
        seg = source_segment(c, SourceSplit(*fractions) if fractions else None)
    else:
        seg = target_segment(c, target_days, val_days, test_fraction, window)
    ps = enc.encode(c, seg)
    ps.save(out_file)
    click.echo(f"{c.name}: prompts of {len(ps)} nodes from steps [{seg.start}, {seg.stop}) -> {out_file}")
    _summary(ps)


@prompts.command("show")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the PCA scatter PNG (default: prompts_pca.png beside the prompts).")
def show(path: Path, plot_path: Path | None) -> None:
    """Summary of a prompt folder or file, and a 2-D PCA scatter of the prompts coloured by city."""
    from gpdiff.prompts import PromptSet, prompt_file

    file = prompt_file(path)
    ps = PromptSet.load(file)
    m = ps.meta
    click.echo(f"{file}: {len(ps)} nodes, {len(ps.city_names())} city(ies); temporal encoder "
               f"{m.get('temporal_encoder')!r} ({ps.temporal_dim}-d), spatial encoder {m.get('spatial_encoder')!r} "
               f"({ps.spatial_dim}-d)")
    _summary(ps)
    out = plot_pca(ps, plot_path or file.with_name("prompts_pca.png"))
    click.echo(f"plot: {out}")


@prompts.command("check")
@click.argument("path", type=click.Path(exists=True, path_type=Path))
@click.option("--zoo", "zoo_path", required=True, type=click.Path(exists=True, path_type=Path),
              help="A trained zoo (folder or zoo.safetensors) of the same source cities.")
@click.option("--random-draws", type=int, default=3, show_default=True, help="Random other-city nodes per node.")
@click.option("--seed", type=int, default=0, show_default=True)
def check(path: Path, zoo_path: Path, random_draws: int, seed: int) -> None:
    """Do the prompts predict the parameters? Rank correlation and the nearest-neighbour transfer check."""
    from gpdiff.data import load_city
    from gpdiff.prompts import PromptSet
    from gpdiff.prompts.diagnostics import rank_correlation, transfer_check
    from gpdiff.zoo.params import ParamCollection

    ps = PromptSet.load(path)
    coll = ParamCollection.load(zoo_path)
    click.echo(f"prompts {ps.meta.get('temporal_encoder')}/{ps.meta.get('spatial_encoder')} vs zoo "
               f"{coll.model} ({len(coll)} nodes, {', '.join(coll.city_names())})")
    rho = rank_correlation(ps, coll, seed=seed)
    click.echo(_table([{"prompt part": k, **{f"rho {p}": v for p, v in r.items()}} for k, r in rho.items()]))
    if len(coll.city_names()) < 2:
        click.echo("transfer check skipped: it needs a zoo of at least two cities.")
        return
    cities = {c: load_city(c) for c in coll.city_names()}
    res = transfer_check(ps, coll, cities, n_random=random_draws, seed=seed)
    click.echo("validation MAE (units of each node's training std) with own / nearest-prompt other-city / random "
               "other-city parameters:")
    summary = res.summary()
    gap = summary.pop("gap_closed")
    click.echo(_table(res.per_city() + [{"city": "all", **summary}]))
    click.echo(f"gap closed by the nearest-prompt neighbour, (random - neighbour) / (random - own): {gap:.3f}")


# --------------------------------------------------------------------------- helpers
def _table(rows: list[dict[str, Any]]) -> str:
    from tabulate import tabulate

    return tabulate([list(r.values()) for r in rows], headers=list(rows[0].keys()), floatfmt=".3f")


def _summary(ps: Any) -> None:
    rows = []
    for c in ps.city_names():
        sub = ps.of_city(c)
        seg = ps.meta.get("segments", {}).get(c)
        rows.append({"city": c, "nodes": len(sub), "steps": f"[{seg[0]}, {seg[1]})" if seg else "?",
                     "spatial dim": sub.spatial_dim, "temporal dim": sub.temporal_dim})
    click.echo(_table(rows))
    for note in ps.meta.get("notes", []):
        click.echo(f"note: {note}")


def plot_pca(ps: Any, out: Path) -> Path:
    """Two PCA scatters (spatial, temporal prompts), points coloured by city; returns the PNG path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from gpdiff.utils.io import atomic_write_bytes
    from gpdiff.utils.plotstyle import legend_outside

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.8))
    cities = np.array(ps.cities)
    for ax, (title, x) in zip(axes, (("spatial", ps.spatial), ("temporal", ps.temporal))):
        xy, var = _pca2(x.double().numpy())
        ax.set_title(f"{title} prompts ({ps.meta.get(title + '_encoder', '?')}, {x.shape[1]}-d)")
        if xy is None:
            ax.text(0.5, 0.5, "constant: no variation to project", ha="center", va="center", transform=ax.transAxes)
        else:
            for c in ps.city_names():
                sel = cities == c
                ax.scatter(xy[sel, 0], xy[sel, 1], s=8, alpha=0.7, label=f"{c} ({sel.sum()})")
            ax.set_xlabel(f"PC1 ({var[0]:.0%})")
            ax.set_ylabel(f"PC2 ({var[1]:.0%})")
            legend_outside(ax, markerscale=2)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # "tight": room for the legends outside
    plt.close(fig)
    atomic_write_bytes(out, buf.getvalue())
    return out


def _pca2(x: Any) -> tuple[Any, Any]:
    """First two principal components of column-standardised ``x`` and their variance shares."""
    import numpy as np

    sd = x.std(axis=0)
    keep = sd > 1e-8
    if not keep.any():
        return None, None
    z = (x[:, keep] - x[:, keep].mean(axis=0)) / sd[keep]
    u, s, _ = np.linalg.svd(z, full_matrices=False)
    pcs = u[:, :2] * s[:2]
    if pcs.shape[1] < 2:
        pcs = np.c_[pcs, np.zeros(len(pcs))]
    share = (s**2 / (s**2).sum())
    share = np.r_[share, 0.0][:2]
    return pcs, share
