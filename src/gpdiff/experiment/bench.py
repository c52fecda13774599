"""`gpdiff bench`: a suite of runs (targets x variants x seeds) and one scoreboard.

A suite is a YAML file::

    description: leave-one-city-out over the bundled cities
    base: {}                          # run-config settings for every experiment (as in configs/default.yaml)
    seeds: [0, 1, 2]
    experiments:                      # one entry per experiment: run-config settings (nested or dotted keys)
      - {target: melbourne-ped, sources: [nyc-taxi, montevideo-bus, hangzhou-metro]}
      - {target: nyc-taxi, sources: [melbourne-ped, montevideo-bus, hangzhou-metro]}
      - {name: nyc-taxi 1 day, target: nyc-taxi, target_days: 1}   # ``name``: the label, when a target repeats
    grid:                             # optional: dotted path -> values; every experiment runs once per combination
      window.horizon: [1, 3, 6, 12]

Every (experiment, grid combination, seed) is one `gpdiff run` into ``OUT/runs/<label>/seed<k>``;
all runs of a suite share one stage cache (``OUT/cache``): a stage whose derived key is the same in
two runs is computed once (:class:`gpdiff.experiment.stages.Run`), which never changes a number. Rerunning the
same command resumes: finished runs are reused, an interrupted one resumes where it stopped. Every
run's config is built and checked (unknown keys and methods, a target among its sources, cities
that do not load or are too short) before anything trains. The scoreboard is
:mod:`gpdiff.experiment.scoreboard`.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpdiff.experiment.runconfig import RunConfig
from gpdiff.experiment.scoreboard import Experiment
from gpdiff.utils.config import first_repeated, merge, parse_assignment, path_origins, set_path
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import read_yaml, write_yaml

SUITE_KEYS = ("description", "base", "seeds", "experiments", "grid")
BUNDLED_SUITES = Path(__file__).resolve().parent.parent / "configs" / "bench"  # installed with the package (configs/ links here)


@dataclass
class Suite:
    """A parsed suite: its runs in order (seed, then experiment, then grid combination)."""

    name: str
    description: str
    experiments: list[Experiment] = field(default_factory=list)


def _nested(settings: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Settings whose keys may be dotted paths (``window.horizon: 12``) as one nested mapping."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if not isinstance(key, str) or not key:
            raise GpdiffError(f"{where}: setting names must be non-empty strings, got {key!r}.")
        keys, _ = parse_assignment(f"{key}=")
        out = set_path(out, keys, value) if "." in key else merge(out, {key: value})
    return out


def find_suite(name_or_path: str | Path) -> Path:
    """A suite file: a path, or the name of a bundled suite (``loco`` -> configs/bench/loco.yaml)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    bundled = BUNDLED_SUITES / f"{p.stem}.yaml"
    if p.suffix in ("", ".yaml") and bundled.is_file() and not p.parent.parts:
        return bundled
    known = sorted(f.stem for f in BUNDLED_SUITES.glob("*.yaml"))
    raise GpdiffError(f"no suite file {name_or_path}; pass a YAML file or a bundled suite: {', '.join(known)}.")


def load_suite(path: str | Path, out: str | Path, seeds: list[int] | None = None) -> Suite:
    """Parse and check a suite: every run's config is built (and thereby validated) here. ``seeds``:
    run these seeds instead of the suite's ``seeds:`` (e.g. one seed of a three-seed suite, ``gpdiff
    bench --seeds``); the runs, their folders and the scoreboard are those of the suite's own seeds.

    Raises :class:`GpdiffError` for unknown suite keys, unknown run settings or methods, a suite
    without experiments or seeds, and two runs with one label (:func:`check_data` checks the cities).
    An experiment may carry a ``name`` (its label; default: its target).
    """
    path = find_suite(path)
    doc = read_yaml(path)
    if seeds is not None and isinstance(doc, dict):
        doc = {**doc, "seeds": list(seeds)}
    entries, seeds, grid, base = _suite_parts(path, doc)
    suite = Suite(Path(path).stem, str(doc.get("description") or ""))
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] or [{}]
    for seed in seeds:  # seed-major: the first seed of every experiment finishes first
        for i, entry in enumerate(entries):
            suite.experiments += _experiments(path, i, dict(entry), base, combos, seed, Path(out))
    dup = first_repeated([(e.label, e.seed) for e in suite.experiments])
    if dup is not None:
        raise GpdiffError(f"{path}: experiment {dup[0]!r} (seed {dup[1]}) is listed twice; give experiments of one "
                          "target each its own `name:`.")
    return suite


