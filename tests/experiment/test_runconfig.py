"""The run config: where a wrong setting came from (the file, --set, a suite's base, experiment or grid), every
ranged field checked when read, old keys naming their new place, the tree's round trip and dotted overrides."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from gpdiff.cli import main
from gpdiff.experiment.bench import load_suite
from gpdiff.experiment.runconfig import RunConfig
from gpdiff.utils.errors import GpdiffError
from tests.conftest import REPO


def _yaml(path: Path, doc: dict) -> Path:
    path.write_text(yaml.safe_dump(doc))
    return path


# ---------------------------------------------------------------------------------------------------------------
# Every setting with a documented range is checked when the config is read (issue 29 item 6). The walk below
# finds every field of the run config tree, of every method's settings and of every prompt encoder's config; a
# field that is not a bool must appear in INVALID (values its range excludes) or in UNCONSTRAINED (why any value
# of its type is valid), so a new field with a documented range cannot go without a check.

INVALID: dict[str, list[object]] = {
    "target_days": [0, -1, float("nan")], "val_days": [0, float("inf")], "test_fraction": [0, 1, 1.5],
    "target_scale_floor": [-0.1, 1.5, float("nan")], "seed": [-1], "device": ["gpu", "cuda:x"],
    "window.history": [0], "window.horizon": [0], "window.n_neighbors": [-1], "window.context": ["monthly"],
    "anchor.lr": [0, -1e-3], "anchor.max_steps": [0], "anchor.nodes_per_step": [0], "anchor.batch_size": [0],
    "anchor.eval_every": [0], "anchor.patience": [0], "anchor.val_nodes": [0], "anchor.balance": ["even"],
    **{f"{s}.{k}": v for s in ("zoo", "finetune") for k, v in {
        "batch_size": [0], "lr": [0, -1], "lr_decay": [0, -0.5], "max_epochs": [0], "patience": [0],
        "steps_per_epoch": [0], "val_windows": [0], "node_chunk": [-1], "l2_init": [-0.1]}.items()},
    "model.name": ["lstm"], "model.preset": ["huge"], "zoo.init": ["zeros"], "model.in_channels": [0],
    "source_split.train": [0, 0.9], "source_split.val": [0, -0.1], "source_split.test": [0, 0.5],
    "model.residual": ["daily"],
    "zoo.members": [0], "zoo.member_noise": [-0.01],
    "prompts.temporal": ["fourier"], "prompts.spatial": ["road"],
    "diffusion.preset": ["large"], "diffusion.max_steps": [0], "diffusion.batch_size": [0], "diffusion.lr": [0, -1],
    "diffusion.weight_decay": [-0.01], "diffusion.warmup": [-1], "diffusion.grad_clip": [0, -1],
    "diffusion.ema_decay": [-0.1, 1.5], "diffusion.cfg_dropout": [-0.1, 1], "diffusion.reference": ["median"],
    "diffusion.standardize": ["global"], "diffusion.balance": ["even"], "diffusion.tensors": ["some"],
    "diffusion.functional_weight": [-1], "diffusion.functional_windows": [0], "diffusion.checkpoint_every": [0],
    "diffusion.denoiser.d_model": [0, 130], "diffusion.denoiser.n_layers": [0], "diffusion.denoiser.n_heads": [0, 3],
    "diffusion.denoiser.mlp_ratio": [0, -1], "diffusion.denoiser.dropout": [-0.1, 1],
    "diffusion.denoiser.condition": ["concat"], "diffusion.denoiser.token_dim": [-1],
    "diffusion.denoiser.max_tokens": [0],
    "diffusion.schedule.num_train_timesteps": [1, 0], "diffusion.schedule.beta_start": [0, -1e-4, 0.05],
    "diffusion.schedule.beta_end": [1, 1e-6, float("nan")], "diffusion.schedule.beta_schedule": ["cosine"],
    "diffusion.schedule.prediction_type": ["x0"],
    "generate.sampler": ["euler"], "generate.num_inference_steps": [0, 501], "generate.guidance_scale": [-1, 2.0],
    "generate.num_samples": [0],
    "blend.naive": [["monthly_naive"], ["weekly_naive", "weekly_naive"]], "blend.step": [0, 0.3, 2],
    "intervals.levels": [[0], [1.0], [0.8, 0.8]], "intervals.calibration": ["weekly"],
    "ensemble.size": [0, -1], "ensemble.spread_floor": [0, -0.1, float("nan")],
    "methods.pooled_linear.alpha": [-1, float("inf")], "methods.pooled_linear.windows_per_city": [0],
    "methods.knn_residual.ks": [[], [0]], "methods.knn_residual.shrinkages": [[], [-0.5]],
    "methods.knn_residual.holdout": [0, 1], "methods.knn_residual.val_windows": [0],
    "methods.reptile.max_steps": [0], "methods.reptile.nodes_per_step": [0], "methods.reptile.inner_steps": [0],
    "methods.reptile.inner_lr": [0, float("inf")], "methods.reptile.batch_size": [0], "methods.reptile.meta_lr": [0],
    "methods.reptile.balance": ["even"],
    "methods.gpd.shrinkages": [[], [-0.5], [0.5, 0.5], [float("inf")]], "methods.gpd.windows": [0],
    **{f"prompts.temporal:masked_patch.{k}": v for k, v in {
        "days": [0], "patch_minutes": [0, 7], "patch_points": [0, 7], "d_model": [0, 66], "n_layers": [0],
        "n_heads": [0, 3], "ff_dim": [0], "mask_ratio": [0, 1], "max_steps": [0], "batch_size": [0], "lr": [0],
        "weight_decay": [-1], "warmup": [-1], "min_train_patches": [0], "short_fraction": [-0.1, 1.1],
        "min_coverage": [0, 1.5], "threads": [-1]}.items()},
    "prompts.temporal:stats.days": [0, -1], "prompts.temporal:stats.min_coverage": [0, 2],
    "prompts.temporal:stats.min_pairs": [1], "prompts.temporal:none.dim": [0],
    "prompts.spatial:graph.dim": [0], "prompts.spatial:graph.density_neighbours": [0],
    "prompts.spatial:graph.max_exact_betweenness": [-1], "prompts.spatial:graph.betweenness_samples": [0],
    "prompts.spatial:none.dim": [0],
    # gpdiff fit --set (gpdiff.forecaster.ForecasterConfig)
    "forecaster.method": ["magic", "knn"], "forecaster.val_days": [0, float("inf")],
    "forecaster.target_scale_floor": [-0.1, 2], "forecaster.seed": [-1],
    **{f"forecaster.finetune.{k}": v for k, v in {
        "batch_size": [0], "lr": [0], "lr_decay": [0], "max_epochs": [0], "patience": [0], "steps_per_epoch": [0],
        "val_windows": [0], "node_chunk": [-1], "l2_init": [-0.1]}.items()},
    "forecaster.blend.naive": [["monthly_naive"]], "forecaster.blend.step": [0.3],
    "forecaster.intervals.levels": [[1.5]],
    "forecaster.gpd.shrinkages": [[], [-0.5], [0.5, 0.5], [float("inf")]], "forecaster.gpd.windows": [0],
}
UNCONSTRAINED: dict[str, str] = {
    "target": "a city name, checked when the cities are loaded",
    "sources": "city names, checked when the cities are loaded (a repeated one is checked here)",
    "data_dir": "a folder, checked when it is read",
    "out": "a folder",
    "methods": "names and settings, walked separately below",
    "prompts.temporal_config": "the chosen encoder's settings, walked separately below",
    "prompts.spatial_config": "the chosen encoder's settings, walked separately below",
    "zoo.trainable": "tensor names or globs of the base model, checked when the model is built",
    "finetune.trainable": "tensor names or globs of the base model, checked when the model is built",
    "prompts.spatial:graph.attribute_names": "region attribute names, any subset of the cities' own",
    "forecaster.finetune.trainable": "tensor names or globs of the base model, checked when the model is built",
    "forecaster.clip": "true, false or null (by the city's kind)",
}


def _walk() -> dict[str, tuple[type, object]]:
    """Every non-bool leaf field of the run config tree, the methods' settings, the prompt encoders'
    configs and the forecaster's config: table path -> (declared type, a function that builds the config
    with that field set to a value)."""
    import dataclasses
    import typing

    from gpdiff.experiment.runconfig import RunConfig
    from gpdiff.forecaster import ForecasterConfig
    from gpdiff.methods import SETTINGS, _resolve
    from gpdiff.prompts import SPATIAL_ENCODERS, TEMPORAL_ENCODERS
    from gpdiff.utils.config import from_mapping

    out: dict[str, tuple[type, object]] = {}

    def fields(cls: type, path: str, setter) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            kind = hints[f.name]
            if isinstance(kind, type) and dataclasses.is_dataclass(kind):
                fields(kind, f"{path}{f.name}.", lambda v, s=setter, n=f.name: s({n: v}))
            elif kind is not bool:
                out[f"{path}{f.name}"] = (kind, lambda v, s=setter, n=f.name: s({n: v}))

    fields(RunConfig, "", RunConfig.from_dict)
    for name, spec in SETTINGS.items():
        fields(_resolve(spec), f"methods.{name}.", lambda d, n=name: RunConfig.from_dict({"methods": {n: d}}))
    for kind, registry in (("temporal", TEMPORAL_ENCODERS), ("spatial", SPATIAL_ENCODERS)):
        for name, encoder in registry.items():
            fields(encoder.config_class, f"prompts.{kind}:{name}.",
                   lambda d, k=kind, n=name: RunConfig.from_dict({"prompts": {k: n, f"{k}_config": d}}))
    fields(ForecasterConfig, "forecaster.", lambda d: from_mapping(ForecasterConfig, d, "forecaster setting"))
    return out


CONFIGS = REPO / "configs"


@pytest.mark.parametrize("assignment,message", [
    ("steps=3", "--set steps=3: run config setting 'steps' has moved to 'generate.num_inference_steps'"),
    ("zoo.k=3", "--set zoo.k=3: run config setting 'zoo.k' has moved to 'window.n_neighbors'"),
    ("zoo.lrr=0.1", "--set zoo.lrr=0.1: unknown run config field(s) ['zoo.lrr']"),
    ("zoo.lr=fast", "--set zoo.lr=fast: run config field zoo.lr must be a float"),
    ("zoo={lr: 0.1, k: 3}", "--set zoo={lr: 0.1, k: 3}: run config setting 'zoo.k' has moved"),
    ("window=5", "--set window=5: run config field window must be a mapping"),
])
def test_a_wrong_set_next_to_a_config_file_is_blamed_on_set(tmp_path, assignment, message):
    path = _yaml(tmp_path / "run.yaml", {"zoo": {"lr": 0.01}, "window": {"history": 12}})
    with pytest.raises(GpdiffError) as err:
        RunConfig.from_yaml(path, assignments=[assignment])
    assert str(err.value).startswith(message) and str(path) not in str(err.value)


def test_a_wrong_key_in_the_file_is_still_blamed_on_the_file(tmp_path):
    path = _yaml(tmp_path / "run.yaml", {"zoo": {"lr": 0.01, "lrr": 1}, "steps": 5})
    with pytest.raises(GpdiffError, match=rf"^{path}: run config setting 'steps' has moved"):
        RunConfig.from_yaml(path, assignments=["zoo.lr=0.1"])
    path = _yaml(tmp_path / "run.yaml", {"zoo": {"lr": 0.01, "lrr": 1}})
    with pytest.raises(GpdiffError, match=rf"^{path}: unknown run config field\(s\) \['zoo.lrr'\]"):
        RunConfig.from_yaml(path, {"zoo": {"patience": 3}}, ["zoo.lr=0.1"])  # overrides of a sibling key too
    with pytest.raises(GpdiffError, match=r"^--set zoo.bad=1: unknown run config field\(s\) \['zoo.bad'\];"):
        RunConfig.from_yaml(path, assignments=["zoo.bad=1"])  # one place per message: the --set key first


def test_cli_run_blames_set_not_the_config_file(tmp_path):
    path = _yaml(tmp_path / "run.yaml", {"zoo": {"lr": 0.01}})
    r = CliRunner().invoke(main, ["run", "--config", str(path), "--set", "steps=3", "--out", str(tmp_path / "r")])
    assert r.exit_code == 2 and "--set steps=3: run config setting 'steps' has moved" in r.output
    assert str(path) not in r.output and r.output.count("\n") == 1 and not (tmp_path / "r").exists()


@pytest.mark.parametrize("doc,message", [
    ({"base": {"steps": 5}, "experiments": [{"target": "a"}]},
     "suite.yaml: base: run config setting 'steps' has moved"),
    ({"base": {"zoo": {"lr": 0.1}}, "experiments": [{"target": "a", "zoo": {"lrr": 1}}]},
     "suite.yaml: experiments[0]: unknown run config field(s) ['zoo.lrr']"),
    ({"base": {"zoo": {"lrr": 0.1}}, "experiments": [{"target": "a", "zoo": {"lr": 1}}]},
     "suite.yaml: base: unknown run config field(s) ['zoo.lrr']"),
    ({"base": {"zoo.lr": "x"}, "experiments": [{"target": "a"}, {"target": "b", "zoo.lr": 0.1}]},
     "suite.yaml: base: run config field zoo.lr must be a float"),
    ({"experiments": [{"target": "a"}], "grid": {"zoo.k": [3]}},
     "suite.yaml: grid (zoo.k=3): run config setting 'zoo.k' has moved"),
])
def test_a_suite_blames_base_experiment_or_grid(tmp_path, doc, message):
    path = _yaml(tmp_path / "suite.yaml", doc)
    with pytest.raises(GpdiffError) as err:
        load_suite(path, tmp_path / "out")
    assert str(err.value).startswith(f"{tmp_path}/{message}"), str(err.value)


def test_every_field_with_a_range_is_listed():
    walked = _walk()
    missing = sorted(set(walked) - set(INVALID) - set(UNCONSTRAINED))
    assert not missing, f"new config fields: give each invalid values in INVALID, or a reason in UNCONSTRAINED: {missing}"
    stale = sorted((set(INVALID) | set(UNCONSTRAINED)) - set(walked))
    assert not stale, f"INVALID / UNCONSTRAINED name fields that no longer exist: {stale}"


@pytest.mark.parametrize("path,value", [(p, v) for p, values in INVALID.items() for v in values],
                         ids=lambda x: str(x))
def test_an_invalid_value_is_refused_when_the_config_is_read(path, value):
    _, build = _walk()[path]
    with pytest.raises(GpdiffError) as err:
        build(value)
    message = str(err.value)
    field_name = path.rsplit(".", 1)[-1]
    assert "\n" not in message and (field_name in message or repr(value) in message), message


def test_old_settings_name_their_new_place() -> None:
    with pytest.raises(GpdiffError, match="'zoo.shared_init' has moved to 'zoo.init'"):
        RunConfig.from_dict({"zoo": {"shared_init": False}})
    with pytest.raises(GpdiffError, match="set anchor.max_steps instead"):
        RunConfig.from_dict({"methods": {"transfer": {"max_steps": 10}}})
    with pytest.raises(GpdiffError, match="'diffusion.center' has moved to 'diffusion.reference'"):
        RunConfig.from_dict({"diffusion": {"center": True}})


def test_unknown_run_setting_is_named():
    with pytest.raises(GpdiffError, match=r"unknown run config field\(s\) \['targte'\]; known at the top level: \[.*'target'"):
        RunConfig.from_dict({"targte": "x"})
    with pytest.raises(GpdiffError, match=r"\['zoo.lrr'\]; known at zoo: \[.*'lr'"):
        RunConfig.from_dict({"zoo": {"lrr": 1}})
    with pytest.raises(GpdiffError, match=r"\['diffusion.denoiser.width'\]"):
        RunConfig.from_dict({"diffusion": {"denoiser": {"width": 1}}})


@pytest.mark.parametrize("old,new", [
    ({"history": 24}, "window.history"), ({"k": 3}, "window.n_neighbors"), ({"steps": 20}, "generate.num_inference_steps"),
    ({"guidance": 2.0}, "generate.guidance_scale"), ({"denoiser": "paper"}, "diffusion.preset"),
    ({"zoo": {"history": 24}}, "window.history"), ({"diffusion": {"d_model": 64}}, "diffusion.denoiser.d_model"),
    ({"baselines": {"reptile": {}}}, "methods.<name>"), ({"model": "gwn"}, "model.name"), ({"preset": "paper"}, "model.preset"),
    ({"zoo": {"model": "gwn"}}, "model.name"), ({"zoo": {"residual": "none"}}, "model.residual"),
    ({"zoo": {"train": 0.6}}, "source_split.train"),
])
def test_an_old_flat_key_names_its_new_path(old, new):
    with pytest.raises(GpdiffError) as err:
        RunConfig.from_dict(old)
    assert f"has moved to '{new}'" in str(err.value) and "\n" not in str(err.value)


def test_config_tree_round_trips_and_takes_dotted_overrides(tmp_path):
    cfg = RunConfig.from_yaml(CONFIGS / "default.yaml")
    assert cfg == RunConfig(sources=["nyc-taxi", "montevideo-bus", "hangzhou-metro"])  # the defaults, spelled out
    assert RunConfig.from_dict(cfg.to_dict()) == cfg
    over = RunConfig.from_yaml(CONFIGS / "default.yaml", assignments=[
        "zoo.lr=1e-3", "window.history=24", "methods.reptile.max_steps=7", "diffusion.denoiser.d_model=64",
        "sources=[a, b]"])
    assert over.zoo.lr == 0.001 and over.window.history == 24 and over.methods["reptile"] == {"max_steps": 7}
    assert over.diffusion.denoiser.d_model == 64 and over.diffusion.denoiser.n_layers == 4 and over.sources == ["a", "b"]
    paper = RunConfig.from_dict({"diffusion": {"preset": "paper", "max_steps": 10}})
    assert paper.diffusion.denoiser.d_model == 512 and paper.diffusion.max_steps == 10
    with pytest.raises(GpdiffError, match="must be an int"):
        RunConfig.from_yaml(None, assignments=["window.history=long"])
    with pytest.raises(GpdiffError, match="dotted.path=value"):
        RunConfig.from_yaml(None, assignments=["window.history"])


def test_a_method_setting_keeps_the_list_of_methods(tmp_path):
    """``--set methods.gpd.shrinkages=...`` changes gpd's settings and runs every other method too (it used to
    leave gpd alone in the run); ``--set methods=[...]`` still replaces the list."""
    default = RunConfig()
    cfg = RunConfig.from_yaml(None, None, ["methods.gpd.shrinkages=[0,0.5,1]", "window.context=lags"])
    assert list(cfg.methods) == list(default.methods)
    assert cfg.methods["gpd"] == {"shrinkages": [0, 0.5, 1]} and cfg.methods["transfer"] == {}
    assert list(RunConfig.from_yaml(None, None, ["methods=[gpd,weekly_naive]"]).methods) == ["gpd", "weekly_naive"]
    path = tmp_path / "mine.yaml"
    path.write_text("methods: {weekly_naive: {}, transfer: {}}\n")
    cfg = RunConfig.from_yaml(path, None, ["methods.gpd.shrinkages=[0,1]"])  # the file's list, gpd added
    assert list(cfg.methods) == ["weekly_naive", "transfer", "gpd"]
