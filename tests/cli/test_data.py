"""`gpdiff data ...` and how the CLI reports user errors: one line, non-zero exit, no traceback."""

import re

import numpy as np
import pandas as pd
from click.testing import CliRunner

from gpdiff.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_data_list_shows_bundled_cities():
    r = run("data", "list")
    assert r.exit_code == 0, r.output
    for name in ("la-loop", "nyc-taxi", "montevideo-bus", "melbourne-ped", "hangzhou-metro"):
        assert name in r.output


def test_data_show_writes_png(tmp_path):
    png = tmp_path / "x.png"
    r = run("data", "show", "hangzhou-metro", "--plot", str(png))
    assert r.exit_code == 0, r.output
    assert "missing share" in r.output and png.read_bytes()[:4] == b"\x89PNG"


def test_data_show_a_saved_city(small_city, tmp_path):
    small_city.save(tmp_path / "s.city")
    r = run("data", "show", str(tmp_path / "s.city"), "--plot", str(tmp_path / "s.png"))
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"# {small_city.name}\n")
    for stat, value in (("nodes", small_city.n_nodes), ("steps", small_city.n_steps),
                        ("missing share", f"{(~small_city.mask).mean():.2%}")):
        assert re.search(rf"^{stat} +{re.escape(str(value))}$", r.output, re.MULTILINE), (stat, r.output)
    assert (tmp_path / "s.png").read_bytes()[:4] == b"\x89PNG"


def _assert_user_error(r, *needles):
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    for n in needles:
        assert n in lines[0], lines[0]


def test_unknown_city_suggests_close_names():
    _assert_user_error(run("data", "show", "nyc-taxy"), "unknown city", "nyc-taxi")


def test_missing_path():
    _assert_user_error(run("data", "show", "./no/such/folder"), "no/such/folder")


def test_duplicated_timestamps_in_a_city_folder(tmp_path):
    ts = pd.date_range("2024-01-01", periods=48, freq="h").tolist()
    ts[10] = ts[9]
    df = pd.DataFrame(np.ones((48, 2)), columns=["a", "b"], index=pd.Index(ts, name="time"))
    df.to_csv(tmp_path / "series.csv")
    pd.DataFrame([["a", "b", 1.0]], columns=["from", "to", "weight"]).to_csv(tmp_path / "edges.csv", index=False)
    _assert_user_error(run("data", "show", str(tmp_path)), "series.csv")


def test_all_missing_node(tmp_path):
    df = pd.DataFrame({"a": np.ones(48), "b": np.nan},
                      index=pd.Index(pd.date_range("2024-01-01", periods=48, freq="h"), name="time"))
    df.to_csv(tmp_path / "series.csv")
    pd.DataFrame([["a", "b", 1.0]], columns=["from", "to", "weight"]).to_csv(tmp_path / "edges.csv", index=False)
    _assert_user_error(run("data", "show", str(tmp_path)), "no observed value")


def test_top_level_help_lists_every_command_without_importing_them():
    import importlib
    import subprocess
    import sys

    from gpdiff.cli import COMMANDS

    for module, name, line in COMMANDS:  # the static lines say what each command's own help says
        assert getattr(importlib.import_module(module), name).help.strip().splitlines()[0] == line, name
    code = ("import sys; from click.testing import CliRunner; from gpdiff.cli import main; "
            "out = CliRunner().invoke(main, ['--help']).output; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'diffusers') "
            "or m.startswith('gpdiff.cli.'))); print(out)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[0] == "[]"
    assert all(re.search(rf"^\s+{name}\s", out, re.M) for _, name, _ in COMMANDS)
    assert "Train the diffusion model" in out