def _suite_parts(path: Path, doc: Any) -> tuple[list[Mapping], list[int], Mapping, dict]:
    """A suite file's experiments, seeds, grid and base settings, each checked; :class:`GpdiffError` naming
    the key otherwise (a suite sets seeds in ``seeds:`` only)."""
    if not isinstance(doc, dict):
        raise GpdiffError(f"{path}: a suite must be a mapping with keys {list(SUITE_KEYS)}.")
    unknown = sorted(set(doc) - set(SUITE_KEYS))
    if unknown:
        raise GpdiffError(f"{path}: unknown suite key(s) {unknown}; known: {list(SUITE_KEYS)}.")
    entries = doc.get("experiments") or []
    if not isinstance(entries, list) or not entries or not all(isinstance(e, Mapping) for e in entries):
        raise GpdiffError(f"{path}: the suite has no experiments; list at least one under `experiments:` "
                          "(e.g. `- {target: nyc-taxi}`).")
    seeds = doc.get("seeds", [0])
    if isinstance(seeds, int):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise GpdiffError(f"{path}: `seeds` must be a non-empty list of integers, got {seeds!r}.")
    if (seed := first_repeated(seeds)) is not None:
        raise GpdiffError(f"{path}: seed {seed} is listed twice in `seeds`; list every seed once.")
    grid = doc.get("grid") or {}
    if not isinstance(grid, Mapping) or not all(isinstance(v, list) and v for v in grid.values()):
        raise GpdiffError(f"{path}: `grid` maps dotted paths to non-empty lists of values, got {grid!r}.")
    base = _nested(doc.get("base") or {}, f"{path}: base")
    for where, part in [("base", base), ("grid", grid), *((f"experiments[{i}]", e) for i, e in enumerate(entries))]:
        if "seed" in part:
            raise GpdiffError(f"{path}: {where} sets `seed`; a suite's seeds are its `seeds:` list (every experiment "
                              "runs once per seed), so set them there.")
    return entries, seeds, grid, base


def _experiments(path: Path, i: int, entry: dict, base: dict, combos: list[dict], seed: int,
                 out: Path) -> list[Experiment]:
    """Experiment ``i`` of the suite at ``seed``, once per grid combination, each with its run config built
    (and so validated); a wrong key or value is blamed on the part of the suite that holds it: base,
    experiment or grid."""
    name = str(entry.pop("name", "") or "")
    where = f"{path}: experiments[{i}]"
    own = _nested(entry, where)
    settings = merge(base, own)
    base_origins = {**path_origins(base, f"{path}: base"), **path_origins(own, where)}
    experiments = []
    for combo in combos:
        variant = " ".join(f"{k}={v}" for k, v in combo.items())
        grid_settings = _nested(combo, f"{path}: grid")
        data = merge(settings, grid_settings)
        data["seed"] = seed
        origins = {**base_origins, **path_origins(grid_settings, f"{path}: grid ({variant})")}
        try:
            cfg = RunConfig.from_dict(data, where, origins)
        except GpdiffError as exc:  # checks of the whole config (methods, days) name the experiment too
            raise (exc if str(exc).startswith(f"{path}: ") else GpdiffError(f"{where}: {exc}")) from None
        label = " ".join(p for p in (name or cfg.target, variant) if p)
        exp = Experiment(label, cfg.target, variant, seed, cfg)
        exp.config.out = str(out / "runs" / exp.folder)
        experiments.append(exp)
    return experiments


def check_data(suite: Suite) -> None:
    """Load every experiment's cities and split once, so a bad city or a too short target stops the
    suite before anything trains (:func:`gpdiff.experiment.pipeline.load_cities` raises the message)."""
    from gpdiff.experiment.pipeline import load_cities

    seen: set[str] = set()
    for exp in suite.experiments:
        c = exp.config
        key = repr((c.target, c.sources, c.data_dir, c.target_days, c.val_days, c.test_fraction, c.window))
        if key not in seen:
            seen.add(key)
            try:
                load_cities(c)
            except GpdiffError as exc:
                raise GpdiffError(f"experiment {exp.label!r}: {exc}") from None


@dataclass
class BenchResult:
    out: Path
    scoreboard: Path  # scoreboard.md
    wall: dict[str, float]  # experiment folder -> wall seconds of this call (0 for a finished run)
    computed: dict[str, list[str]]  # experiment folder -> stages computed by this call
    reused: dict[str, list[str]]


