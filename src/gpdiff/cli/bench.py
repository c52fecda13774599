"""`gpdiff bench`: a suite of runs -> one scoreboard."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("suite")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output folder (scoreboard, runs/, the shared stage cache). Default: runs/bench/<suite>.")
@click.option("--cache", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Stage cache folder (default OUT/cache). Suites given the same cache compute the stages they "
                   "share once.")
@click.option("--dry-run", is_flag=True, help="Check the suite and list its runs; train nothing.")
@click.option("--scoreboard-only", is_flag=True,
              help="Write the scoreboard from the runs finished so far (e.g. while the suite runs); train nothing.")
@click.option("--progress", is_flag=True, help="Progress bars inside every run (default on a terminal: one line per stage; in a log "
                                                "file, under nohup or in CI: also a plain progress line every 30 s).")
@click.option("--seeds", callback=lambda ctx, param, value: _seeds(value), default=None, metavar="0,1,...",
              help="Run these seeds instead of the suite's `seeds:` (e.g. --seeds 0 for one seed of a three-seed suite); "
                   "the scoreboard also holds the suite's runs of other seeds finished before.")
@click.option("--quiet", is_flag=True, help="Only the scoreboard path.")
def bench(suite: str, out: Path | None, cache: Path | None, dry_run: bool, scoreboard_only: bool, progress: bool,
          seeds: list[int] | None, quiet: bool) -> None:
    """Run SUITE (a YAML file, or a bundled suite such as `loco`) and write one scoreboard.

    Every experiment x seed is one `gpdiff run`; runs share one stage cache, so a stage with the same
    key is computed once. Rerunning resumes. See configs/bench/ for the bundled suites.
    """
    from gpdiff.experiment.bench import (
        check_data,
        find_suite,
        finished,
        load_suite,
        plan_lines,
        run_suite,
        with_other_seeds,
    )
    from gpdiff.experiment.scoreboard import write_scoreboard
    from gpdiff.utils.errors import GpdiffError

    path = find_suite(suite)
    out = out or Path("runs") / "bench" / path.stem
    parsed = load_suite(path, out, seeds)
    if scoreboard_only:
        done = finished(parsed)
        if not done:
            raise GpdiffError(f"no finished run of {path.stem} in {out}; run the suite first.")
        click.echo(f"{len(done)} of {len(parsed.experiments)} runs finished; scoreboard: "
                   f"{write_scoreboard(Path(out), done)}")
        return
    if dry_run:
        check_data(parsed)
        click.echo(f"{path}: {len(parsed.experiments)} run(s) into {out}")
        for line in plan_lines(parsed):
            click.echo(f"  {line}")
        return
    import sys

    from gpdiff.utils.progress import is_terminal

    # on a terminal the stage lines are enough; in a log (nohup, CI) a long stage also prints a plain line every 30 s
    progress = progress or (not quiet and not is_terminal(sys.stderr))
    scored = with_other_seeds(path, out, seeds) if seeds is not None else None  # the seeds run before stay scored
    result = run_suite(parsed, out, progress=progress, cache=cache, scored=scored,
                       log=(lambda m: None) if quiet else (lambda m: click.echo(m, err=True)))
    if result is None:  # under torchrun, a rank other than 0 (rank 0 writes the scoreboard)
        return
    from gpdiff.experiment.stages import folder_size, human_size

    inside = cache is None or Path(cache).resolve().is_relative_to(Path(out).resolve())
    sizes = f"{out} {human_size(folder_size(out))}" + ("" if inside else f", cache {cache} {human_size(folder_size(cache))}")
    click.echo(f"scoreboard: {result.scoreboard}  (on disk: {sizes})")


def _seeds(value: str | None) -> list[int] | None:
    """``--seeds 0,1,2`` as a list of integers; a usage error naming the bad entry otherwise."""
    if value is None:
        return None
    try:
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter(f"expected integers separated by commas (e.g. 0,1,2), got {value!r}.") from None
