"""Prompts: shapes, save/load, determinism, no leakage, short inputs, bad input, diagnostics, CLI."""

from dataclasses import replace

import networkx as nx
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from gpdiff.data import City, target_split
from gpdiff.data.splits import Segment
from gpdiff.data.synthetic import synthetic_city
from gpdiff.prompts import (
    SPATIAL_ENCODERS,
    TEMPORAL_ENCODERS,
    PromptEncoder,
    PromptEncoders,
    PromptSet,
    make_encoder,
    prompt_file,
    source_segment,
    target_segment,
)
from gpdiff.prompts.spatial import (
    STRUCTURE,
    GraphEncoder,
    structure_features,
    within_city_rank,
)
from gpdiff.prompts.stats import FEATURES
from gpdiff.prompts.temporal import patchify
from gpdiff.utils.errors import GpdiffError
from gpdiff.utils.io import save_tensors

TINY_MASKED_PATCH = {"train_steps": 12, "d_model": 16, "n_heads": 2, "ff_dim": 32, "batch_size": 16, "days": 2}


def _with(city: City, **kw) -> City:
    """A copy of ``city`` with some fields replaced (validated again)."""
    fields = {"name": city.name, "values": city.values.copy(), "mask": city.mask.copy(), "start": city.start,
              "interval_minutes": city.interval_minutes, "adjacency": city.adjacency, "kind": city.kind,
              "units": city.units, "node_ids": list(city.node_ids), "channels": list(city.channels),
              "coords": city.coords, "coord_kind": city.coord_kind, "attributes": city.attributes,
              "attribute_names": list(city.attribute_names)}
    fields.update(kw)
    return City(**fields)


@pytest.fixture(scope="module")
def cities() -> list[City]:
    return [synthetic_city("hourly", n_nodes=10, days=12, interval_minutes=60, seed=0),
            synthetic_city("tenmin", n_nodes=7, days=8, interval_minutes=10, seed=1)]


@pytest.fixture(scope="module")
def encoders(cities) -> PromptEncoders:
    return PromptEncoders.fit(cities, [source_segment(c) for c in cities], temporal_config=TINY_MASKED_PATCH)


@pytest.fixture(scope="module")
def stats_encoders(cities) -> PromptEncoders:
    return PromptEncoders.fit(cities, [source_segment(c) for c in cities], temporal="stats", spatial="none")


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


def test_spatial_projection_is_distance_preserving(cities):
    segs = [source_segment(c) for c in cities]
    raw = GraphEncoder().fit(cities, segs)
    proj = make_encoder("spatial", "graph", {"dim": 64}).fit(cities, segs)
    a, _ = raw.encode(cities[0], segs[0])
    b, _ = proj.encode(cities[0], segs[0])
    assert b.shape == (cities[0].n_nodes, 64)
    np.testing.assert_allclose(np.linalg.norm(a[0] - a[1]), np.linalg.norm(b[0] - b[1]), rtol=1e-5)


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
    again = PromptEncoders.fit(cities, segs, temporal_config=TINY_MASKED_PATCH)
    other = PromptEncoders.fit(cities, segs, temporal_config=TINY_MASKED_PATCH, seed=1)
    a, b, c = (e.encode(cities[1], segs[1]).temporal for e in (encoders, again, other))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert encoders.temporal.info["final_loss"] == again.temporal.info["final_loss"]
    assert other.temporal.info["seed"] == other.spatial.info["seed"] == 1
    assert other.temporal.info["train_steps"] == TINY_MASKED_PATCH["train_steps"]
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
    after = enc.encode(_with(city, values=values, mask=mask), split.train)
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


def test_short_inputs_work_and_are_noted(encoders):
    city = synthetic_city("target", n_nodes=5, days=10, interval_minutes=60, seed=3)
    for steps in (30, 6, 1):  # a bit over a day, a quarter day, one patch
        ps = encoders.encode(city, Segment(city.n_steps - steps, city.n_steps))
        assert ps.temporal.shape == (5, 32) and torch.isfinite(ps.temporal).all()
        assert any("shorter than" in n for n in ps.meta["notes"])


