"""Prompt encoders and prompt sets: registries, shapes, save/load, determinism, no leakage of the target's
validation and test values, nodes with too few observations."""
import numpy as np
import pytest
import torch

from gpdiff.data import target_split
from gpdiff.data.splits import Segment
from gpdiff.data.synthetic import synthetic_city
from gpdiff.prompts import (
    SPATIAL_ENCODERS,
    TEMPORAL_ENCODERS,
    PromptEncoder,
    PromptEncoders,
    PromptsConfig,
    PromptSet,
    fit_prompts,
    make_encoder,
    prompt_file,
    source_segment,
    target_segment,
)
from gpdiff.prompts.spatial import STRUCTURE, GraphEncoder
from gpdiff.prompts.stats import FEATURES
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import save_tensors
from tests.prompts.conftest import TINY_MASKED_PATCH, city_with


# --------------------------------------------------------------------------- shapes, registry, round trips
def test_registries_and_unknown_names():
    assert set(TEMPORAL_ENCODERS) == {"masked_patch", "stats", "none"} and set(SPATIAL_ENCODERS) == {"graph", "none"}
    with pytest.raises(GpdiffError, match="Known: masked_patch, none, stats"):
        make_encoder("temporal", "mae")
    with pytest.raises(GpdiffError, match="unknown config field"):
        make_encoder("temporal", "masked_patch", {"layers": 3})
    for registry in (TEMPORAL_ENCODERS, SPATIAL_ENCODERS):  # the seed is an argument of fit, not a setting
        for klass in registry.values():
            assert "seed" not in klass.config_class.__dataclass_fields__, klass.name


def test_shapes(cities, encoders, stats_encoders):
    ps = encoders.encode_many(cities, [source_segment(c) for c in cities])
    n = sum(c.n_nodes for c in cities)
    assert ps.temporal.shape == (n, 32) and ps.spatial.shape == (n, len(STRUCTURE) + 7)
    assert ps.temporal.dtype == torch.float32 and ps.spatial.dtype == torch.float32
    assert ps.keys()[:2] == [("hourly", "n0"), ("hourly", "n1")] and ps.city_names() == ["hourly", "tenmin"]
    seg = source_segment(cities[1])
    assert ps.meta["temporal_encoder"] == "masked_patch" and ps.meta["segments"]["tenmin"] == [seg.start, seg.stop]
    st = stats_encoders.encode_many(cities, [source_segment(c) for c in cities])
    assert st.temporal.shape == (n, len(FEATURES)) and torch.equal(st.spatial, torch.ones(n, 32))
    assert torch.isfinite(st.temporal).all()


def test_save_load_round_trip_is_exact(tmp_path, cities, encoders, stats_encoders):
    segs = [source_segment(c) for c in cities]
    for enc, name in ((encoders, "a"), (stats_encoders, "b")):
        enc.save(tmp_path / name)
        back = PromptEncoders.load(tmp_path / name)
        p, q = enc.encode_many(cities, segs), back.encode_many(cities, segs)
        assert torch.equal(p.temporal, q.temporal) and torch.equal(p.spatial, q.spatial)
        assert (tmp_path / name / "temporal" / "config.yaml").is_file()
        assert (tmp_path / name / "spatial" / "weights.safetensors").is_file()
        p.save(tmp_path / f"{name}.safetensors")
        r = PromptSet.load(tmp_path / f"{name}.safetensors")
        assert torch.equal(r.temporal, p.temporal) and torch.equal(r.spatial, p.spatial)
        assert r.keys() == p.keys() and r.meta == p.meta
        assert (back.temporal.seed, back.spatial.seed) == (enc.temporal.seed, enc.spatial.seed) == (0, 0)
        assert back.temporal.info["seed"] == back.spatial.info["seed"] == 0
    assert isinstance(PromptEncoder.load(tmp_path / "a" / "temporal"), TEMPORAL_ENCODERS["masked_patch"])
    (tmp_path / "junk.safetensors").write_bytes(b"nope")
    with pytest.raises(GpdiffError, match="not a readable safetensors file"):
        PromptSet.load(tmp_path / "junk.safetensors")
    save_tensors(tmp_path / "other.safetensors", {"x": torch.zeros(2)}, {"format": "gpdiff.params"})
    with pytest.raises(GpdiffError, match="not a gpdiff prompt file"):
        PromptSet.load(tmp_path / "other.safetensors")


def test_a_folder_is_read_by_its_one_prompt_file(tmp_path, cities, encoders):
    """`gpdiff prompts fit` writes prompts.safetensors, a run's stages prompts_source/_target.safetensors:
    a folder with one of them reads as that file, a folder with none or two says so."""
    p = encoders.encode_many(cities, [source_segment(c) for c in cities])
    for folder, name in (("fit", "prompts.safetensors"), ("stage", "prompts_source.safetensors")):
        (tmp_path / folder).mkdir()
        p.save(tmp_path / folder / name)
        assert prompt_file(tmp_path / folder) == tmp_path / folder / name
        assert torch.equal(PromptSet.load(tmp_path / folder).temporal, p.temporal)
    p.save(tmp_path / "fit" / "prompts_target.safetensors")  # prompts.safetensors still wins
    assert prompt_file(tmp_path / "fit") == tmp_path / "fit" / "prompts.safetensors"
    p.save(tmp_path / "stage" / "prompts_target.safetensors")
    with pytest.raises(GpdiffError, match="2 prompt files .prompts_source.safetensors, prompts_target"):
        PromptSet.load(tmp_path / "stage")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GpdiffError, match="holds no prompt file; pass the folder written by `gpdiff prompts fit`"):
        PromptSet.load(tmp_path / "empty")


