"""End to end: `gpdiff run` on tiny synthetic cities, resuming, no leakage, the paper configs."""
import errno
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from gpdiff.cli import main
from gpdiff.data.formats.city_folder import load_city_folder, write_city_folder
from gpdiff.data.synthetic import synthetic_city
from gpdiff.experiment.pipeline import load_cities, recompute_forecasts, run_pipeline, target_data
from gpdiff.experiment.runconfig import RunConfig
from gpdiff.methods import MethodResult
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import load_tensors, read_yaml
from tests.conftest import METHODS, REPO, TINY, fail_writes, needs_proc, run_cli, series_folder, tiny_cities

CONFIGS = REPO / "configs"

@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    data = tiny_cities(root / "data")
    cfg = RunConfig.from_dict({**TINY, "target": "alpha", "data_dir": str(data), "out": str(root / "run")})
    return cfg, run_pipeline(cfg, progress=False, log=lambda m: None)


# fits/pooled_linear: the ridge the run's pretrained folder keeps (gpdiff fit --method pooled_linear)
ALL_STAGES = ["anchor", "zoo", "prompts", "target_prompts", "diffusion", "generate", "fits/pooled_linear",
              *[f"methods/{m}" for m in METHODS]]
RIDGE = {"fits/pooled_linear"}  # reads the sources' data, window and architecture: no zoo, prompt or anchor
SHARED = ALL_STAGES[:6]
SCORES = ("results.csv", "intervals.csv", "node_mae.csv", "node_crps.csv")  # every score a run writes


def method_forecasts(out: Path, name: str) -> np.ndarray:
    """Method ``name``'s test forecasts ``[N, B, H]`` in the finished run ``out``, as the run reads them."""
    cfg = RunConfig.from_yaml(out / "config.yaml")
    tdata = target_data(cfg, load_cities(cfg), torch.device("cpu"))
    model = cfg.model.build(cfg.window)
    return MethodResult.load(out / "methods" / name / "output.safetensors",
                             lambda p: recompute_forecasts(name, p, model, tdata)).pred


def _rerun_copy(first_run, tmp_path, **changes) -> tuple[list[str], list[str]]:
    """Rerun a copy of the first run with ``changes`` (dotted paths) applied; (computed, reused)."""
    cfg, res = first_run
    out = tmp_path / "copy"
    shutil.copytree(res.out, out)
    cfg2 = RunConfig.from_yaml(None, {**cfg.to_dict(), "out": str(out)},
                               [f"{k.replace('__', '.')}={v}" for k, v in changes.items()])
    again = run_pipeline(cfg2, progress=False, log=lambda m: None)
    return again.computed, again.reused


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
    notes = next(ln for ln in report.splitlines() if ln.startswith("- `retrieval`: "))
    assert notes.startswith("- `retrieval`: retrieved_from: ") and "{" not in notes, notes  # readable, not a dict
    assert read_yaml(res.out / "zoo" / "stage.yaml")["versions"]["torch"]


def test_transfer_methods_start_from_the_anchor_stage(first_run):
    from gpdiff.zoo.anchor import Anchor
    from gpdiff.zoo.params import ParamCollection

    _, res = first_run
    found = Anchor.load(res.out / "anchor")
    anchor, record = found.params, found.record
    assert record["balance"] == "city" and set(record["cities"]) == {"beta", "gamma"}
    outputs = {m: load_tensors(res.out / "methods" / m / "output.safetensors") for m in ("transfer", "transfer_zero_shot",
                                                                                       "knn_residual")}
    assert torch.equal(outputs["transfer_zero_shot"][0]["params"], anchor.expand(6, -1))
    assert not torch.equal(outputs["transfer"][0]["params"], anchor.expand(6, -1))  # fine-tuned from it
    assert torch.equal(ParamCollection.load(res.out / "zoo").anchor, anchor)
    notes = outputs["knn_residual"][1]["notes"]
    assert notes["k"] in (1, 2) and notes["shrinkage"] in (0.0, 0.5) and notes["reference"] == "anchor"


def test_first_run_computes_every_stage_once(first_run):
    _, res = first_run
    assert res.computed == ALL_STAGES and res.reused == []


def test_rerun_reuses_every_stage(first_run):
    cfg, res = first_run
    stamps = {p: p.stat().st_mtime_ns for p in res.out.rglob("stage.yaml")}
    scores = {f: (res.out / f).read_bytes() for f in SCORES}
    again = run_pipeline(cfg, progress=False, log=lambda m: None)
    assert again.computed == [] and again.reused == ALL_STAGES
    assert {p: p.stat().st_mtime_ns for p in res.out.rglob("stage.yaml")} == stamps
    assert {f: (again.out / f).read_bytes() for f in SCORES} == scores  # recomputed forecasts: the same bytes