def run_suite(suite: Suite, out: str | Path, progress: bool = False, log: Callable[[str], Any] = print,
              cache: str | Path | None = None, scored: Suite | None = None) -> BenchResult | None:
    """Check the data of every run (:func:`check_data`), run every experiment of ``suite`` (resuming
    finished ones), then write the scoreboard into ``out``: of ``suite``'s runs, and of every finished run of
    ``scored`` (e.g. the suite's other seeds, run before; :func:`with_other_seeds`) beside them.

    ``cache``: the stage cache (default ``out/cache``); suites that share one (``--cache``) compute
    a stage they have in common once, e.g. the default-settings variant of every sweep. Under
    torchrun the ranks other than 0 only join every run's distributed stages and return ``None``."""
    from gpdiff.experiment.pipeline import run_pipeline
    from gpdiff.experiment.scoreboard import write_scoreboard
    from gpdiff.utils import distributed

    check_data(suite)
    if distributed.launched():
        from gpdiff.utils.device import resolve_device

        distributed.init(resolve_device(suite.experiments[0].config.device))
        if not distributed.is_main():
            for exp in suite.experiments:
                run_pipeline(exp.config, progress=False, log=lambda m: None)
            return None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ran = {(e.label, e.seed) for e in suite.experiments}
    others = [e for e in finished(scored) if (e.label, e.seed) not in ran] if scored is not None else []
    board_runs = sorted([*suite.experiments, *others], key=lambda e: (e.seed, e.label))
    write_yaml(out / "suite.yaml", {"name": suite.name, "description": suite.description,
                                    "experiments": [{"label": e.label, "seed": e.seed, "folder": e.folder}
                                                    for e in board_runs]})
    wall: dict[str, float] = {}
    computed: dict[str, list[str]] = {}
    reused: dict[str, list[str]] = {}
    n, t_start, spent = len(suite.experiments), time.perf_counter(), []
    for i, exp in enumerate(suite.experiments, 1):
        left = f", about {_minutes(sum(spent) / len(spent) * (n - i + 1))} left" if spent else ""
        log(f"[bench {i}/{n}] {exp.label}, seed {exp.seed} (elapsed {_minutes(time.perf_counter() - t_start)}{left})")
        t0 = time.perf_counter()
        res = run_pipeline(exp.config, progress=progress, log=lambda m: log(f"  {m}"),
                           cache=Path(cache) if cache is not None else out / "cache")
        dt = time.perf_counter() - t0
        assert res is not None  # rank 0 (or one process)
        wall[exp.folder], computed[exp.folder], reused[exp.folder] = dt, res.computed, res.reused
        if res.computed:
            spent.append(dt)
    board = write_scoreboard(out, board_runs, wall)
    beside = f" and {len(others)} finished before" if others else ""
    log(f"[bench] {n} runs in {_minutes(time.perf_counter() - t_start)}; scoreboard of them{beside}: {board}")
    return BenchResult(out, board, wall, computed, reused)


def bench(suite: str | Path, out: str | Path | None = None, progress: bool = False, log: Callable[[str], Any] = print,
          cache: str | Path | None = None) -> BenchResult | None:
    """Run a suite by name (a bundled one, e.g. ``"loco"``) or YAML path into ``out`` (default
    ``runs/bench/<name>``) and write its scoreboard: ``gpdiff bench SUITE`` in Python (:func:`run_suite`)."""
    path = find_suite(suite)
    out = Path(out) if out is not None else Path("runs") / "bench" / path.stem
    return run_suite(load_suite(path, out), out, progress, log, cache)


def with_other_seeds(path: str | Path, out: str | Path, seeds: list[int]) -> Suite:
    """The suite at ``path`` with its own ``seeds:`` and ``seeds`` (``gpdiff bench --seeds``): what the
    scoreboard of a call that runs some seeds holds once they finish (the others where finished)."""
    own = sorted({e.seed for e in load_suite(path, out).experiments})
    return load_suite(path, out, sorted(set(own) | set(seeds)))


def finished(suite: Suite) -> list[Experiment]:
    """The runs of ``suite`` whose results are written (a partial scoreboard while the suite runs)."""
    return [e for e in suite.experiments if (Path(e.config.out) / "node_mae.csv").is_file()]


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def plan_lines(suite: Suite) -> Sequence[str]:
    """One line per experiment (for ``--dry-run``)."""
    return [f"{e.label}, seed {e.seed}: target {e.target}, sources {', '.join(e.config.sources) or '(default)'}"
            for e in suite.experiments]
