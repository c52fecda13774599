"""`gpdiff data ...` and how the CLI reports user errors: one line, non-zero exit, no traceback."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from gpdiff.cli import main
from gpdiff.data.city import City
from tests.conftest import one_line_error, run_cli, series_folder


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


def test_data_convert_writes_a_city(tmp_path: Path) -> None:
    times = pd.date_range("2024-03-05", periods=24, freq="h")
    d = series_folder(tmp_path / "c", list(times.strftime("%d/%m/%Y %H:%M")))
    r = run_cli("data", "convert", str(d), str(tmp_path / "c.city"), "--option", "time_format=%d/%m/%Y %H:%M")
    assert r.exit_code == 0, r.output
    assert City.load(tmp_path / "c.city").start == pd.Timestamp("2024-03-05")


# ---------------------------------------------------------------- one- and two-node graphs (issue 14, fault 8)
@pytest.mark.parametrize("n", [1, 2])
def test_data_show_of_a_tiny_graph(tmp_path: Path, n: int) -> None:
    city = City(name="tiny", values=np.random.default_rng(0).uniform(1, 5, (48, n, 1)), mask=np.ones((48, n), bool),
                start="2024-01-01", interval_minutes=60, adjacency=np.ones((n, n)) - np.eye(n), kind="flow", units="u")
    r = run_cli("data", "show", str(city.save(tmp_path / "t.city")), "--plot", str(tmp_path / "t.png"))
    assert r.exit_code == 0, r.output
    assert "nodes" in r.output and (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


# ------------------------------------------------ paths and values found by a bad-input pass (issue 14, fault 11)
def test_convert_never_overwrites_the_input_or_a_folder_with_files(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=48, freq="h")
    d = series_folder(tmp_path / "raw", [f"{t:%Y-%m-%d %H:%M}" for t in times])
    before = (d / "series.csv").read_text()
    for into in (d, tmp_path):  # the input folder, or a folder holding it
        one_line_error(run_cli("data", "convert", str(d), str(into), "--force"), "is the input or holds it")
    one_line_error(run_cli("data", "convert", str(d / "series.csv"), str(d), "--force"), "is the input or holds it")
    assert (d / "series.csv").read_text() == before and (d / "edges.csv").is_file()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    one_line_error(run_cli("data", "convert", str(d), str(tmp_path / "other")),
                    "already holds files (notes.txt);", "--force")
    (tmp_path / "afile.txt").write_text("x")
    one_line_error(run_cli("data", "convert", str(d), str(tmp_path / "afile.txt")), "is an existing file")
    assert run_cli("data", "convert", str(d), str(tmp_path / "c.city")).exit_code == 0
    one_line_error(run_cli("data", "convert", str(d), str(tmp_path / "c.city")), "c.city already exists", "--force")
    assert run_cli("data", "convert", str(d), str(tmp_path / "c.city"), "--force").exit_code == 0
    (tmp_path / "dir.city").mkdir()
    one_line_error(run_cli("data", "convert", str(d), str(tmp_path / "dir.city")), "dir.city is a folder")
    out = tmp_path / "out"
    out.mkdir()
    (out / "channel1.csv").write_text("stale")
    assert run_cli("data", "convert", str(d), str(out), "--force").exit_code == 0
    assert (out / "series.csv").is_file() and not (out / "channel1.csv").exists()
    r = run_cli("data", "show", str(d), "--plot", str(tmp_path / "afile.txt" / "p.png"))  # the table, then one line
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.output.strip().splitlines()[-1].startswith("error: cannot use") and "choose another path" in r.output