def test_daily_calibration_rescores_the_intervals_and_recomputes_no_stage(first_run, tmp_path):
    """intervals.calibration: daily changes the intervals of the test days after the first, never a
    stage, a point forecast or the first test day's intervals."""
    _, res = first_run
    computed, _ = _rerun_copy(first_run, tmp_path, intervals__calibration="daily")
    out = tmp_path / "copy"
    assert computed == []
    for f in ("results.csv", "node_mae.csv"):
        assert (out / f).read_bytes() == (res.out / f).read_bytes(), f
    before, after = (pd.read_csv(d / "intervals.csv") for d in (res.out, out))
    assert list(after.columns) == list(before.columns) and len(after) == len(before)
    assert not np.allclose(before["coverage"], after["coverage"])
    assert "recalibrated every test day" in (out / "report.md").read_text()


def test_a_finished_run_keeps_nothing_it_can_recompute_and_one_copy_of_the_denoiser(first_run, tmp_path):
    """No method file holds its test forecasts (its parameters or the target's data give them back) or the
    start of its fine-tuning; the diffusion stage keeps the EMA weights only, and pretrained/ links them."""
    from gpdiff.diffusion.pretrained import GPD
    from gpdiff.diffusion.train import DiffusionModel

    _, res = first_run
    for m in METHODS:
        tensors, meta = load_tensors(res.out / "methods" / m / "output.safetensors")
        assert "pred" not in tensors and "init" not in tensors and meta["forecasts"] == "recomputed", m
    assert not (res.out / "diffusion" / "model.safetensors").exists()
    ema = res.out / "diffusion" / "ema.safetensors"
    assert os.path.samefile(ema, res.out / "pretrained" / "denoiser" / "ema.safetensors")
    # the folder stands alone: copied elsewhere it loads the same denoiser
    gpd = GPD.from_pretrained(shutil.copytree(res.out / "pretrained", tmp_path / "pretrained"))
    stage = DiffusionModel.load(res.out / "diffusion", device="cpu")
    for a, b in zip(gpd.denoiser.ema.state_dict().values(), stage.ema.state_dict().values()):
        assert torch.equal(a, b)


def test_what_a_run_leaves_out_changes_no_result(first_run, tmp_path, monkeypatch):
    """The stages from the diffusion stage down computed again keeping everything, as gpdiff did before it
    left out what it can recompute (every method's test forecasts, the denoiser's last weights): results,
    intervals and per-node scores are the same bytes."""
    from gpdiff.experiment import pipeline

    cfg, res = first_run
    out = tmp_path / "kept"
    shutil.copytree(res.out, out)
    for stage in ("diffusion", "generate", "methods"):
        shutil.rmtree(out / stage)
    monkeypatch.setattr(pipeline, "same_forecasts", lambda a, b: False)
    again = run_pipeline(RunConfig.from_dict({**cfg.to_dict(), "out": str(out), "keep_checkpoints": True}),
                         progress=False, log=lambda m: None)
    assert again.computed == ["diffusion", "generate", *[f"methods/{m}" for m in METHODS]]
    assert (out / "diffusion" / "model.safetensors").is_file()
    assert all("pred" in load_tensors(out / "methods" / m / "output.safetensors")[0] for m in METHODS)
    for f in SCORES:
        assert (out / f).read_bytes() == (res.out / f).read_bytes(), f


def test_forecasts_that_the_parameters_do_not_give_back_stay_in_the_stage(first_run, tmp_path, monkeypatch):
    from gpdiff.experiment import pipeline

    cfg, res = first_run
    out = tmp_path / "shifted"
    shutil.copytree(res.out, out)
    shutil.rmtree(out / "methods" / "target_only")
    real = pipeline.run_method

    def shifted(name, ctx):
        result = real(name, ctx)
        result.pred = result.pred + np.float32(1)  # not what its parameters forecast
        return result

    monkeypatch.setattr(pipeline, "run_method", shifted)
    again = run_pipeline(RunConfig.from_dict({**cfg.to_dict(), "out": str(out)}), progress=False, log=lambda m: None)
    assert again.computed == ["methods/target_only"]
    tensors, meta = load_tensors(out / "methods" / "target_only" / "output.safetensors")
    assert meta["forecasts"] == "stored"
    assert np.array_equal(tensors["pred"].numpy(), method_forecasts(res.out, "target_only") + np.float32(1))
    assert np.array_equal(method_forecasts(out, "target_only"), tensors["pred"].numpy())


