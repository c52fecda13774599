"""`gpdiff bench`: suites of tiny runs, shared stages, the scoreboard they write, bad suites."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from gpdiff.cli import main
from gpdiff.data.formats.city_folder import write_city_folder
from gpdiff.data.synthetic import synthetic_city
from gpdiff.experiment.bench import load_suite, run_suite
from gpdiff.utils.errors import GpdiffError

METHODS = ["seasonal_naive", "historical_average", "mean_params", "gpd"]
BASE = {
    "device": "cpu", "target_days": 3,
    "window": {"history": 12, "horizon": 3, "n_neighbors": 3},
    "zoo": {"max_epochs": 1, "steps_per_epoch": 2, "batch_size": 8},
    "prompts": {"temporal": "stats"},
    "diffusion": {"max_steps": 10, "batch_size": 8, "warmup": 2, "denoiser": {"d_model": 32, "n_layers": 1, "n_heads": 2}},
    "finetune": {"max_epochs": 1, "steps_per_epoch": 1, "batch_size": 8},
    "methods": METHODS,
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bench_data")
    for name, seed, n in (("alpha", 1, 5), ("beta", 2, 6), ("gamma", 3, 4)):
        write_city_folder(synthetic_city(name, n_nodes=n, days=12, seed=seed), root / name)
    return root


def _suite(path: Path, data_dir: Path, **doc) -> Path:
    base = {**BASE, "data_dir": str(data_dir)}
    content = {"base": base, "seeds": [0, 1], "experiments": [{"target": "alpha"}],
               "grid": {"generate.num_inference_steps": [3, 4]}, **doc}
    path.write_text(yaml.safe_dump(content))
    return path


@pytest.fixture(scope="module")
def finished(tmp_path_factory, data_dir):
    root = tmp_path_factory.mktemp("bench")
    suite = load_suite(_suite(root / "suite.yaml", data_dir), root / "out")
    return suite, run_suite(suite, root / "out", log=lambda m: None)


def test_suite_expands_experiments_variants_and_seeds(finished):
    suite, _ = finished
    assert [(e.label, e.seed) for e in suite.experiments] == [
        ("alpha generate.num_inference_steps=3", 0), ("alpha generate.num_inference_steps=4", 0),
        ("alpha generate.num_inference_steps=3", 1), ("alpha generate.num_inference_steps=4", 1)]
    assert suite.experiments[1].config.generate.num_inference_steps == 4
    assert suite.experiments[2].config.seed == 1 and suite.experiments[0].config.sources == []


def test_shared_stages_are_computed_once(finished):
    suite, res = finished
    folders = [e.folder for e in suite.experiments]
    upstream = {"zoo", "prompts", "diffusion"}
    # seed 0: the first variant computes everything, the second only what the sampling steps change
    assert upstream <= set(res.computed[folders[0]])
    assert upstream <= set(res.reused[folders[1]]) and not upstream & set(res.computed[folders[1]])
    assert "generate" in res.computed[folders[1]] and "methods/gpd" in res.computed[folders[1]]
    assert "methods/seasonal_naive" in res.reused[folders[1]]  # reads no generated parameters
    assert "zoo" in res.computed[folders[2]]  # another seed is another zoo


def test_rerun_resumes_without_computing(finished, tmp_path):
    suite, res = finished
    again = run_suite(suite, res.out, log=lambda m: None)
    assert all(not c for c in again.computed.values())
    pd.testing.assert_frame_equal(pd.read_csv(res.out / "scoreboard.csv"), pd.read_csv(again.out / "scoreboard.csv"))


def test_the_cli_last_line_says_how_much_the_bench_folder_holds(finished):
    from gpdiff.experiment.stages import folder_size, human_size

    _, res = finished
    r = CliRunner().invoke(main, ["bench", str(res.out.parent / "suite.yaml"), "--out", str(res.out)])
    assert r.exit_code == 0, r.output
    last = r.output.strip().splitlines()[-1]
    assert last == f"scoreboard: {res.out / 'scoreboard.md'}  (on disk: {res.out} {human_size(folder_size(res.out))})"


def test_scoreboard_files_and_shape(finished):
    _, res = finished
    df = pd.read_csv(res.out / "scoreboard.csv", dtype={"horizon": str})
    assert list(df.columns) == ["experiment", "target", "variant", "seed", "method", "horizon", "mae", "rmse", "mape"]
    assert len(df) == 2 * 2 * len(METHODS) * 4  # variants x seeds x methods x (3 steps + avg)
    assert set(df["method"]) == set(METHODS) and set(df["seed"]) == {0, 1} and np.isfinite(df["mae"]).all()
    nodes = pd.read_csv(res.out / "node_mae.csv")
    assert len(nodes) == 2 * 2 * len(METHODS) * 5  # ... x the target's 5 nodes
    md = (res.out / "scoreboard.md").read_text()
    assert "## Overall" in md and "## alpha generate.num_inference_steps=3" in md
    assert "Wilcoxon signed-rank" in md and "gpd wins / ties / losses" in md and "±" in md
    assert "## Prediction intervals" in md and "coverage 80%" in md and "`gpd`'s CRPS / the best baseline's" in md
    assert "node CRPS averaged over seeds" in md  # the paired test over nodes, as for the MAE
    node_crps = pd.read_csv(res.out / "node_crps.csv")
    assert len(node_crps) == 2 * 2 * len(METHODS) * 5 and np.isfinite(node_crps["crps"]).all()
    iv = pd.read_csv(res.out / "intervals.csv")
    assert len(iv) == 2 * 2 * len(METHODS) * 2 and iv["coverage"].between(0, 1).all()  # ... x 2 levels
    assert set(iv["calibration"]) == {"validation"} and "calibrated on the target's validation day (" in md
    timings = pd.read_csv(res.out / "timings.csv")
    assert timings[timings["stage"] == "zoo"]["folder"].nunique() == 2  # one zoo per seed, shared by both variants
    for png in ("mae_ratio_heatmap.png", "mae_per_horizon.png"):
        assert (res.out / png).read_bytes()[:4] == b"\x89PNG"


def test_scoreboard_only_reads_finished_runs(finished, tmp_path):
    suite, res = finished
    r = CliRunner().invoke(main, ["bench", str(res.out.parent / "suite.yaml"), "--out", str(res.out),
                                  "--scoreboard-only"])
    assert r.exit_code == 0 and "4 of 4 runs finished" in r.output, r.output
    r = CliRunner().invoke(main, ["bench", str(res.out.parent / "suite.yaml"), "--out", str(tmp_path / "none"),
                                  "--scoreboard-only"])
    assert r.exit_code == 2 and "no finished run" in r.output


@pytest.mark.parametrize("doc,message", [
    ({"experimnts": [{"target": "alpha"}]}, "unknown suite key(s) ['experimnts']"),
    ({"experiments": []}, "the suite has no experiments"),
    ({"experiments": [{"target": "alpha", "methods": ["gpd", "magic"]}]}, "bad.yaml: experiments[0]: unknown method 'magic'"),
    ({"experiments": [{"target": "alpha", "methods": {"reptile": {"meta_stepz": 5}}}]},
     "bad.yaml: experiments[0]: unknown run config field(s) ['methods.reptile.meta_stepz']"),
    ({"experiments": [{"target": "alpha", "zoo": 5}]}, "run config field zoo must be a mapping"),
    ({"seeds": [0, 0]}, "seed 0 is listed twice in `seeds`"),
    ({"grid": {"seed": [1, 2]}}, "grid sets `seed`; a suite's seeds are its `seeds:` list"),
    ({"experiments": [{"target": "alpha", "seed": 7}]}, "experiments[0] sets `seed`"),
    ({"experiments": [{"target": "alpha", "zoo.lrr": 1}]}, "['zoo.lrr']"),
    ({"experiments": [{"target": "alpha", "sources": ["alpha", "beta"]}]}, "also a source"),
    ({"seeds": []}, "`seeds` must be a non-empty list"),
    ({"experiments": [{"target": "alpha"}, {"target": "alpha", "target_days": 4}]}, "listed twice"),
])
def test_bad_suites_fail_in_one_line_before_training(tmp_path, data_dir, doc, message):
    path = _suite(tmp_path / "bad.yaml", data_dir, **doc)
    r = CliRunner().invoke(main, ["bench", str(path), "--out", str(tmp_path / "out")])
    assert r.exit_code == 2, r.output
    assert message in r.output and "Traceback" not in r.output and r.output.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_seeds_from_the_command_line_replace_the_suites(tmp_path, data_dir):
    path = _suite(tmp_path / "s.yaml", data_dir, grid={}, seeds=[0, 1, 2], experiments=[{"target": "alpha"}])
    assert [e.seed for e in load_suite(path, tmp_path / "out", seeds=[2]).experiments] == [2]
    r = CliRunner().invoke(main, ["bench", str(path), "--out", str(tmp_path / "out"), "--seeds", "1,2", "--dry-run"])
    assert r.exit_code == 0 and "2 run(s)" in r.output and "seed 0:" not in r.output and "seed 2:" in r.output, r.output
    for bad, message in (("1,x", "expected integers separated by commas"), ("1,1", "seed 1 is listed twice")):
        r = CliRunner().invoke(main, ["bench", str(path), "--out", str(tmp_path / "out"), "--seeds", bad])
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_a_call_with_seeds_scores_the_seeds_finished_before_too(tmp_path, data_dir):
    """`--seeds 1` after `--seeds 0`: the scoreboard holds both seeds (seed 0 reused from its folder, not
    rerun), and run_times.csv only the run this call made; a seed outside the suite's list counts as its own."""
    path = _suite(tmp_path / "s.yaml", data_dir, grid={}, seeds=[0, 1], experiments=[{"target": "alpha"}],
                  base={**BASE, "data_dir": str(data_dir), "methods": ["seasonal_naive", "historical_average"]})
    out = tmp_path / "out"
    for seeds in ("0", "1", "5"):
        r = CliRunner().invoke(main, ["bench", str(path), "--out", str(out), "--seeds", seeds, "--quiet"])
        assert r.exit_code == 0, r.output
        board = pd.read_csv(out / "scoreboard.csv")
        times = pd.read_csv(out / "run_times.csv")
        assert times["seed"].tolist() == [int(seeds)]
        expected = {"0": [0], "1": [0, 1], "5": [0, 1, 5]}[seeds]
        assert sorted(board["seed"].unique().tolist()) == expected, seeds
    assert [e["seed"] for e in yaml.safe_load((out / "suite.yaml").read_text())["experiments"]] == [0, 1, 5]


