"""`gpdiff run`: the whole few-shot experiment, resumable, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gpdiff.cli import progress_bars
from gpdiff.cli.options import config_assignments, config_option
from gpdiff.diffusion.conditioning import CONDITIONING
from gpdiff.diffusion.schedule import SAMPLERS
from gpdiff.experiment.runconfig import DEFAULT_METHODS
from gpdiff.methods import METHODS
from gpdiff.models import MODELS


def _names(registry: dict[str, Any]) -> str:
    return ", ".join(sorted(registry))


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              help="YAML run config (see configs/); flags and --set override it.")
@click.option("--set", "assignments", multiple=True, metavar="PATH=VALUE",
              help="Override any setting of the config tree, e.g. --set zoo.lr=0.005 "
                   "--set methods.reptile.max_steps=50 (repeatable; values are read as YAML).")
@config_option("--target", path="target", help="Target city (bundled name, or a city in --data-dir)")
@config_option("--sources", path="sources", help="Comma-separated source cities",
               default_text="the other bundled flow cities, or every other city in --data-dir")
@config_option("--data-dir", path="data_dir", type=click.Path(file_okay=False, path_type=Path),
               help="Folder of your cities, one per subfolder or file, in any supported format")
@config_option("--target-days", path="target_days", type=float, help="Few-shot days of target data (calendar days)")
@config_option("--model", path="model.name", help=f"Base model: {_names(MODELS)}")
@config_option("--preset", path="model.preset", help="Base model size preset: small or paper")
@config_option("--condition", path="diffusion.denoiser.condition", help=f"Conditioning strategy: {_names(CONDITIONING)}")
@config_option("--sampler", path="generate.sampler", help=f"Sampler: {_names(SAMPLERS)}")
@config_option("--num-inference-steps", path="generate.num_inference_steps", type=int, help="Sampling steps")
@click.option("--methods", help=f"Comma-separated methods to run, in order, of {_names(METHODS)}. Default: "
                                f"{', '.join(DEFAULT_METHODS)}.")
@config_option("--blend", path="blend.naive",
               help="Comma-separated naive forecasts blended with every learned method, weights fitted on the "
                    "target's validation day; none: no blend")
@config_option("--seed", path="seed", type=int, help="Seed for everything")
@config_option("--device", path="device", help="auto, cpu or cuda")
@config_option("--out", path="out", type=click.Path(file_okay=False, path_type=Path),
               help="Run directory; rerunning reuses finished stages")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path),
              help="Stage cache shared between run directories: runs given the same --cache compute a stage with "
                   "the same inputs once (as gpdiff bench does). Default: none, every stage lives in --out.")
@click.option("--quiet", is_flag=True, help="No progress (a bar per stage on a terminal; in a log file, under nohup "
                                            "or in CI one plain line per stage every 30 s).")
def run(config_path: Path | None, assignments: tuple[str, ...], methods: str | None, cache: Path | None, quiet: bool,
        **flags: Any) -> None:
    """Few-shot transfer to a target city: zoo -> prompts -> diffusion -> generation -> every method -> report.

    With no options: leave-one-city-out within the bundled flow cities, target melbourne-ped, 3 days.
    """
    from gpdiff.experiment.pipeline import run_pipeline
    from gpdiff.experiment.runconfig import RunConfig, method_settings
    from gpdiff.utils.config import parse_assignment, set_path
    from gpdiff.utils.errors import GpdiffError
    from gpdiff.utils.io import read_yaml

    overrides: dict[str, Any] = {}
    for path, value in config_assignments(click.get_current_context(), flags).items():
        overrides = set_path(overrides, path.split("."), value)
    if methods is not None:  # keep the file's settings of the methods that stay
        doc = read_yaml(config_path) if config_path else None
        base = doc.get("methods") if isinstance(doc, dict) else None  # a non-mapping file: from_yaml says so
        settings = method_settings(base) if base is not None else {}
        overrides["methods"] = {m: settings.get(m, {}) for m in method_settings(methods)}
        for text in assignments:  # a setting of a method left out would quietly add it back
            keys, _ = parse_assignment(text)
            if len(keys) > 2 and keys[0] == "methods" and keys[1] not in overrides["methods"]:
                raise GpdiffError(f"--set {text.strip()} sets a method that --methods leaves out; add "
                                  f"{keys[1]} to --methods or drop the setting.")
    cfg = RunConfig.from_yaml(config_path, overrides, assignments)
    result = run_pipeline(cfg, progress=progress_bars(quiet), log=lambda m: click.echo(m, err=True), cache=cache)
    if result is None:  # under torchrun, a rank other than 0 (rank 0 writes the run)
        return
    from gpdiff.experiment.stages import folder_size, human_size

    sizes = f"{result.out} {human_size(folder_size(result.out))}" + (
        f", cache {cache} {human_size(folder_size(cache))}" if cache is not None else "")
    click.echo(f"\nreport: {result.report}\nresults: {result.out / 'results.csv'}  "
               f"({result.timings.get('total', 0):.0f} s"
               f"{f'; {len(result.reused)} stages reused' if result.reused else ''}; on disk: {sizes})")