def _record(stage: Path, name: str) -> None:
    """List the file ``name`` of ``stage`` in its stage.yaml, as the stage had written it."""
    from gpdiff.utils.hashing import hash_file
    from gpdiff.utils.io import write_yaml

    record = read_yaml(stage / "stage.yaml")
    record["files"][name] = {"bytes": (stage / name).stat().st_size, "sha256": hash_file(stage / name)}
    write_yaml(stage / "stage.yaml", record)


def test_stages_of_an_older_version_are_reused_and_a_missing_raw_denoiser_recomputes_its_stage(first_run, tmp_path):
    """Stages written before gpdiff left things out (a method file with its forecasts and start, a
    diffusion stage with model.safetensors) are reused with the same results; such a stage whose listed file
    is gone is computed again, as any stage missing an output."""
    from gpdiff.methods import MethodResult
    from gpdiff.utils.io import save_tensors

    cfg, res = first_run
    out = tmp_path / "old"
    shutil.copytree(res.out, out)
    gpd = out / "methods" / "gpd"
    result = MethodResult.load(gpd / "output.safetensors", lambda p: method_forecasts(res.out, "gpd"))
    save_tensors(gpd / "output.safetensors", {"pred": torch.from_numpy(result.pred), "params": result.params,
                                              "init": torch.zeros_like(result.params)},
                 {"format": "gpdiff.method_result", "notes": result.notes, "blend": True})
    _record(gpd, "output.safetensors")
    shutil.copy(out / "diffusion" / "ema.safetensors", out / "diffusion" / "model.safetensors")
    _record(out / "diffusion", "model.safetensors")
    cfg2 = RunConfig.from_dict({**cfg.to_dict(), "out": str(out)})
    again = run_pipeline(cfg2, progress=False, log=lambda m: None)
    assert again.computed == [] and again.reused == ALL_STAGES
    for f in SCORES:
        assert (out / f).read_bytes() == (res.out / f).read_bytes(), f
    (out / "diffusion" / "model.safetensors").unlink()
    again = run_pipeline(cfg2, progress=False, log=lambda m: None)
    assert again.computed == ["diffusion"]  # the same key: the stages below it are reused
    assert not (out / "diffusion" / "model.safetensors").exists()


@pytest.mark.parametrize("change,first", [
    ({"finetune__lr": 0.001}, "methods/target_only"),
    ({"methods__reptile__max_steps": 3}, "methods/reptile"),
    ({"methods__gpd__shrinkages": [0.0, 0.5, 1.0]}, "methods/gpd"),  # GPD's start shrunk toward the anchor
    ({"generate__num_inference_steps": 4}, "generate"),
    ({"diffusion__max_steps": 31}, "diffusion"),
    ({"prompts__spatial": "none"}, "prompts"),
    ({"zoo__lr": 0.02}, "zoo"),
    ({"anchor__lr": 0.01}, "anchor"),
    ({"target_days": 2}, "target_prompts"),
])
def test_a_config_change_recomputes_its_stage_and_those_below_only(first_run, tmp_path, change, first):
    """Editing one stage's settings recomputes that stage and the stages that read it, nothing above."""
    computed, reused = _rerun_copy(first_run, tmp_path, **change)
    assert first in computed
    above = ALL_STAGES[:ALL_STAGES.index(first)] if not first.startswith("methods/") else SHARED
    assert set(above) <= set(reused), (computed, reused)
    if first.startswith("methods/") and first != "methods/target_only":  # one method's settings: that method only
        assert computed == [first]
    if first == "methods/target_only":  # the shared fine-tuning budget: every method that fine-tunes
        assert {"methods/gpd", "methods/transfer", "methods/reptile"} <= set(computed)
    if first in ("generate", "diffusion"):  # the methods that read generated parameters, not the others
        assert {"methods/gpd", "methods/gpd_zero_shot"} <= set(computed)
        assert "methods/transfer" in reused
    if first == "zoo":  # the prompts read the data only, the zoo reads no prompt
        assert set(ALL_STAGES) - {"anchor", "zoo", "prompts", "target_prompts"} - RIDGE <= set(computed)
        assert {"anchor", "prompts", "target_prompts"} <= set(reused)
    if first == "prompts":  # new encoders: new target prompts and everything below
        assert set(ALL_STAGES) - {"anchor", "zoo"} - RIDGE <= set(computed) and {"anchor", "zoo"} <= set(reused)
    if first == "anchor":  # the zoo starts from it: all but the prompts
        assert set(ALL_STAGES) - {"prompts", "target_prompts"} - RIDGE <= set(computed)
        assert reused == ["prompts", "target_prompts", *RIDGE]
    if first == "target_prompts":  # another split of the target: the denoiser reads the sources only
        assert "diffusion" in reused and {"generate", "methods/gpd", "methods/transfer"} <= set(computed)


