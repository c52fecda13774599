"""The package reads in stage order: every import of a gpdiff module points down this order (issue 26).

data < models < zoo < prompts < diffusion < methods < evaluation < experiment < forecaster < cli; ``utils``
is importable from anywhere and imports only ``utils``; nothing imports ``cli`` (``gpdiff.__main__`` runs it).
A module may import its own package. The imports are read with :mod:`ast` (every ``import`` statement,
including those inside functions and under ``TYPE_CHECKING``), so no module is executed.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gpdiff

ORDER = ["data", "models", "zoo", "prompts", "diffusion", "methods", "evaluation", "experiment", "forecaster", "cli"]
UTILS = "utils"
ROOT = Path(gpdiff.__file__).resolve().parent

# (importing module, imported module): imports that point up the order, allowed, each with its reason. The
# naive forecasts and the masked metrics are evaluation (the blend and every score of a run use them), and they
# are leaves (data/ and utils/ only; test_allowed_targets_are_leaves keeps them so), so a trainer that scores
# itself the same way imports them rather than a second copy sitting lower down.
ALLOWED_UP = {
    ("gpdiff.zoo.train", "gpdiff.evaluation.metrics"):
        "the zoo scores every member on its validation windows (val_mae) with the run's masked MAE",
    ("gpdiff.zoo.train", "gpdiff.evaluation.naive"):
        "the zoo records each node's seasonal-naive MAE (naive_mae) beside its own, from the run's naive forecast",
    ("gpdiff.methods.naive", "gpdiff.evaluation.naive"):
        "the naive comparison methods wrap the naive forecasts that the blend also uses: one implementation",
    ("gpdiff.methods.pooled_linear", "gpdiff.evaluation.naive"):
        "a window without any readable lag falls back to the historical average: the one the naive methods use",
    ("gpdiff.methods.naive", "gpdiff.evaluation.fallbacks"):
        "the naive comparison methods note where those forecasts fell back, in the words the blend's notes use",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def gpdiff_imports(path: Path, source: str | None = None) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import of a gpdiff module in ``path`` (or in ``source``, read as
    that file), relative imports resolved."""
    tree = ast.parse(path.read_text() if source is None else source, filename=str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "gpdiff"]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] == "gpdiff":
                out.append((node.lineno, base, [a.name for a in node.names]))
    return out


def targets(module: str, names: list[str]) -> list[str]:
    """The modules an import reaches: ``from gpdiff.utils import io`` reaches ``gpdiff.utils.io``."""
    if module == "gpdiff" or len(module.split(".")) == 2:
        subs = [f"{module}.{n}" for n in names if (ROOT.parent / f"{module}.{n}".replace(".", "/")).exists()
                or (ROOT.parent / (f"{module}.{n}".replace(".", "/") + ".py")).exists()]
        if subs:
            return subs
    return [module]


