"""End to end: `gpdiff run` on tiny synthetic cities, resuming, no leakage, the paper configs."""

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from gpdiff.cli import main
from gpdiff.data.loaders import write_city_folder
from gpdiff.data.synthetic import synthetic_city
from gpdiff.io import load_tensors, read_yaml
from gpdiff.pipeline import RunConfig, run_pipeline

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

TINY = dict(
    target_days=3, history=12, horizon=3, k=3, seed=0,
    zoo={"max_epochs": 2, "steps_per_epoch": 3, "batch_size": 16},
    prompts={"temporal": "stats"},
    diffusion={"iters": 30, "batch_size": 16, "d_model": 32, "n_layers": 1, "n_heads": 2, "warmup": 5},
    finetune={"max_epochs": 2, "steps_per_epoch": 2, "batch_size": 8},
    baselines={"transfer": {"max_steps": 6, "eval_every": 3}, "reptile": {"meta_steps": 2, "inner_steps": 2}},
    steps=5, device="cpu",
)


def _cities(root: Path, target_scale: float = 1.0) -> Path:
    for name, seed, n in (("alpha", 1, 6), ("beta", 2, 8), ("gamma", 3, 5)):
        c = synthetic_city(name, n_nodes=n, days=12, seed=seed)
        if name == "alpha" and target_scale != 1.0:
            test_start = c.n_steps - int(round(0.2 * c.n_steps))
            c.values[test_start:] *= target_scale
        write_city_folder(c, root / name)
    return root


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = _cities(root / "data")
    cfg = RunConfig.from_dict({**TINY, "target": "alpha", "data_dir": str(data), "out": str(root / "run")})
    return cfg, run_pipeline(cfg, progress=False, log=lambda m: None)


def test_run_writes_results_plots_and_report(first_run):
    cfg, res = first_run
    df = pd.read_csv(res.out / "results.csv", dtype={"horizon": str})
    assert list(df.columns) == ["method", "horizon", "mae", "rmse", "mape"]
    assert set(df["method"]) == set(cfg.methods)
    assert set(df["horizon"]) == {"1", "2", "3", "avg"}
    assert np.isfinite(df["mae"]).all()
    for png in ("mae_per_horizon.png", "forecasts.png", "params_pca.png", "stage_times.png"):
        assert (res.out / png).read_bytes()[:4] == b"\x89PNG"
    report = (res.out / "report.md").read_text()
    assert "alpha" in report and "gpd" in report and "results" in report.lower()
    assert read_yaml(res.out / "zoo" / "stage.yaml")["versions"]["torch"]


def test_rerun_reuses_every_stage(first_run):
    cfg, res = first_run
    stamps = {p: p.stat().st_mtime_ns for p in res.out.rglob("stage.yaml")}
    again = run_pipeline(cfg, progress=False, log=lambda m: None)
    assert {p: p.stat().st_mtime_ns for p in res.out.rglob("stage.yaml")} == stamps
    pd.testing.assert_frame_equal(pd.read_csv(res.out / "results.csv"), pd.read_csv(again.out / "results.csv"))


def test_changing_finetune_recomputes_only_the_methods(first_run, tmp_path):
    cfg, res = first_run
    out = tmp_path / "copy"
    shutil.copytree(res.out, out)
    zoo_stamp = (out / "zoo" / "stage.yaml").stat().st_mtime_ns
    cfg2 = RunConfig.from_dict({**cfg.to_dict(), "out": str(out), "finetune": {**cfg.finetune, "lr": 0.001},
                                "methods": ["seasonal_naive", "gpd"]})
    run_pipeline(cfg2, progress=False, log=lambda m: None)
    assert (out / "zoo" / "stage.yaml").stat().st_mtime_ns == zoo_stamp
    assert read_yaml(out / "methods" / "gpd" / "stage.yaml")["config"]["finetune"]["lr"] == 0.001


def test_target_test_period_never_reaches_training(first_run, tmp_path):
    """Scaling the target's test values by 10 changes no trained or generated parameter."""
    cfg, res = first_run
    data = _cities(tmp_path / "data", target_scale=10.0)
    cfg2 = RunConfig.from_dict({**cfg.to_dict(), "data_dir": str(data), "out": str(tmp_path / "run"),
                                "methods": ["target_only", "retrieval", "gpd"]})
    res2 = run_pipeline(cfg2, progress=False, log=lambda m: None)
    a, _ = load_tensors(res.out / "generate" / "generated.safetensors")
    b, _ = load_tensors(res2.out / "generate" / "generated.safetensors")
    assert np.array_equal(a["params"].numpy(), b["params"].numpy())
    for m in cfg2.methods:
        a, _ = load_tensors(res.out / "methods" / m / "output.safetensors")
        b, _ = load_tensors(res2.out / "methods" / m / "output.safetensors")
        assert np.array_equal(a["params"].numpy(), b["params"].numpy()), m