def test_fit_is_deterministic(cities, encoders):
    segs = [source_segment(c) for c in cities]
    again = fit_prompts(cities, PromptsConfig(temporal_config=TINY_MASKED_PATCH), segments=segs, progress=False)
    other = fit_prompts(cities, PromptsConfig(temporal_config=TINY_MASKED_PATCH), segments=segs, seed=1, progress=False)
    a, b, c = (e.encode(cities[1], segs[1]).temporal for e in (encoders, again, other))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert encoders.temporal.info["final_loss"] == again.temporal.info["final_loss"]
    assert other.temporal.info["seed"] == other.spatial.info["seed"] == 1
    assert other.temporal.info["max_steps"] == TINY_MASKED_PATCH["max_steps"]
    with pytest.raises(GpdiffError, match="one .*segment per city"):
        GraphEncoder().fit(cities, segs[:1])


# --------------------------------------------------------------------------- prompt sets
def test_select_reorders_and_names_missing_keys(cities, stats_encoders):
    ps = stats_encoders.encode_many(cities, [source_segment(c) for c in cities])
    keys = [("tenmin", "n3"), ("hourly", "n0")]
    sub = ps.select(keys)
    assert sub.keys() == keys
    assert torch.equal(sub.temporal[1], ps.temporal[0])
    with pytest.raises(GpdiffError, match="tenmin/n99"):
        ps.select([("tenmin", "n99")])
    with pytest.raises(GpdiffError, match="duplicate"):
        PromptSet.concat([ps, ps])
    assert len(PromptSet.concat([ps.of_city("hourly"), ps.of_city("tenmin")])) == len(ps)


# --------------------------------------------------------------------------- no leakage
@pytest.mark.parametrize("which", ["encoders", "stats_encoders"])
def test_target_prompts_ignore_validation_and_test_values(request, which):
    enc = request.getfixturevalue(which)
    city = synthetic_city("target", n_nodes=6, days=20, interval_minutes=60, seed=5)
    split = target_split(city.n_steps, city.steps_per_day, days=3, val_days=1, window=18)
    before = enc.encode(city, split.train)
    values = city.values.copy()
    rng = np.random.default_rng(0)
    values[split.val.start:] = rng.uniform(0, 1e4, size=values[split.val.start:].shape)  # val and test
    values[: split.train.start] = 0.0  # and everything before the few-shot days
    mask = city.mask.copy()
    mask[split.val.start : split.val.start + 30, 0] = False
    after = enc.encode(city_with(city, values=values, mask=mask), split.train)
    assert torch.equal(before.temporal, after.temporal) and torch.equal(before.spatial, after.spatial)


@pytest.mark.parametrize("which", ["encoders", "stats_encoders"])
@pytest.mark.parametrize("days", [1, 2, 3])
def test_target_prompt_from_exactly_n_few_shot_days(request, which, days):
    enc = request.getfixturevalue(which)
    city = synthetic_city("target", n_nodes=6, days=20, interval_minutes=10, seed=5)
    seg = target_segment(city, days)
    assert len(seg) == days * city.steps_per_day
    alone = city.subset_time(seg.start, seg.stop)  # the city as if it had only those days
    a = enc.encode(city, seg)
    b = enc.encode(alone, Segment(0, alone.n_steps))
    assert torch.equal(a.temporal, b.temporal) and torch.equal(a.spatial, b.spatial)


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("which", ["encoders", "stats_encoders"])
def test_node_with_too_few_observations_gets_the_mean_prompt(which, request):
    """A node with (almost) no data in its prompt window keeps a prompt: the mean of the others."""
    encoders = request.getfixturevalue(which)
    city = synthetic_city("gappy", n_nodes=4, days=6, interval_minutes=10, seed=4)
    seg = Segment(city.n_steps - 144, city.n_steps)
    mask = city.mask.copy()
    mask[seg.start :, 2] = False
    mask[seg.start : seg.start + 3, 2] = True  # 3 observations: less than one patch / one hour
    ps = encoders.encode(city_with(city, mask=mask), seg)
    t = ps.temporal.numpy()
    assert np.isfinite(t).all()
    np.testing.assert_allclose(t[2], t[[0, 1, 3]].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert any("1 node(s) have less than one" in n and "(node ids: n2)" in n for n in ps.meta["notes"])
    mask[seg.start :, :] = False
    with pytest.raises(GpdiffError, match="no node has"):
        encoders.encode(city_with(city, mask=mask), seg)