def layer(module: str) -> str | None:
    """The top-level package of ``gpdiff.<package>...`` (``None`` for the root ``gpdiff``)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def violation(importer: str, imported: str, names: list[str]) -> str | None:
    """Why ``importer`` may not import ``imported`` (``None`` when it may)."""
    src, dst = layer(importer), layer(imported)
    if dst is None:  # the root: its version only (the public API names are built from the stages)
        return None if src in (None, "__main__") or set(names) <= {"__version__"} else "imports the public API"
    if src in (None, "__main__"):
        return None if src is None or dst == "cli" else "the entry point runs the CLI only"
    if dst == src:
        return None
    if src == UTILS:
        return f"utils imports {dst}; utils is below every stage"
    if dst == UTILS:
        return None
    if dst == "cli":
        return "nothing imports the CLI"
    if src not in ORDER or dst not in ORDER:
        return f"{src if src not in ORDER else dst} is not in the stage order; add it to ORDER"
    if ORDER.index(dst) > ORDER.index(src) and (importer, imported) not in ALLOWED_UP:
        return f"{src} imports {dst}, which comes later in the stage order"
    return None


def package_modules() -> list[Path]:
    return sorted(p for p in ROOT.rglob("*.py") if "bundled" not in p.parts)


def test_every_top_level_entry_is_a_stage_or_utils():
    entries = {p.name for p in ROOT.iterdir() if not p.name.startswith((".", "_")) and
               (p.suffix == ".py" or (p / "__init__.py").is_file())}
    assert entries == set(ORDER) | {UTILS}, "the top level holds only the stage packages and utils/"


@pytest.mark.parametrize("path", package_modules(), ids=lambda p: module_name(p))
def test_imports_point_down_the_stage_order(path):
    importer = module_name(path)
    bad = [f"{path.relative_to(ROOT.parent)}:{line}: {reason} ({target})"
           for line, module, names in gpdiff_imports(path) for target in targets(module, names)
           if (reason := violation(importer, target, names))]
    assert not bad, "\n".join(bad)


def test_allowed_exceptions_still_exist():
    """An exception that no import uses any more is deleted, so that the list stays the true one."""
    used = {(module_name(p), t) for p in package_modules() for _, m, n in gpdiff_imports(p) for t in targets(m, n)}
    assert set(ALLOWED_UP) <= used, set(ALLOWED_UP) - used


@pytest.mark.parametrize(("importer", "imported", "names", "ok"), [
    ("gpdiff.data.city", "gpdiff.models.base", [], False),  # up
    ("gpdiff.zoo.nodetrain", "gpdiff.diffusion.train", [], False),
    ("gpdiff.experiment.bench", "gpdiff.cli", [], False),  # nothing imports the CLI
    ("gpdiff.utils.io", "gpdiff.data.city", [], False),  # utils is below every stage
    ("gpdiff.data.download", "gpdiff", ["__version__"], True),
    ("gpdiff.data.download", "gpdiff", ["run"], False),  # the public API is built from the stages
    ("gpdiff.methods.gpd", "gpdiff.zoo.params", [], True),  # down
    ("gpdiff.data.city", "gpdiff.utils.errors", [], True),
    ("gpdiff.zoo.train", "gpdiff.evaluation.metrics", [], True),  # a listed exception
    ("gpdiff.zoo.anchor", "gpdiff.evaluation.metrics", [], False),  # not listed for another module
])
def test_the_rule_itself(importer, imported, names, ok):
    assert (violation(importer, imported, names) is None) == ok


def test_allowed_targets_are_leaves():
    """What a lower stage may import from a higher one reads only data/ and utils/ itself."""
    for imported in {dst for _, dst in ALLOWED_UP}:
        path = ROOT.parent / (imported.replace(".", "/") + ".py")
        reached = {layer(t) for _, m, n in gpdiff_imports(path) for t in targets(m, n)}
        assert reached <= {"data", UTILS, layer(imported)}, (imported, reached)


def test_a_module_that_imports_up_fails():
    """The parse finds an upward import inside a function, and a relative one."""
    probe = ROOT / "data" / "_layering_probe.py"  # never written: the source is parsed as that file
    source = "def f():\n    from gpdiff.experiment.pipeline import run_pipeline\n\nfrom ..diffusion import train\n"
    found = sorted(t for _, m, n in gpdiff_imports(probe, source) for t in targets(m, n))
    assert found == ["gpdiff.diffusion.train", "gpdiff.experiment.pipeline"]
    assert all(violation("gpdiff.data._layering_probe", t, []) for t in found)


def test_the_tests_mirror_the_package() -> None:
    """Every test module under a package folder tests one module of that package:
    ``tests/<package path>/test_<module>.py`` for ``gpdiff/<package path>/<module>.py``, and
    ``test_<package>.py`` inside its own folder for the package's ``__init__.py`` (issue 26). Package-wide
    tests (this one, the benchmark scripts' ``--help``) sit at the top of tests/."""
    tests = Path(__file__).resolve().parent

    def tested(p: Path) -> Path:
        folder, name = ROOT / p.parent.relative_to(tests), p.stem.removeprefix("test_")
        return folder / "__init__.py" if name == folder.name else folder / f"{name}.py"

    strays = [str(p.relative_to(tests)) for p in sorted(tests.glob("*/**/test_*.py")) if not tested(p).is_file()]
    assert not strays, f"test modules without a package module of their name: {strays}"
    assert {p.parent.name for p in tests.glob("*/test_*.py")} <= {p.name for p in ROOT.iterdir() if p.is_dir()}


def test_no_function_is_longer_than_60_lines_without_a_reason() -> None:
    """A function of more than 60 lines hides its steps (issue 26): split it into named ones, or say in
    its docstring why it is long (a line starting ``Long:``)."""
    long = []
    for path in sorted(ROOT.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
                lines = node.end_lineno - node.lineno + 1
                reason = any(line.strip().startswith("Long:") for line in (ast.get_docstring(node) or "").splitlines())
                if lines > 60 and not reason:
                    long.append(f"{path.relative_to(ROOT.parent)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, f"functions over 60 lines: {long}"