def test_blend_adds_one_stage_per_learned_method_and_reuses_the_methods(first_run, tmp_path):
    """The default blend (``blend.naive``: weekly and seasonal naive) blends every method with
    parameters, fitted on validation only: the method stages are reused, the naive methods
    untouched, and the validation MAE never gets worse."""
    cfg, res = first_run
    out = tmp_path / "blended"
    shutil.copytree(res.out, out)
    settings = {k: v for k, v in cfg.to_dict().items() if k != "blend"}
    cfg2 = RunConfig.from_yaml(None, {**settings, "out": str(out)})
    assert cfg2.blend.naive == ["weekly_naive", "seasonal_naive"] and cfg2.blend.step == 0.05
    again = run_pipeline(cfg2, progress=False, log=lambda m: None)
    learned = [m for m in METHODS if m not in ("seasonal_naive", "historical_average")]
    assert again.computed == [f"blend/{m}" for m in learned] and again.reused == ALL_STAGES
    before = pd.read_csv(res.out / "results.csv").set_index(["method", "horizon"])["mae"]
    after = pd.read_csv(out / "results.csv").set_index(["method", "horizon"])["mae"]
    assert (after.loc["seasonal_naive"] == before.loc["seasonal_naive"]).all()
    for m in learned:
        tensors, meta = load_tensors(out / "blend" / m / "blend.safetensors")
        assert tensors["weights"].shape == (3, 2) and (tensors["weights"].sum(1) <= 1 + 1e-6).all()
        assert meta["val_mae"][1] <= meta["val_mae"][0] + 1e-9
        if (tensors["weights"] == 0).all():
            assert after.loc[(m, "avg")] == pytest.approx(before.loc[(m, "avg")], rel=1e-6)
    report = (out / "report.md").read_text()
    assert "`gpd`:" in report and "blend" in report and "mae_without_blend" in report
    assert f"| gpd | {before.loc[('gpd', 'avg')]:.4g} | {after.loc[('gpd', 'avg')]:.4g} |" in report


def test_changing_the_code_recomputes_every_stage(first_run, tmp_path, monkeypatch):
    from gpdiff.utils import hashing

    monkeypatch.setattr(hashing, "code_fingerprint", lambda: "9.9.9+edited")
    computed, reused = _rerun_copy(first_run, tmp_path)
    assert computed == ALL_STAGES and reused == []


def test_target_test_period_never_reaches_training(first_run, tmp_path):
    """Scaling the target's test values by 10 changes no trained or generated parameter."""
    cfg, res = first_run
    data = tiny_cities(tmp_path / "data", target_scale=10.0)
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


@pytest.mark.parametrize("context", ["none", "lags"])
def test_nothing_fitted_on_the_target_reads_before_its_few_shot_days(tmp_path, context):
    """A new city has no past: poisoning every target value before the few-shot days (wild counts,
    a third unobserved) changes no prompt, generated or fitted parameter, blend weight or validation
    score (the value one week earlier on the validation day lies before the few-shot days)."""
    from gpdiff.data.splits import target_split

    methods = ["weekly_naive", "target_only", "transfer", "knn_residual", "gpd_zero_shot", "gpd"]
    outs = []
    for poison in (False, True):
        data = tiny_cities(tmp_path / f"data{poison}")
        if poison:
            alpha = synthetic_city("alpha", n_nodes=6, days=12, seed=1)  # as tiny_cities makes it
            split = target_split(alpha.n_steps, alpha.steps_per_day, 3)
            rng = np.random.default_rng(0)
            alpha.values[: split.train.start] = rng.uniform(0, 1e4, alpha.values[: split.train.start].shape)
            alpha.mask[: split.train.start] = rng.random(alpha.mask[: split.train.start].shape) > 0.3
            write_city_folder(alpha, data / "alpha")
        cfg = RunConfig.from_dict({**TINY, "target": "alpha", "data_dir": str(data), "out": str(tmp_path / f"r{poison}"),
                                   "window": {**TINY["window"], "context": context},
                                   "methods": methods, "blend": {"naive": ["weekly_naive", "seasonal_naive"]}})
        outs.append(run_pipeline(cfg, progress=False, log=lambda m: None).out)
    clean, poisoned = outs
    pairs = [("target_prompts/prompts_target.safetensors", None), ("generate/generated.safetensors", None)]
    pairs += [(f"methods/{m}/output.safetensors", "params") for m in methods if m != "weekly_naive"]
    pairs += [(f"blend/{m}/blend.safetensors", "weights") for m in methods if m != "weekly_naive"]
    for rel, key in pairs:
        (a, meta_a), (b, meta_b) = load_tensors(clean / rel), load_tensors(poisoned / rel)
        for k in [key] if key else a:
            assert torch.equal(a[k], b[k]), (rel, k)
        if rel.startswith("blend/"):
            assert meta_a["val_mae"] == meta_b["val_mae"], rel  # the validation scores, alone and blended
            assert meta_a["val_lagged"]["weekly_naive"] == 0.0, meta_a  # the week before is not there
    note = "weekly_naive is the lagged value for 0% of the validation values"
    assert note in (clean / "report.md").read_text()
    # the test period may read the past: weekly naive's first test week is the poisoned one
    wk = [method_forecasts(o, "weekly_naive") for o in outs]
    assert not np.array_equal(*wk)