def test_named_experiments_of_one_target(tmp_path, data_dir):
    path = _suite(tmp_path / "s.yaml", data_dir, grid={}, seeds=[0],
                  experiments=[{"target": "alpha"}, {"name": "alpha 4 days", "target": "alpha", "target_days": 4}])
    suite = load_suite(path, tmp_path / "out")
    assert [e.label for e in suite.experiments] == ["alpha", "alpha 4 days"]
    assert suite.experiments[1].config.target_days == 4 and suite.experiments[1].folder == "alpha_4_days/seed0"


def test_bundled_suites_parse(tmp_path):
    from gpdiff.experiment.bench import BUNDLED_SUITES

    sizes = {p.stem: len(load_suite(p, tmp_path).experiments) for p in sorted(BUNDLED_SUITES.glob("*.yaml"))}
    assert sizes == {"base_models": 6, "conditioning": 10, "context": 5, "context_no_residual": 5, "context_weekly": 4,
                     "horizons": 8, "loco": 15, "loco_blend": 15, "loco_daily": 15, "loco_ensemble": 15, "loco_lags": 15, "loco_stid": 15, "prompts": 12, "target_days": 8, "two_targets": 2,
                     "zoo_members": 5, "zoo_shared_random": 5}
    with pytest.raises(GpdiffError, match="bundled suite: base_models, conditioning"):
        load_suite("no-such-suite", tmp_path)