def test_cli_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(main, ["run", "--target", "nowhere-city", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "unknown city" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["run", "--methods", "seasonal_naive,magic", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "unknown method 'magic'" in r.output


def test_too_few_target_days_is_a_clear_error(tmp_path):
    data = _cities(tmp_path / "data")
    cfg = RunConfig.from_dict({**TINY, "target": "alpha", "data_dir": str(data), "out": str(tmp_path / "r"),
                               "target_days": 0.25})
    from gpdiff.errors import GpdiffError

    with pytest.raises(GpdiffError, match="fewer than one window"):
        run_pipeline(cfg, progress=False, log=lambda m: None)


@pytest.mark.parametrize("config,cities", [
    ("paper_traffic.yaml", {"metr-la": 288, "pems-bay": 288, "chengdu_m": 144, "shenzhen": 144}),
    ("paper_crowd.yaml", {"DC": 24, "BM": 24, "man": 24}),
])
def test_paper_configs_run_on_files_of_the_published_layout(tmp_path, config, cities):
    """The paper configs, on tiny files in the GPD folder layout (dataset.npy + matrix.npy)."""
    rng = np.random.default_rng(0)
    for i, (name, spd) in enumerate(cities.items()):
        c = synthetic_city(name, n_nodes=4 + i, days=7, interval_minutes=1440 // spd, seed=i)
        folder = tmp_path / "gpd" / f"Data_{name}" if name in ("DC", "BM") else tmp_path / "gpd" / name
        folder.mkdir(parents=True)
        x = np.stack([c.values[:, :, 0], rng.random(c.values.shape[:2])], axis=-1).astype(np.float64)
        np.save(folder / "dataset.npy", x)
        np.save(folder / "matrix.npy", c.adjacency.astype(np.float32))
    overrides = {"data_dir": str(tmp_path / "gpd"), "out": str(tmp_path / "run"), "device": "cpu",
                 "methods": ["historical_average", "gpd_zero_shot"], "steps": 3,
                 "zoo": {"max_epochs": 1, "steps_per_epoch": 1, "batch_size": 4},
                 "prompts": {"temporal": "stats"},
                 "diffusion": {"iters": 2, "batch_size": 4}}
    cfg = RunConfig.from_yaml(CONFIGS / config, overrides)
    assert cfg.preset == "paper" and cfg.denoiser == "paper" and (cfg.history, cfg.horizon) == (12, 6)
    res = run_pipeline(cfg, progress=False, log=lambda m: None)
    df = pd.read_csv(res.out / "results.csv")
    assert set(df["method"]) == {"historical_average", "gpd_zero_shot"}


def test_target_nodes_silent_in_the_few_shot_days_do_not_break_the_run(first_run, tmp_path):
    """A target node unobserved in its few days and one that reads ~0 there, then normal values:
    the run finishes, says what it did, and no method is thrown into raw-unit predictions."""
    from gpdiff.data.splits import target_split

    root = _cities(tmp_path / "data")
    alpha = synthetic_city("alpha", n_nodes=6, days=12, seed=1)
    split = target_split(alpha.n_steps, alpha.steps_per_day, 3, 1.0, 0.2, 12 + 3, name="alpha")
    few = split.train.as_slice()
    alpha.mask[few, 1] = False
    alpha.values[few, 2, 0] = alpha.values[few, 2, 0] * 1e-3
    shutil.rmtree(root / "alpha")
    write_city_folder(alpha, root / "alpha")
    cfg = RunConfig.from_dict({**TINY, "target": "alpha", "data_dir": str(root), "out": str(tmp_path / "r")})
    res = run_pipeline(cfg, progress=False, log=lambda m: None)
    report = (res.out / "report.md").read_text()
    assert "get the mean temporal prompt of the other nodes" in report

    # Without the scaler's fallbacks, node 1 stays in raw units and node 2 is scaled by a tiny std:
    # their test inputs are huge and every model whose ego-graph holds them forecasts nonsense.
    peak = float(np.abs(alpha.values[..., 0][alpha.mask]).max())
    for m in cfg.methods:
        pred = load_tensors(res.out / "methods" / m / "output.safetensors")[0]["pred"].numpy()
        assert np.isfinite(pred).all() and np.abs(pred).max() < 3 * peak, (m, np.abs(pred).max() / peak)


def test_unknown_run_setting_is_named():
    from gpdiff.errors import GpdiffError

    with pytest.raises(GpdiffError, match=r"unknown run config field\(s\) \['targte'\]; known: \[.*'target'"):
        RunConfig.from_dict({"targte": "x"})