def test_outage_at_segment_end_uses_an_earlier_window(encoders):
    city = synthetic_city("outage", n_nodes=4, days=12, interval_minutes=60, seed=2)
    seg = Segment(0, 200)
    mask = city.mask.copy()
    mask[150:200, 1] = False  # node n1 is dark for the last two days of the segment
    ps = encoders.encode(_with(city, mask=mask), seg)
    assert any("earlier window" in n and "n1" in n for n in ps.meta["notes"])
    ref = encoders.encode(city, seg)
    assert torch.equal(ps.temporal[0], ref.temporal[0]) and not torch.equal(ps.temporal[1], ref.temporal[1])


def test_patches_mean_the_same_at_any_interval():
    rng = np.random.default_rng(0)
    hourly = rng.normal(size=(3, 48))
    tenmin = np.repeat(hourly, 6, axis=1)  # the same signal, held over 10-minute steps
    a = patchify(hourly, np.ones_like(hourly, bool), 0, 60, 60, 12)
    b = patchify(tenmin, np.ones_like(tenmin, bool), 0, 10, 60, 12)
    np.testing.assert_allclose(a.x, b.x, atol=1e-6)
    np.testing.assert_array_equal(a.t, b.t)
    assert a.x.shape == (3, 48, 12)


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
    ps = encoders.encode(_with(city, mask=mask), seg)
    t = ps.temporal.numpy()
    assert np.isfinite(t).all()
    np.testing.assert_allclose(t[2], t[[0, 1, 3]].mean(axis=0), rtol=1e-5, atol=1e-6)
    assert any("1 node(s) have less than one" in n and "(node ids: n2)" in n for n in ps.meta["notes"])
    mask[seg.start :, :] = False
    with pytest.raises(GpdiffError, match="no node has"):
        encoders.encode(_with(city, mask=mask), seg)


def test_segment_shorter_than_one_patch(encoders):
    city = synthetic_city("gappy", n_nodes=4, days=6, interval_minutes=10, seed=4)
    with pytest.raises(GpdiffError, match="shorter than one patch"):
        encoders.encode(city, Segment(city.n_steps - 3, city.n_steps))


def test_city_without_coordinates_skips_geography(cities, encoders):
    city = _with(synthetic_city("nocoords", n_nodes=5, days=10, seed=6), coords=None)
    ps = encoders.encode(city, source_segment(city))
    assert "geography skipped for city nocoords: no coordinates" in ps.meta["notes"]
    assert torch.isfinite(ps.spatial).all()


def test_attributes_are_used_and_non_finite_ones_fail(cities):
    base = synthetic_city("attr", n_nodes=6, days=10, seed=7)
    pois = np.arange(6, dtype=np.float32)[:, None] * np.array([[1.0, 2.0]], dtype=np.float32)
    city = _with(base, attributes=pois, attribute_names=["poi", "shops"])
    enc = GraphEncoder().fit([city, cities[0]], [source_segment(city), source_segment(cities[0])])
    assert enc.config.attribute_names == ["poi", "shops"] and enc.dim == len(STRUCTURE) + 7 + 2
    prompts, notes = enc.encode(cities[1])
    assert prompts.shape[1] == enc.dim and any("attribute 'poi' missing" in n for n in notes)
    bad = pois.copy()
    bad[3, 1] = np.nan
    with pytest.raises(GpdiffError, match="attribute 'shops' is not a finite number for node.*n3"):
        enc.encode(_with(base, attributes=bad, attribute_names=["poi", "shops"]))