def test_cli_errors_are_one_line(tmp_path):
    r = CliRunner().invoke(main, ["run", "--target", "nowhere-city", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "unknown city" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["run", "--methods", "seasonal_naive,magic", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "unknown method 'magic'" in r.output


def test_too_few_target_days_is_a_clear_error(tmp_path):
    data = tiny_cities(tmp_path / "data")
    cfg = RunConfig.from_dict({**TINY, "target": "alpha", "data_dir": str(data), "out": str(tmp_path / "r"),
                               "target_days": 0.25})

    with pytest.raises(GpdiffError, match="fewer than one window"):
        run_pipeline(cfg, progress=False, log=lambda m: None)
    assert not (tmp_path / "r").exists()  # the error comes before anything is written


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
                 "methods": ["historical_average", "gpd_zero_shot"], "generate": {"num_inference_steps": 3},
                 "zoo": {"max_epochs": 1, "steps_per_epoch": 1, "batch_size": 4},
                 "prompts": {"temporal": "stats"},
                 "diffusion": {"max_steps": 2, "batch_size": 4}}
    cfg = RunConfig.from_yaml(CONFIGS / config, overrides)
    assert cfg.model.preset == "paper" and cfg.diffusion.preset == "paper"
    assert (cfg.window.history, cfg.window.horizon) == (12, 6) and cfg.diffusion.denoiser.d_model == 512
    res = run_pipeline(cfg, progress=False, log=lambda m: None)
    df = pd.read_csv(res.out / "results.csv")
    assert set(df["method"]) == {"historical_average", "gpd_zero_shot"}


def test_target_nodes_silent_in_the_few_shot_days_do_not_break_the_run(first_run, tmp_path):
    """A target node unobserved in its few days and one that reads ~0 there, then normal values:
    the run finishes, says what it did, and no method is thrown into raw-unit predictions."""
    from gpdiff.data.splits import target_split

    root = tiny_cities(tmp_path / "data")
    alpha = synthetic_city("alpha", n_nodes=6, days=12, seed=1)
    split = target_split(alpha.n_steps, alpha.steps_per_day, 3, 1.0, 0.2, 12 + 3, name="alpha")
    few = split.train.as_slice()
    alpha.mask[few, 1] = False
    alpha.values[few, 2, 0] = alpha.values[few, 2, 0] * 1e-3
    shutil.rmtree(root / "alpha")
    write_city_folder(alpha, root / "alpha")
    cfg = RunConfig.from_dict({**TINY, "target": "alpha", "data_dir": str(root), "out": str(tmp_path / "r")})
    logged: list[str] = []
    res = run_pipeline(cfg, progress=False, log=logged.append)
    report = (res.out / "report.md").read_text()
    assert "get the mean temporal prompt of the other nodes" in report
    # every guard of the README names its nodes, in report.md and in the log
    n1, n2 = alpha.node_ids[1], alpha.node_ids[2]
    for promise in (f"target scaler: 1 node(s) ({n1}) have no observed value in their few-shot days",
                    f"target scaler: 1 node(s) ({n2}) vary less than target_scale_floor (0.05)"):
        assert promise in report and any(promise in line for line in logged), promise
    notes = report.split("## Notes", 1)[1]
    assert f"`historical_average`: fallback: 1 node(s) ({n1}) have no observation in the few-shot days" in notes

    # Without the scaler's fallbacks, node 1 stays in raw units and node 2 is scaled by a tiny std:
    # their test inputs are huge and every model whose ego-graph holds them forecasts nonsense.
    peak = float(np.abs(alpha.values[..., 0][alpha.mask]).max())
    for m in cfg.methods:
        pred = method_forecasts(res.out, m)
        assert np.isfinite(pred).all() and np.abs(pred).max() < 3 * peak, (m, np.abs(pred).max() / peak)


def test_seasonal_context_runs_end_to_end(tmp_path):
    """window.context daily with the residual to seasonal naive: every stage, and the report says so."""
    data = tiny_cities(tmp_path / "data")
    methods = ["seasonal_naive", "weekly_naive", "target_only", "gpd_zero_shot", "gpd"]
    cfg = RunConfig.from_yaml(None, {**TINY, "target": "alpha", "data_dir": str(data), "out": str(tmp_path / "r"),
                                     "methods": methods},
                              ["window.context=daily", "model.residual=seasonal", "target_days=4"])
    res = run_pipeline(cfg, progress=False, log=lambda m: None)
    df = pd.read_csv(res.out / "results.csv", dtype={"horizon": str})
    assert set(df["method"]) == set(methods) and np.isfinite(df["mae"]).all()
    assert "seasonal context `daily` (residual `seasonal`)" in (res.out / "report.md").read_text()
    r = CliRunner().invoke(main, ["zoo", "show", str(res.out / "zoo")])
    assert r.exit_code == 0 and "seasonal context daily (residual seasonal)" in r.output


def test_weekly_context_runs_zero_shot_methods_without_target_training_windows(tmp_path):
    """3 few-shot days hold no window with a weekly lag: zero-shot methods run on the test windows
    (which may look back a week), and a method that fine-tunes is refused, named, before training."""
    data = tiny_cities(tmp_path / "data")
    zero_shot = ["seasonal_naive", "weekly_naive", "historical_average", "transfer_zero_shot", "gpd_zero_shot"]
    weekly = ["window.context=weekly", "model.residual=seasonal"]
    cfg = RunConfig.from_yaml(None, {**TINY, "target": "alpha", "data_dir": str(data), "out": str(tmp_path / "r"),
                                     "methods": zero_shot}, [*weekly, "anchor.lr=1e-30"])
    lines: list[str] = []
    res = run_pipeline(cfg, progress=False, log=lines.append)
    df = pd.read_csv(res.out / "results.csv", dtype={"horizon": str})
    assert set(df["method"]) == set(zero_shot) and np.isfinite(df["mae"]).all()
    # an anchor that cannot move is its start, and the run says so
    assert any("[anchor] warning: training never beat the initial parameters" in line
               and "(the seasonal value, model.residual seasonal)" in line for line in lines)
    bad = RunConfig.from_yaml(None, {**TINY, "target": "alpha", "data_dir": str(data), "out": str(tmp_path / "b"),
                                     "methods": [*zero_shot, "transfer", "gpd"]}, weekly)
    with pytest.raises(GpdiffError, match=r"the seasonal context's lag 168 = 183 steps.*Methods transfer, gpd train "
                                          r"on the few-shot days; a run of zero-shot methods only \(seasonal_naive"):
        run_pipeline(bad, progress=False, log=lambda m: None)
    assert not (tmp_path / "b" / "anchor").exists()


def test_cli_set_and_methods_flags(tmp_path):
    r = CliRunner().invoke(main, ["run", "--set", "window.histroy=3", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "window.histroy" in r.output and "Traceback" not in r.output
    r = CliRunner().invoke(main, ["run", "--blend", "weekly_naive,monthly_naive", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "monthly_naive" in r.output and "weekly_naive" in r.output


def test_runs_in_two_folders_share_stages_through_cache(tmp_path):
    """`gpdiff run --cache DIR`: a second run directory with one setting changed reuses every stage above it."""
    from gpdiff.utils.io import write_yaml

    data = tiny_cities(tmp_path / "data")
    config = write_yaml(tmp_path / "tiny.yaml", {**TINY, "target": "alpha", "data_dir": str(data),
                                                  "methods": {"seasonal_naive": {}, "transfer": {}}})
    args = ["run", "--config", str(config), "--cache", str(tmp_path / "cache"), "--quiet"]
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "a")])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, [*args, "--out", str(tmp_path / "b"), "--blend", "weekly_naive,seasonal_naive"])
    assert r.exit_code == 0, r.output
    assert "[anchor] reusing" in r.output and "stages reused" in r.output
    stages = read_yaml(tmp_path / "b" / "stages.yaml")
    assert Path(stages["anchor"]) == Path(read_yaml(tmp_path / "a" / "stages.yaml")["anchor"])
    assert str(tmp_path / "cache") in stages["blend/transfer"]
    assert "in the shared stage cache" in (tmp_path / "b" / "report.md").read_text()


def test_default_sources_are_the_city_entries_of_the_data_dir(tmp_path):
    from gpdiff.experiment.pipeline import default_sources

    for name in ("alpha", "beta"):
        (tmp_path / name).mkdir()
    (tmp_path / "gamma.city").write_bytes(b"")
    (tmp_path / "PEMS04.npz").write_bytes(b"")
    (tmp_path / "PEMS04.csv").write_text("from,to,cost\n")  # the .npz's distance file, not a city
    (tmp_path / "README.md").write_text("my cities\n")
    (tmp_path / ".cache").mkdir()
    cfg = RunConfig.from_dict({"target": "alpha", "data_dir": str(tmp_path)})
    assert default_sources(cfg) == ["PEMS04", "beta", "gamma"]


def test_functional_loss_and_members_run_end_to_end(tmp_path):
    """diffusion.functional_weight > 0: the diffusion stage scores its estimates on the sources' windows;
    zoo.members > 1: it trains on every member."""
    data = tiny_cities(tmp_path / "data")
    cfg = RunConfig.from_yaml(None, {**TINY, "target": "alpha", "data_dir": str(data), "out": str(tmp_path / "r"),
                                     "methods": ["seasonal_naive", "knn_residual", "gpd_zero_shot"]},
                              ["diffusion.functional_weight=0.5", "diffusion.functional_windows=4", "zoo.members=2"])
    lines: list[str] = []
    res = run_pipeline(cfg, progress=False, log=lines.append)
    df = pd.read_csv(res.out / "results.csv", dtype={"horizon": str})
    assert set(df["method"]) == {"seasonal_naive", "knn_residual", "gpd_zero_shot"} and np.isfinite(df["mae"]).all()
    saved = read_yaml(res.out / "diffusion" / "config.yaml")
    assert saved["diffusion"]["functional_weight"] == 0.5 and saved["diffusion"]["functional_windows"] == 4
    # two members per source node: the denoiser (and its functional loss) trained on both
    from gpdiff.diffusion import DiffusionModel

    assert DiffusionModel.load(res.out / "diffusion").info["n_nodes"] == 2 * (8 + 5)
    assert any("2 members per node" in line for line in lines)


def test_the_public_stage_functions_are_what_the_run_ran(first_run):
    """`gpdiff.run` caches the public stage functions: called by hand with the run's config they give
    the run's anchor, zoo, prompts and generated parameters exactly."""
    import gpdiff
    from gpdiff.experiment.pipeline import load_cities
    from gpdiff.prompts import PromptSet, source_segment

    cfg, res = first_run
    cities = load_cities(cfg)
    sources, common = cities.sources, {"seed": cfg.seed, "progress": False}
    shape = {"model": cfg.model, "window": cfg.window, "split": cfg.source_split}
    anchor = gpdiff.fit_anchor(sources, cfg.anchor, **shape, device="cpu", **common)
    assert torch.equal(anchor.params, gpdiff.Anchor.load(res.out / "anchor").params)
    zoo = gpdiff.train_zoo(sources, cfg.zoo, **shape, anchor=anchor, device="cpu", **common)
    assert torch.equal(zoo.params, gpdiff.ParamCollection.load(res.out / "zoo" / "zoo.safetensors").params)
    segments = [source_segment(c, cfg.source_split) for c in sources]
    encoders = gpdiff.fit_prompts(sources, cfg.prompts, segments=segments, **common)
    target_prompts = encoders.encode(cities.target, cities.split.train)
    saved = PromptSet.load(res.out / "target_prompts" / "prompts_target.safetensors")
    assert torch.equal(target_prompts.temporal, saved.temporal) and torch.equal(target_prompts.spatial, saved.spatial)
    denoiser = gpdiff.train_denoiser(zoo, encoders.encode_many(sources, segments).select(zoo.keys()), cfg.diffusion,
                                     device="cpu", **common)
    generated = gpdiff.generate(denoiser, target_prompts, cfg.generate, **common)
    assert torch.equal(generated.params,
                       gpdiff.ParamCollection.load(res.out / "generate" / "generated.safetensors").params)


@needs_proc
def test_a_run_that_fills_the_disk_stops_in_one_line_and_resumes(tmp_path, monkeypatch):
    """The disk fills while the zoo stage writes: one line, no traceback; the anchor stage finished before
    is intact, and the same command then reuses it and finishes."""
    from gpdiff.cli import main
    from gpdiff.utils.io import write_yaml
    from tests.conftest import TINY, tiny_cities

    data = tiny_cities(tmp_path / "data")
    config = write_yaml(tmp_path / "tiny.yaml", {**TINY, "target": "alpha", "data_dir": str(data),
                                                  "methods": {"seasonal_naive": {}, "transfer": {}}})
    args = ["run", "--config", str(config), "--out", str(tmp_path / "run"), "--quiet"]
    with monkeypatch.context() as m:
        fail_writes(m, errno.ENOSPC, where=f"{os.sep}zoo{os.sep}")
        r = CliRunner().invoke(main, args)
    assert r.exit_code == 2, r.output
    error = [ln for ln in r.output.splitlines() if ln.startswith("error: ")]
    assert len(error) == 1 and f"{tmp_path / 'run' / 'zoo'}" in error[0] and "No space left on device" in error[0]
    assert "Traceback" not in r.output
    anchor = read_yaml(tmp_path / "run" / "anchor" / "stage.yaml")
    assert anchor["key"] and not (tmp_path / "run" / "zoo" / "stage.yaml").exists()
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    assert "[anchor] reusing" in r.output and "[zoo] training" in r.output
    last = r.output.strip().splitlines()[-1]
    assert f"on disk: {tmp_path / 'run'} " in last and last.endswith("B)")


# ------------------------------------------------ a test period with no observed values (issue 14, fault 9)
def test_unobserved_test_period_is_caught_before_training(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=20 * 24, freq="h")
    vals = np.random.default_rng(0).uniform(1, 9, (len(times), 3))
    target = vals.copy()
    target[-4 * 24:] = np.nan  # the last 20 % (the test period) never observed
    series_folder(tmp_path / "cities" / "tgt", [f"{t:%Y-%m-%d %H:%M}" for t in times], target)
    series_folder(tmp_path / "cities" / "src", [f"{t:%Y-%m-%d %H:%M}" for t in times], vals)
    cfg = RunConfig(target="tgt", data_dir=str(tmp_path / "cities"), out=str(tmp_path / "run"))
    with pytest.raises(GpdiffError, match=r"tgt: the test period \(steps 384-480.*has no observed values at all"):
        load_cities(cfg)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- a city without a graph (issue 14, fault 10)
def test_a_city_without_a_graph_loads_and_only_graph_models_refuse_it(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=20 * 24, freq="h")
    vals = 10 + np.sin(np.arange(times.size) / 24 * 2 * np.pi)[:, None] * np.array([1.0, 2.0, 3.0])
    for name in ("tgt", "src"):
        series_folder(tmp_path / "cities" / name, [f"{t:%Y-%m-%d %H:%M}" for t in times], vals)
    (tmp_path / "cities" / "tgt" / "edges.csv").unlink()  # series.csv alone
    city = load_city_folder(tmp_path / "cities" / "tgt")
    assert city.n_edges == 0 and "graph: none" in city.source
    assert run_cli("data", "convert", str(tmp_path / "cities" / "tgt"), str(tmp_path / "copy")).exit_code == 0
    assert not (tmp_path / "copy" / "adjacency.csv").exists()  # written without a graph, read back without one
    assert load_city_folder(tmp_path / "copy").n_edges == 0
    r = run_cli("data", "show", str(tmp_path / "cities" / "tgt"), "--plot", str(tmp_path / "p.png"))
    assert r.exit_code == 0, r.output
    cfg = RunConfig(target="tgt", sources=["src"], data_dir=str(tmp_path / "cities"), out=str(tmp_path / "run"))
    assert load_cities(cfg).target.n_edges == 0  # STID, the default base model, needs no graph
    cfg = RunConfig.from_dict({**cfg.to_dict(), "model": {"name": "stgcn"}})
    with pytest.raises(GpdiffError, match=r"city 'tgt' has no graph edges but base model 'stgcn' needs a graph; "
                                          r"add an adjacency .* use a model that works without one: stid \(--model\)"):
        load_cities(cfg)
    assert not (tmp_path / "run").exists()


def test_the_runs_pretrained_folder_keeps_the_ridge_not_the_zoo(first_run):
    """RUN/pretrained/ carries pooled_linear's ridge (its fits stage), not the zoo (the run's zoo stage has it;
    gpdiff pretrain --with-zoo makes a folder with it)."""
    from gpdiff.diffusion.pretrained import GPD

    _, res = first_run
    gpd = GPD.from_pretrained(res.out / "pretrained")
    assert gpd.zoo is None and not (res.out / "pretrained" / "zoo").exists()
    card = (res.out / "pretrained" / "README.md").read_text()  # a run trains no check denoiser
    assert "## Held-out source nodes\n\nNot measured" in card and "heldout" not in gpd.card
    saved = load_tensors(res.out / "fits" / "pooled_linear" / "fit.safetensors")[0]
    assert saved.keys() == gpd.fits["pooled_linear"].tensors.keys()
    assert all(torch.equal(v, gpd.fits["pooled_linear"].tensors[k]) for k, v in saved.items())
