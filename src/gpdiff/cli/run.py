"""`gpdiff run`: the whole few-shot experiment, resumable, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def _names(registry: dict[str, Any]) -> str:
    return ", ".join(sorted(registry))


def _help() -> dict[str, str]:
    from gpdiff.baselines import METHODS
    from gpdiff.diffusion.conditioning import CONDITIONING
    from gpdiff.diffusion.schedule import SAMPLERS
    from gpdiff.models import MODELS

    return {"model": _names(MODELS), "condition": _names(CONDITIONING), "sampler": _names(SAMPLERS),
            "methods": _names(METHODS)}


_H = _help()


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML run config (see configs/); flags override it.")
@click.option("--target", help="Target city (bundled name, or a city in --data-dir). Default: melbourne-ped.")
@click.option("--sources", help="Comma-separated source cities. Default: the other bundled flow cities, or every "
                                "other city in --data-dir.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of your cities, one per subfolder or file, in any supported format.")
@click.option("--target-days", type=float, help="Few-shot days of target data (calendar days). Default: 3.")
@click.option("--model", help=f"Base model: {_H['model']}.")
@click.option("--preset", help="Base model size preset: small or paper.")
@click.option("--condition", help=f"Conditioning strategy: {_H['condition']}.")
@click.option("--sampler", help=f"Sampler: {_H['sampler']}.")
@click.option("--steps", type=int, help="Sampling steps (ddim/dpm++). Default: 50.")
@click.option("--methods", help=f"Comma-separated methods to run. Default: all ({_H['methods']}).")
@click.option("--seed", type=int, help="Seed for everything. Default: 0.")
@click.option("--device", help="auto (default), cpu or cuda.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Run directory. Default: runs/default. Rerunning reuses finished stages.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def run(config_path: Path | None, quiet: bool, **flags: Any) -> None:
    """Few-shot transfer to a target city: zoo -> prompts -> diffusion -> generation -> every method -> report.

    With no options: leave-one-city-out within the bundled flow cities, target melbourne-ped, 3 days.
    """
    from gpdiff.pipeline import RunConfig, run_pipeline

    overrides = {k: (str(v) if isinstance(v, Path) else v) for k, v in flags.items() if v is not None}
    cfg = RunConfig.from_yaml(config_path, overrides) if config_path else RunConfig.from_dict(overrides)
    result = run_pipeline(cfg, progress=not quiet, log=lambda m: click.echo(m, err=True))
    click.echo(f"\nreport: {result.report}\nresults: {result.out / 'results.csv'}  "
               f"(total {result.timings.get('total', 0):.0f} s)")