def test_structure_features_match_networkx(cities):
    for c in cities:
        s = np.maximum(c.adjacency, c.adjacency.T).astype(np.float64)
        np.fill_diagonal(s, 0)
        g = nx.from_numpy_array((s > 0).astype(float))
        f = structure_features(c.adjacency)
        n = c.n_nodes
        np.testing.assert_allclose(f["betweenness"], [nx.betweenness_centrality(g)[i] for i in range(n)], atol=1e-12)
        np.testing.assert_allclose(f["clustering"], [nx.clustering(g)[i] for i in range(n)], atol=1e-12)
        hc = nx.harmonic_centrality(g)
        np.testing.assert_allclose(f["closeness"], [hc[i] / (n - 1) for i in range(n)], atol=1e-12)
        sampled = structure_features(c.adjacency, max_exact=2, samples=n)  # all sources "sampled": exact
        np.testing.assert_allclose(sampled["betweenness"], f["betweenness"], atol=1e-12)
        # PageRank (no dangling nodes here) solves r = (1 - d) / n + d P^T r, P the row-normalised weights
        p = s / s.sum(axis=1, keepdims=True)
        exact = np.linalg.solve(np.eye(n) - 0.85 * p.T, np.full(n, 0.15 / n)) * n
        np.testing.assert_allclose(f["pagerank"], exact, rtol=1e-9)


def test_symmetric_nodes_of_a_grid_share_every_structure_rank():
    """On a 5 x 5 grid, nodes mapped onto each other by a symmetry of the grid are structurally
    identical; floating-point noise (e.g. in PageRank's iterations) must not rank them apart."""
    side = 5
    grid = nx.convert_node_labels_to_integers(nx.grid_2d_graph(side, side), ordering="sorted")
    adjacency = nx.to_numpy_array(grid, nodelist=range(side * side))
    ranks = {k: within_city_rank(v) for k, v in structure_features(adjacency).items()}
    r, c = np.divmod(np.arange(side * side), side)
    for image in (r * side + (side - 1 - c), (side - 1 - r) * side + c, c * side + r):  # mirrors, transpose
        for name, rank in ranks.items():
            np.testing.assert_array_equal(rank, rank[image], err_msg=name)
    corners = [0, side - 1, side * (side - 1), side * side - 1]
    assert len({ranks["betweenness"][i] for i in corners}) == 1
    assert ranks["betweenness"][side * side // 2] == 1.0  # the centre lies on the most shortest paths
    assert len(set(ranks["pagerank"])) == 6  # orbits of the grid's symmetry group: one rank each


def test_within_city_rank_ties_values_equal_up_to_noise():
    x = np.array([1.0, 1.0 + 1e-15, 2.0, 0.5])
    np.testing.assert_array_equal(within_city_rank(x), [0.5, 0.5, 1.0, 0.0])
    np.testing.assert_array_equal(within_city_rank(np.array([3.0, 3.0 * (1 + 1e-14)])), [0.5, 0.5])
    np.testing.assert_array_equal(within_city_rank(np.array([1e-3, 2e-3, 0.0])), [0.5, 1.0, 0.0])  # scale-free
    np.testing.assert_array_equal(within_city_rank(np.zeros(3)), [0.5, 0.5, 0.5])


# --------------------------------------------------------------------------- diagnostics
def _tiny_zoo(cities):
    from gpdiff.models import ModelConfig, get_model
    from gpdiff.zoo.params import ParamCollection, flatten

    model = get_model("stid", ModelConfig(history=12, horizon=6, ego_size=4))
    n = sum(c.n_nodes for c in cities)
    params = flatten(model.init(n, seed=0, shared=False), model.spec())
    ids = [i for c in cities for i in c.node_ids]
    owners = [c.name for c in cities for _ in c.node_ids]
    return ParamCollection(params, ids, owners, model.name, model.config.to_dict(), model.spec(),
                           config={"train": 0.7, "val": 0.1, "test": 0.2, "k": 3})


def test_rank_correlation_and_transfer_check(cities, stats_encoders):
    from gpdiff.prompts.diagnostics import (
        node_identification,
        rank_correlation,
        transfer_check,
    )

    zoo = _tiny_zoo(cities)
    ps = stats_encoders.encode_many(cities, [source_segment(c) for c in cities])
    # prompts that ARE the parameters track parameter distance; shuffled ones do not; constant ones: NaN
    oracle = replace(ps, temporal=zoo.params.clone())
    shuffled = replace(ps, temporal=zoo.params[torch.randperm(len(zoo), generator=torch.Generator().manual_seed(0))])
    rho = rank_correlation(oracle, zoo, parts=("temporal", "spatial"))
    assert rho["temporal"]["all"] > 0.9 and np.isnan(rho["spatial"]["all"])
    assert abs(rank_correlation(shuffled, zoo, parts=("temporal",))["temporal"]["all"]) < 0.3
    res = transfer_check(oracle, zoo, {c.name: c for c in cities}, part="temporal", n_random=2)
    s = res.summary()
    assert s["nodes"] == len(zoo) and np.isfinite([s["own"], s["neighbour"], s["random"]]).all()
    assert all(nb[0] != c for nb, c in zip(res.neighbour_key, res.cities))  # always another city
    assert {r["city"] for r in res.per_city()} == {"hourly", "tenmin"}
    ident = node_identification(stats_encoders.temporal, cities, [source_segment(c) for c in cities], shift_days=2)
    assert set(ident) == {"hourly", "tenmin"} and all(0 <= v <= 1 for v in ident.values())


# --------------------------------------------------------------------------- command line
def test_cli_fit_show_encode(tmp_path):
    from gpdiff.cli import main

    for name, iv, seed in (("ca", 60, 0), ("cb", 10, 1)):
        synthetic_city(name, n_nodes=5, days=8, interval_minutes=iv, seed=seed).save(tmp_path / f"{name}.city")
    cfg = tmp_path / "p.yaml"
    cfg.write_text("temporal_config:\n  d_model: 16\n  n_heads: 2\n  ff_dim: 32\n  batch_size: 8\n")
    runner = CliRunner()
    out = tmp_path / "prompts"
    r = runner.invoke(main, ["prompts", "fit", "--cities", f"{tmp_path / 'ca.city'},{tmp_path / 'cb.city'}",
                             "--out", str(out), "--train-steps", "3", "--days", "2", "--config", str(cfg),
                             "--seed", "2", "--quiet"])
    assert r.exit_code == 0, r.output
    assert (out / "prompts.safetensors").is_file() and (out / "temporal" / "config.yaml").is_file()
    fitted = PromptEncoders.load(out)
    assert fitted.temporal.name == "masked_patch" and fitted.temporal.config.train_steps == 3
    assert fitted.temporal.info["seed"] == fitted.spatial.info["seed"] == 2
    r = runner.invoke(main, ["prompts", "show", str(out)])
    assert r.exit_code == 0, r.output
    assert (out / "prompts_pca.png").read_bytes()[:4] == b"\x89PNG"
    r = runner.invoke(main, ["prompts", "encode", str(out), "--city", str(tmp_path / "cb.city"), "--target-days", "1",
                             "--out", str(tmp_path / "t.safetensors")])
    assert r.exit_code == 0, r.output
    assert PromptSet.load(tmp_path / "t.safetensors").temporal.shape == (5, 32)
    r = runner.invoke(main, ["prompts", "fit", "--cities", str(tmp_path / "ca.city"), "--out", str(out),
                             "--temporal", "nope"])
    assert r.exit_code == 2 and "'nope' is not one of 'masked_patch', 'stats'" in r.output
    r = runner.invoke(main, ["prompts", "fit", "--cities", str(tmp_path / "ca.city"), "--out", str(out),
                             "--temporal", "stats", "--train-steps", "3"])
    assert r.exit_code == 2 and "--train-steps applies to the masked_patch encoder" in r.output


def test_none_temporal_encoder_is_the_ablation_without_a_temporal_prompt(cities, tmp_path):
    enc = PromptEncoders.fit(cities, [source_segment(c) for c in cities], temporal="none", spatial="none")
    ps = enc.encode(cities[0], source_segment(cities[0]))
    assert ps.temporal.shape == (cities[0].n_nodes, 32) and bool((ps.temporal == 1).all())
    enc.save(tmp_path / "enc")
    back = PromptEncoders.load(tmp_path / "enc")
    assert back.temporal.kind == "temporal" and back.spatial.kind == "spatial" and back.temporal.name == "none"
